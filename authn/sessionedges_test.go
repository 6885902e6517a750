package authn_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
)

// TestRememberedSessionListedWhileLive: a remembered session whose own
// idle timeout (RememberIdleTimeout, or none) is longer than
// SessionIdleTimeout is live past SessionIdleTimeout unused; its user must
// still see it on /sessions and in Sessions, with its real end, and be able
// to end it by its ID (a stolen remembered cookie is what the page is for).
func TestRememberedSessionListedWhileLive(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		a := db.Open(t, authn.Config{Now: clk.Now, HTTP: authn.HTTPConfig{
			InsecureCookies: true, Throttle: bigThrottle(), SessionCleanupInterval: -1,
			RememberFor: 10 * 24 * time.Hour, RememberIdleTimeout: -1,
		}})
		if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		srv := liveServer(t, a)
		kept := signIn(t, srv, rememberJSON("alice", goodPassword))
		clk.Advance(24 * time.Hour)
		if got := appStatus(t, srv, kept); got != 200 {
			t.Fatalf("remembered session without idle timeout after a day: %d, want 200", got)
		}
		clk.Advance(24 * time.Hour) // unused for a day: still live
		infos, err := a.Sessions(context.Background(), "alice")
		if err != nil || len(infos) != 1 {
			t.Fatalf("Sessions: %+v %v, want the live remembered session", infos, err)
		}
		if want := clk.Now().Add(8 * 24 * time.Hour); infos[0].Expires.Before(want.Add(-time.Hour)) {
			t.Errorf("Expires %v, want about %v (RememberFor; no idle timeout)", infos[0].Expires, want)
		}
		// From a new normal session, the user ends the remembered one.
		normal := signIn(t, srv, credentialsJSON("alice", goodPassword))
		resp, body := send(t, srv, "GET", "/sessions", "", []*http.Cookie{normal}, "Accept", "application/json")
		var list []authn.SessionInfo
		if err := json.Unmarshal([]byte(body), &list); resp.StatusCode != 200 || err != nil || len(list) != 2 {
			t.Fatalf("GET /sessions: %d %v %s, want both sessions", resp.StatusCode, err, body)
		}
		other := list[0]
		if other.Current {
			other = list[1]
		}
		end, _ := json.Marshal(map[string]string{"end": other.ID})
		if resp, body := send(t, srv, "POST", "/sessions", string(end), []*http.Cookie{normal}); resp.StatusCode != 204 {
			t.Fatalf("ending the remembered session by its ID: %d %s, want 204", resp.StatusCode, body)
		}
		if got := appStatus(t, srv, kept); got != 401 {
			t.Fatalf("the remembered session after it was ended: %d, want 401", got)
		}
	})
}

// TestSessionLimitSparesLiveSessions: MaxSessionsPerUser counts live
// sessions: a login over the limit ends a session that has ended already
// (past its absolute end, not yet deleted by the cleanup) before a live
// one, even when the dead one was used more recently.
func TestSessionLimitSparesLiveSessions(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		a := db.Open(t, authn.Config{Now: clk.Now, HTTP: authn.HTTPConfig{
			InsecureCookies: true, Throttle: bigThrottle(), SessionCleanupInterval: -1,
			SessionLifetime: time.Hour, MaxSessionsPerUser: 2,
		}})
		if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		srv := liveServer(t, a)
		short := signIn(t, srv, credentialsJSON("alice", goodPassword)) // ends after an hour
		clk.Advance(20 * time.Minute)
		if appStatus(t, srv, short) != 200 { // not idle
			t.Fatal("short session")
		}
		clk.Advance(20 * time.Minute)
		kept := signIn(t, srv, rememberJSON("alice", goodPassword))
		if appStatus(t, srv, short) != 200 {
			t.Fatal("short session")
		}
		clk.Advance(10 * time.Minute)
		if appStatus(t, srv, kept) != 200 {
			t.Fatal("remembered session")
		}
		clk.Advance(9 * time.Minute)
		if appStatus(t, srv, short) != 200 { // used last, at 59 minutes
			t.Fatal("short session before its end")
		}
		clk.Advance(2 * time.Minute) // the short one has ended
		if appStatus(t, srv, short) != 401 {
			t.Fatal("short session after its end")
		}
		signIn(t, srv, credentialsJSON("alice", goodPassword))
		if got := appStatus(t, srv, kept); got != 200 {
			t.Fatalf("the live remembered session after a login over the limit: %d, want 200 (the ended session goes first)", got)
		}
	})
}

// TestSessionInfoFromForeignRows: SessionInfo keeps its promises for a row
// written behind the library's back: ClientNetwork is a network or "", and
// UserAgent has no control or format character.
func TestSessionInfoFromForeignRows(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a := db.Open(t, authn.Config{})
		if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		now := float64(time.Now().Unix())
		_, err := db.Raw.Exec("INSERT INTO sessions (token_hash, username, created_at, last_seen, expires_at, remembered, client_net, user_agent, user_hash) VALUES (?, 'alice', ?, ?, ?, FALSE, ?, ?, (SELECT password_hash FROM users WHERE username = 'alice'))",
			strings.Repeat("0", 64), now, now, now+600, "\x1b[2J10.0.0.0/24", "agent\x1b[31m\u202eevil\n")
		if err != nil {
			t.Fatal(err)
		}
		list, err := a.Sessions(context.Background(), "alice")
		if err != nil || len(list) != 1 {
			t.Fatalf("Sessions: %+v %v", list, err)
		}
		if s := list[0]; s.ClientNetwork != "" || s.UserAgent != "agent[31mevil" {
			t.Fatalf("ClientNetwork %q, UserAgent %q; want \"\" and %q", s.ClientNetwork, s.UserAgent, "agent[31mevil")
		}
	})
}

// TestSessionLimitAcrossProcesses: two Authenticators on one database (two
// processes) logging one user in at once keep MaxSessionsPerUser exactly.
func TestSessionLimitAcrossProcesses(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		cfg := authn.Config{LockoutThreshold: -1, HashConcurrency: 8, HashSlotsPerClient: -1,
			HTTP: authn.HTTPConfig{InsecureCookies: true, Throttle: bigThrottle(), MaxSessionsPerUser: 5}}
		procs := []*authn.Authenticator{db.Open(t, cfg), db.Open(t, cfg)}
		if err := procs[0].Register(context.Background(), "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if w := serveJSON(procs[i%2].LoginHandler(), credentialsJSON("alice", goodPassword)); w.Code != 200 {
					t.Errorf("login: %d %s", w.Code, w.Body)
				}
			}()
		}
		wg.Wait()
		if got := countSessions(t, db.Raw, "alice"); got != 5 {
			t.Fatalf("%d sessions after 16 parallel logins through two processes, want 5", got)
		}
	})
}

// TestSessionLimitKeepsTheNewSession: with MaxSessionsPerUser 1 and a
// clock that stands still, so that every session's last use ties, each
// login's new session is the one the limit keeps: its cookie works, and
// the session before it is ended. A limit that did not know which session
// was new would end it at its own login about half the time.
func TestSessionLimitKeepsTheNewSession(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		a := db.Open(t, authn.Config{Now: clk.Now, HTTP: authn.HTTPConfig{
			InsecureCookies: true, Throttle: bigThrottle(), MaxSessionsPerUser: 1,
		}})
		if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		srv := liveServer(t, a)
		var previous *http.Cookie
		for i := range 20 {
			c := signIn(t, srv, credentialsJSON("alice", goodPassword))
			if got := appStatus(t, srv, c); got != 200 {
				t.Fatalf("login %d: its new session answered %d, want 200", i, got)
			}
			if previous != nil {
				if got := appStatus(t, srv, previous); got != 401 {
					t.Fatalf("login %d: the session before it answered %d, want 401 (limit 1)", i, got)
				}
			}
			previous = c
		}
		if got := countSessions(t, db.Raw, "alice"); got != 1 {
			t.Fatalf("%d sessions after 20 logins with a limit of 1", got)
		}
	})
}

// TestShortIdleTimeoutKeepsASessionInUse: a session's use is recorded
// often enough for its idle timeout, also one shorter than the minute
// between recorded uses that a long timeout allows: with SessionIdleTimeout
// 90 s, a session used every 50 s stays live, and ends 90 s after its last
// use.
func TestShortIdleTimeoutKeepsASessionInUse(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		a := db.Open(t, authn.Config{Now: clk.Now, HTTP: authn.HTTPConfig{
			InsecureCookies: true, Throttle: bigThrottle(), SessionCleanupInterval: -1,
			SessionIdleTimeout: 90 * time.Second, SessionLifetime: time.Hour,
		}})
		if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		srv := liveServer(t, a)
		c := signIn(t, srv, credentialsJSON("alice", goodPassword))
		for i := 1; i <= 6; i++ {
			clk.Advance(50 * time.Second)
			if got := appStatus(t, srv, c); got != 200 {
				t.Fatalf("use %d, 50 s after the one before: %d, want 200", i, got)
			}
		}
		clk.Advance(90 * time.Second)
		if got := appStatus(t, srv, c); got != 401 {
			t.Fatalf("90 s after the last use: %d, want 401", got)
		}
	})
}
