package authn_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
)

// TestCostOfEachRequest counts what each kind of request costs: statements
// (and whether they change rows) and hashes.
func TestCostOfEachRequest(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		h := testdb.NewCountingHasher(nil)
		a, log := db.OpenCounting(t, authn.Config{Hasher: h, HTTP: authn.HTTPConfig{InsecureCookies: true}})
		ctx := context.Background()
		for _, name := range []string{"alice", "locked"} {
			if err := a.Register(ctx, name, goodPassword); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.Lock(ctx, "locked", time.Hour); err != nil {
			t.Fatal(err)
		}
		token, err := a.CreateToken(ctx, "alice", "ci")
		if err != nil {
			t.Fatal(err)
		}
		log.Take() // the setup's
		// On SQLite in WAL mode, a read made again while nothing has been
		// committed since is answered from memory (see Stats.ReadsSkipped);
		// PostgreSQL reads every time.
		again := ""
		if !readsFromMemory(db) {
			again = "SELECT"
		}
		commit := func() { // a commit that changes nothing the requests read
			if err := a.Lock(ctx, "locked", 2*time.Hour); err != nil {
				t.Fatal(err)
			}
			log.Take()
		}
		basic := a.BasicAuth(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		login := a.LoginHandler()
		session := a.RequireSession(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		bearer := func() int {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Authorization", "Bearer "+token)
			return serve(basic, r)
		}
		var cookie string
		sessionRequest := func() int {
			r := httptest.NewRequest("GET", "/app/", nil)
			r.Header.Set("Cookie", cookie)
			return serve(session, r)
		}
		// A login inserts its session and ends the user's beyond
		// MaxSessionsPerUser in one transaction, whose logins of one user
		// wait for each other on PostgreSQL (an advisory lock: the SELECT).
		loginWant := "UPDATE UPDATE BEGIN INSERT DELETE(0 rows)"
		if db.Name == "postgres" {
			loginWant = "UPDATE UPDATE BEGIN SELECT INSERT DELETE(0 rows)"
		}
		// Over HTTP, a login's claim first takes a token of the client's
		// failure budget, which every instance on the database shares, in
		// the claim's own commit: on SQLite one transaction (BEGIN, the
		// INSERT … ON CONFLICT, the claim's UPDATE), on PostgreSQL one
		// statement (WITH: the upsert, then the claim). A success gives
		// the token back: one UPDATE after the reset.
		claim, claimNone := "BEGIN INSERT UPDATE", "BEGIN INSERT UPDATE(0 rows) SELECT"
		if db.Name == "postgres" {
			claim, claimNone = "WITH", "WITH SELECT"
		}
		httpLoginWant := claim + " " + strings.TrimPrefix(loginWant, "UPDATE ") + " UPDATE"

		for _, tc := range []struct {
			name, want string
			verifies   int
			do         func() int
		}{
			{"Authenticate, right password", "UPDATE UPDATE", 1, func() int { return status(a.Authenticate(ctx, "alice", goodPassword)) }},
			{"Authenticate, wrong password", "UPDATE", 1, func() int { return status(a.Authenticate(ctx, "alice", "wrong password!")) }},
			{"Authenticate, unknown user", "UPDATE(0 rows) SELECT", 1, func() int { return status(a.Authenticate(ctx, "nobody", goodPassword)) }},
			{"Authenticate, locked account", "UPDATE(0 rows) SELECT", 1, func() int { return status(a.Authenticate(ctx, "locked", goodPassword)) }},
			{"Authenticate, malformed name", "", 1, func() int { return status(a.Authenticate(ctx, "bad name", goodPassword)) }},
			{"Basic auth, first request", claim + " UPDATE UPDATE", 1, func() int { return serve(basic, basicRequest("alice", goodPassword)) }},
			{"Basic auth, cached", "SELECT", 0, func() int { return serve(basic, basicRequest("alice", goodPassword)) }},
			{"Basic auth, cached again", again, 0, func() int { return serve(basic, basicRequest("alice", goodPassword)) }},
			{"Basic auth, cached, after a commit", "SELECT", 0, func() int { commit(); return serve(basic, basicRequest("alice", goodPassword)) }},
			{"Basic auth, cached, nothing committed since", again, 0, func() int { return serve(basic, basicRequest("alice", goodPassword)) }},
			// The first use of a token is recorded (once a minute).
			{"token, first use", "SELECT UPDATE", 0, bearer},
			{"token, again", "SELECT", 0, bearer},
			{"token, nothing committed since", again, 0, bearer},
			{"login form", httpLoginWant, 1, func() int {
				w := httptest.NewRecorder()
				r := httptest.NewRequest("POST", "/login", strings.NewReader("username=alice&password="+strings.ReplaceAll(goodPassword, " ", "+")))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				login.ServeHTTP(w, r)
				cookie = w.Result().Cookies()[0].String()
				return w.Code
			}},
			{"session request", "SELECT", 0, sessionRequest},
			{"session request again", again, 0, sessionRequest},
			{"session request, after a commit", "SELECT", 0, func() int { commit(); return sessionRequest() }},
			// Failures, last: each commits its count.
			{"Basic auth, wrong password", claim, 1, func() int { return serve(basic, basicRequest("alice", "wrong password!")) }},
			{"Basic auth, unknown user", claimNone, 1, func() int { return serve(basic, basicRequest("nobody", goodPassword)) }},
		} {
			before, skipped := h.TotalVerifies(), a.Stats().ReadsSkipped
			st := tc.do()

			if got := log.Take(); got != tc.want {
				t.Errorf("%s (status %d): statements %q, want %q", tc.name, st, got, tc.want)
			}
			// A request that ran no statement and verified nothing was
			// answered from memory; one that read was not.
			wantSkipped := int64(0)
			if tc.want == "" && tc.verifies == 0 {
				wantSkipped = 1
			}
			if got := a.Stats().ReadsSkipped - skipped; got != wantSkipped {
				t.Errorf("%s: ReadsSkipped grew by %d, want %d", tc.name, got, wantSkipped)
			}
			if got := h.TotalVerifies() - before; got != tc.verifies {
				t.Errorf("%s: %d verifications, want %d", tc.name, got, tc.verifies)
			}
			if h.Hashes() != 3 { // the dummy hash at Open, two registrations; no re-hash
				t.Errorf("%s: %d hashes in all, want 3", tc.name, h.Hashes())
			}
		}
	})
}

func status(err error) int {
	if err != nil {
		return 401
	}
	return 200
}

func basicRequest(user, pw string) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, pw)
	return r
}

func serve(h http.Handler, r *http.Request) int {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}
