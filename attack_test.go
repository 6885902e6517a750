package minimost_test

import (
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/password"
	"github.com/minimost/minimost/internal/testdb"
)

// TestHostileInput: oversized, malformed and ambiguous requests get the right
// 4xx, run no hash and write nothing.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	db := testdb.SQLite(t)
	s := newSite(t, db, authn.Config{})
	rowsBefore := allRows(t, db)
	hashesBefore, verifiesBefore := s.hasher.Hashes(), s.hasher.TotalVerifies()

	tenMB := strings.Repeat("a", 10<<20)
	manyFields := strings.Repeat("f=1&", 10_000) + "username=alice&password=x"
	deep := `{"username":"alice","password":"x","next":` + strings.Repeat("[", 4000) + strings.Repeat("]", 4000) + `}`
	for _, tc := range []struct {
		name, method, path, contentType, body string
		header                                []string
		status                                int
	}{
		{"10 MB form body", "POST", "/login", formType, "username=alice&password=" + tenMB, nil, 413},
		{"10 MB JSON body", "POST", "/login", "application/json", `{"password":"` + tenMB + `"}`, nil, 413},
		{"10 MB registration", "POST", "/register", formType, "username=eve&password=" + tenMB, nil, 413},
		{"1 MB password in a form", "POST", "/login", formType, "username=alice&password=" + tenMB[:1<<20], nil, 413},
		{"10,000 form fields", "POST", "/login", formType, manyFields, nil, 413},
		{"duplicate JSON keys", "POST", "/login", "application/json", `{"username":"nobody","username":"alice","password":"x"}`, nil, 400},
		{"deeply nested JSON", "POST", "/login", "application/json", deep, nil, 400},
		{"unknown JSON key", "POST", "/login", "application/json", `{"username":"alice","password":"x","admin":true}`, nil, 400},
		{"JSON number for a password", "POST", "/login", "application/json", `{"username":"alice","password":12345}`, nil, 400},
		{"JSON array", "POST", "/login", "application/json", `["alice","x"]`, nil, 400},
		{"invalid UTF-8 in JSON", "POST", "/register", "application/json", "{\"username\":\"eve\",\"password\":\"eve's passphrase \xff\xfe here\"}", nil, 400},
		{"invalid UTF-8 password, form registration", "POST", "/register", formType, "username=eve&password=eve%27s+passphrase+%FF%FE+here", nil, 400},
		{"NUL in a registered name", "POST", "/register", formType, "username=eve%00&password=eve%27s+long+passphrase", nil, 400},
		{"bad percent-encoding", "POST", "/login", formType, "username=%zz&password=x", nil, 400},
		{"1 MB header", "GET", "/basic/", "", "", []string{"X-Big", tenMB[:1<<20]}, 431},
		{"1 MB Authorization header", "GET", "/basic/", "", "", []string{"Authorization", "Basic " + tenMB[:1<<20]}, 431},
		{"2 KB Basic password", "GET", "/basic/", "", "", []string{"Authorization", basic("alice", tenMB[:2048])}, 401},
		{"NUL in a Basic username", "GET", "/basic/", "", "", []string{"Authorization", basic("ali\x00ce", alicePassword)}, 401},
		{"invalid UTF-8 Basic credentials", "GET", "/basic/", "", "", []string{"Authorization", "Basic " + b64("alice:\xff\xfe")}, 401},
	} {
		r := s.do(nil, tc.method, tc.path, tc.contentType, tc.body, tc.header...)
		if r.status != tc.status {
			t.Errorf("%s: %d, want %d", tc.name, r.status, tc.status)
		}
	}
	if got := allRows(t, db); got != rowsBefore {
		t.Errorf("hostile input wrote:\n%s\n->\n%s", rowsBefore, got)
	}
	if h, v := s.hasher.Hashes()-hashesBefore, s.hasher.TotalVerifies()-verifiesBefore; h != 0 || v != 0 {
		t.Errorf("hostile input ran %d hashes and %d verifications, want none", h, v)
	}
	if s.protectedCalls() != 0 {
		t.Error("the protected handler ran")
	}
}

// allRows is every row of users and sessions, as text.
func allRows(t *testing.T, db *testdb.DB) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{
		"SELECT username || ' ' || password_hash || ' ' || COALESCE(failed_attempts, -1) || ' ' || COALESCE(lockout_until, -1) FROM users ORDER BY username",
		"SELECT token_hash || ' ' || username FROM sessions ORDER BY token_hash",
	} {
		rows, err := db.Raw.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			b.WriteString(line + "\n")
		}
		rows.Close()
	}
	return b.String()
}

func b64(s string) string {
	return strings.TrimPrefix(basicRaw(s), "Basic ")
}

func basicRaw(userColonPassword string) string {
	user, pw, _ := strings.Cut(userColonPassword, ":")
	return basic(user, pw)
}

// TestEnumeration: an unknown user, a malformed username, a wrong password
// and a locked account are indistinguishable from outside: byte-identical
// answers (but for Date) on every route (the login form, which shows the
// name typed again, to the same request whatever the account's state), and
// server-side times dominated by
// one verification of the same cost. The Hasher is deliberately slow
// (PBKDF2 with 100,000 iterations, about 17 ms here) so that the hash, not
// the noise, is what is timed. Not parallel: it times things.
func TestEnumeration(t *testing.T) {
	slow := password.PBKDF2{Iterations: 100_000}
	db := testdb.SQLite(t)
	s := newSite(t, db, authn.Config{Hasher: slow, LockoutThreshold: 1 << 30})
	s.lockBob()

	attempts := map[string][2]string{
		"wrong password": {"alice", "not alice's password"},
		"unknown user":   {"nobody", "not alice's password"},
		"malformed name": {"bad name!", "not alice's password"},
		"locked account": {"bob", bobPassword},
	}
	routes := map[string]func(user, pw string) response{
		"basic": s.basicGet,
		"json":  func(u, p string) response { return s.loginJSON(nil, u, p) },
		"form":  func(u, p string) response { return s.loginForm(nil, u, p, "/app/") },
	}
	for route, send := range routes {
		if route != "form" {
			answers := map[string]response{}
			for kind, a := range attempts {
				answers[kind] = send(a[0], a[1])
			}
			sameAnswer(t, route, answers)
		}
		sameAnswer(t, route+", one request", s.acrossAccountStates("carol", "carol's long passphrase", func() response {
			return send("carol", "carol's long passphrase")
		}))
	}

	// Server-side time, in-process: the login handler alone, no network.
	h := s.a.LoginHandler()
	timeOne := func(user, pw string) time.Duration {
		body := form("username", user, "password", pw)
		r := httptest.NewRequest("POST", "/login", strings.NewReader(body))
		r.Header.Set("Content-Type", formType)
		w := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(w, r)
		d := time.Since(start)
		if w.Code != 401 {
			t.Fatalf("%s: %d", user, w.Code)
		}
		return d
	}
	const rounds = 21
	times := map[string][]time.Duration{}
	for range rounds { // interleaved, so that drift hits every kind alike
		for kind, a := range attempts {
			times[kind] = append(times[kind], timeOne(a[0], a[1]))
		}
	}
	// A wrong password also commits its claim (an fsync) and the others
	// write nothing, so the ratios depend on the disk: 0.91–0.96 on a quiet
	// machine, down to 0.72 with other packages' tests running beside.
	// Without the dummy verification they would be near 0 (two indexed
	// statements against a 20 ms hash), which is what the bound catches;
	// TestUnknownUserRunsDummyVerification counts the verifications exactly.
	const atLeast = 0.5
	known := median(times["wrong password"])
	for kind, ds := range times {
		ratio := float64(median(ds)) / float64(known)
		t.Logf("%-15s median %v, ratio to a wrong password %.2f", kind, median(ds), ratio)
		if ratio < atLeast {
			t.Errorf("%s: median %v is %.2f of a wrong password's %v, want at least %.1f", kind, median(ds), ratio, known, atLeast)
		}
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
