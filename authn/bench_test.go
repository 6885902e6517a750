package authn_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/password"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/minimost/minimost/middleware"
)

// backends returns the databases to benchmark on: SQLite, and PostgreSQL
// when MINIMOST_TEST_POSTGRES is set.
func benchBackends(b *testing.B, f func(b *testing.B, db *testdb.DB)) {
	b.Run("sqlite", func(b *testing.B) { f(b, testdb.SQLite(b)) })
	b.Run("postgres", func(b *testing.B) { f(b, testdb.Postgres(b)) })
}

// BenchmarkAuthenticate is a full successful login with the default Hasher
// (pbkdf2:sha256:600000): claim, one verification, reset. Compare with
// BenchmarkPBKDF2Direct in package password.
func BenchmarkAuthenticate(b *testing.B) {
	for _, tc := range []struct {
		name string
		pw   string
	}{{"success", goodPassword}, {"wrong-password", "not the password"}} {
		b.Run(tc.name, func(b *testing.B) {
			a, _ := openTest(b, authn.Config{Hasher: password.Default(), LockoutThreshold: -1})
			ctx := context.Background()
			if err := a.Register(ctx, "u", goodPassword); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				err := a.Authenticate(ctx, "u", tc.pw)
				if (err == nil) != (tc.pw == goodPassword) {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLoginParallel is login throughput with the default Hasher on
// every core: compare ns/op with BenchmarkPBKDF2Direct / GOMAXPROCS, the
// limit the hash sets.
func BenchmarkLoginParallel(b *testing.B) {
	a, _ := openTest(b, authn.Config{Hasher: password.Default()})
	ctx := context.Background()
	const users = 64
	for i := range users {
		if err := a.Register(ctx, fmt.Sprintf("user%d", i), goodPassword); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			name := fmt.Sprintf("user%d", next.Add(1)%users)
			if err := a.Authenticate(ctx, name, goodPassword); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkBasicAuthCached is a Basic-auth request with credentials verified
// before, in parallel: one indexed read, no hash, no write.
func BenchmarkBasicAuthCached(b *testing.B) {
	benchBackends(b, func(b *testing.B, db *testdb.DB) {
		a := db.Open(b, authn.Config{Hasher: password.Default()})
		if err := a.Register(context.Background(), "u", goodPassword); err != nil {
			b.Fatal(err)
		}
		h := a.BasicAuth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		if st := serve(h, basicRequest("u", goodPassword)); st != 200 {
			b.Fatal(st)
		}
		serveParallel(b, h, func() *http.Request { return basicRequest("u", goodPassword) })
	})
}

// BenchmarkTokenRequest is a request with an app token as its Bearer
// credential, through BasicAuth, in parallel: one indexed read and no hash
// (last use is written at most once a minute).
func BenchmarkTokenRequest(b *testing.B) {
	benchBackends(b, func(b *testing.B, db *testdb.DB) {
		a := db.Open(b, authn.Config{Hasher: password.Default()})
		ctx := context.Background()
		if err := a.Register(ctx, "u", goodPassword); err != nil {
			b.Fatal(err)
		}
		token, err := a.CreateToken(ctx, "u", "bench")
		if err != nil {
			b.Fatal(err)
		}
		h := a.BasicAuth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		serveParallel(b, h, func() *http.Request {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Authorization", "Bearer "+token)
			return r
		})
	})
}

// serveParallel times h serving requests made by newRequest, in parallel,
// each answered 200. Like net/http, it gives every request a context that
// can be cancelled; database drivers watch it.
func serveParallel(b *testing.B, h http.Handler, newRequest func() *http.Request) {
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		r := newRequest().WithContext(ctx)
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != 200 {
				b.Errorf("status %d", w.Code)
				return
			}
		}
	})
}

// BenchmarkSessionRequest is a request with a live session cookie, through
// RequireSession, in parallel: one indexed read (the last-seen time is
// written at most once a minute).
func BenchmarkSessionRequest(b *testing.B) {
	benchBackends(b, func(b *testing.B, db *testdb.DB) {
		a := db.Open(b, authn.Config{HTTP: authn.HTTPConfig{InsecureCookies: true}})
		if err := a.Register(context.Background(), "u", goodPassword); err != nil {
			b.Fatal(err)
		}
		login := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"username": {"u"}, "password": {goodPassword}}.Encode()))
		login.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		a.LoginHandler().ServeHTTP(w, login)
		cookies := w.Result().Cookies()
		if w.Code != http.StatusSeeOther || len(cookies) != 1 {
			b.Fatalf("login: %d, %d cookies", w.Code, len(cookies))
		}
		h := a.RequireSession(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		serveParallel(b, h, func() *http.Request {
			r := httptest.NewRequest("GET", "/app/", nil)
			r.AddCookie(cookies[0])
			return r
		})
	})
}

// BenchmarkClaim is the database part of failed logins from 64 clients on
// 64 different accounts at once, with a trivial Hasher: one claim (an
// UPDATE … RETURNING) each. ns/op is the time per claim.
func BenchmarkClaim(b *testing.B) {
	benchBackends(b, func(b *testing.B, db *testdb.DB) {
		a := db.Open(b, authn.Config{Hasher: password.PBKDF2{Iterations: 1}, LockoutThreshold: 1 << 30, HashConcurrency: 64})
		ctx := context.Background()
		const users = 64
		for i := range users {
			if err := a.Register(ctx, fmt.Sprintf("user%d", i), goodPassword); err != nil {
				b.Fatal(err)
			}
		}
		var next atomic.Int64
		b.SetParallelism(32) // 64 goroutines on 2 cores
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			name := fmt.Sprintf("user%d", next.Add(1)%users)
			for pb.Next() {
				if err := a.Authenticate(ctx, name, "wrong password"); err != authn.ErrInvalidCredentials {
					b.Errorf("claim: %v", err)
					return
				}
			}
		})
	})
}

// BenchmarkArgon2idBurst sends 1,000 logins at once with argon2id at 64 MiB
// configured, and reports the process's peak resident memory (VmHWM): the
// hashing slots (HashConcurrency, GOMAXPROCS by default) bound it, however
// many requests wait. Run it alone, with -benchtime 1x: the peak is the
// process's, setup included.
func BenchmarkArgon2idBurst(b *testing.B) {
	a, _ := openTest(b, authn.Config{Hasher: password.Argon2id{}, LockoutThreshold: -1})
	ctx := context.Background()
	if err := a.Register(ctx, "u", goodPassword); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		var wg sync.WaitGroup
		for i := range 1000 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pw := goodPassword
				if i%2 == 1 {
					pw = "a wrong password"
				}
				if err := a.Authenticate(ctx, "u", pw); (err == nil) != (i%2 == 0) {
					b.Errorf("login %d: %v", i, err)
				}
			}()
		}
		wg.Wait()
	}
	peak, err := testdb.PeakRSSMiB(0)
	if err != nil {
		b.Skip("cannot read the peak RSS:", err)
	}
	b.ReportMetric(peak, "peak-RSS-MiB")
}

// BenchmarkFailedLoginHTTP is the database part of failed logins through
// the JSON login route, 64 clients (each an address of its own) on 64
// accounts at once, with a trivial Hasher: the claim and the client's
// failure budget, which is counted in the database (in the claim's commit)
// since the budget is shared by the instances. ns/op is the time per
// failed login. Compare with BenchmarkClaim, the claim alone.
func BenchmarkFailedLoginHTTP(b *testing.B) {
	benchBackends(b, func(b *testing.B, db *testdb.DB) {
		a := db.Open(b, authn.Config{
			Hasher: password.PBKDF2{Iterations: 1}, LockoutThreshold: 1 << 30, HashConcurrency: 64,
			HTTP: authn.HTTPConfig{Throttle: middleware.NewThrottle(middleware.ThrottleConfig{Burst: 1 << 30})},
		})
		ctx := context.Background()
		const users = 64
		for i := range users {
			if err := a.Register(ctx, fmt.Sprintf("user%d", i), goodPassword); err != nil {
				b.Fatal(err)
			}
		}
		h := a.LoginHandler()
		var next atomic.Int64
		b.SetParallelism(32) // 64 goroutines on 2 cores
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			n := next.Add(1)
			body := fmt.Sprintf(`{"username":"user%d","password":"wrong password"}`, n%users)
			addr := fmt.Sprintf("192.0.2.%d:1234", n%250+1)
			for pb.Next() {
				r := httptest.NewRequest("POST", "/login", strings.NewReader(body))
				r.Header.Set("Content-Type", "application/json")
				r.RemoteAddr = addr
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != http.StatusUnauthorized {
					b.Errorf("status %d", w.Code)
					return
				}
			}
		})
	})
}
