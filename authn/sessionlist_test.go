package authn_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
)

// sessionsSite is a test server over real HTTP: Routes under /auth and
// /app/ behind RequireSession.
type sessionsSite struct {
	t    *testing.T
	a    *authn.Authenticator
	url  string
	http *http.Client
}

func newSessionsSite(t *testing.T, a *authn.Authenticator) *sessionsSite {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/auth/", a.Routes())
	mux.Handle("/app/", a.RequireSession(whoAmI()))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c := srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &sessionsSite{t: t, a: a, url: srv.URL, http: c}
}

// reply is a response with its body read.
type reply struct {
	status int
	header http.Header
	body   string
	resp   *http.Response
}

// do sends one request: body with contentType when contentType is set,
// the cookie when not nil, and headers as name, value pairs.
func (s *sessionsSite) do(method, path, contentType, body string, cookie *http.Cookie, headers ...string) reply {
	s.t.Helper()
	r, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if cookie != nil {
		r.AddCookie(cookie)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	resp, err := s.http.Do(r)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, string(b), resp}
}

// login signs name in over HTTP with the User-Agent ua and returns the
// session cookie.
func (s *sessionsSite) login(name, ua string) *http.Cookie {
	s.t.Helper()
	r := s.do("POST", "/auth/login", "application/json", `{"username":"`+name+`","password":"`+goodPassword+`"}`, nil, "User-Agent", ua)
	cookies := r.resp.Cookies()
	if r.status != 200 || len(cookies) != 1 || cookies[0].Value == "" {
		s.t.Fatalf("login of %s: %d %v %s", name, r.status, cookies, r.body)
	}
	return cookies[0]
}

// app is the status of a JSON request to the page behind RequireSession.
func (s *sessionsSite) app(cookie *http.Cookie) int {
	s.t.Helper()
	return s.do("GET", "/app/", "", "", cookie, "Accept", "application/json").status
}

// list returns the sessions the owner of cookie sees, as JSON.
func (s *sessionsSite) list(cookie *http.Cookie) []authn.SessionInfo {
	s.t.Helper()
	r := s.do("GET", "/auth/sessions", "", "", cookie, "Accept", "application/json")
	var list []authn.SessionInfo
	if err := json.Unmarshal([]byte(r.body), &list); r.status != 200 || err != nil {
		s.t.Fatalf("GET /auth/sessions: %d %v %s", r.status, err, r.body)
	}
	return list
}

// end posts {"end": what} as JSON with cookie and returns the status.
func (s *sessionsSite) end(cookie *http.Cookie, what string, headers ...string) reply {
	s.t.Helper()
	body, _ := json.Marshal(map[string]string{"end": what})
	return s.do("POST", "/auth/sessions", "application/json", string(body), cookie, headers...)
}

// idOf returns the ID of the listed session with the User-Agent ua.
func idOf(t *testing.T, list []authn.SessionInfo, ua string) string {
	t.Helper()
	for _, s := range list {
		if s.UserAgent == ua {
			return s.ID
		}
	}
	t.Fatalf("no session with User-Agent %q in %+v", ua, list)
	return ""
}

func currentOf(t *testing.T, list []authn.SessionInfo) authn.SessionInfo {
	t.Helper()
	var found []authn.SessionInfo
	for _, s := range list {
		if s.Current {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d sessions marked current in %+v, want 1", len(found), list)
	}
	return found[0]
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

var sessionIDShape = regexp.MustCompile(`^[0-9a-f]{32}$`)

// TestSessionsRoute walks through /sessions over real HTTP on both
// databases: the list (JSON and HTML), ending one session, the others and
// the current one, each refused on the very next request, and the
// refusals: no session, another user's session, unknown and malformed IDs
// and bodies, a cross-origin POST.
func TestSessionsRoute(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		var events eventLog
		clk := newClock()
		a := db.Open(t, authn.Config{Now: clk.Now, OnEvent: events.add, HTTP: authn.HTTPConfig{Prefix: "/auth", InsecureCookies: true}})
		ctx := context.Background()
		for _, name := range []string{"alice", "bob"} {
			if err := a.Register(ctx, name, goodPassword); err != nil {
				t.Fatal(err)
			}
		}
		s := newSessionsSite(t, a)
		laptop := s.login("alice", "Laptop/1.0")
		clk.Advance(time.Minute)
		phone := s.login("alice", "Phone/2.0")
		clk.Advance(time.Minute)
		tablet := s.login("alice", "Tablet/3.0")
		bobs := s.login("bob", "Bob/1.0")

		// The list: alice's three, the last used first, the laptop's own
		// marked, and nothing of the tokens or their stored hashes.
		r := s.do("GET", "/auth/sessions", "", "", laptop, "Accept", "application/json")
		var list []authn.SessionInfo
		if err := json.Unmarshal([]byte(r.body), &list); err != nil || r.status != 200 || len(list) != 3 {
			t.Fatalf("list: %d %v %s", r.status, err, r.body)
		}
		for _, c := range []*http.Cookie{laptop, phone, tablet, bobs} {
			if strings.Contains(r.body, c.Value) || strings.Contains(r.body, sha256Hex(c.Value)) || strings.Contains(r.body, sha256Hex(c.Value)[:16]) {
				t.Fatalf("the list shows a token or its hash: %s", r.body)
			}
		}
		// This very request used the laptop's session, two minutes after
		// its login: it is seen as late as the tablet, made after it.
		if got := []string{list[0].UserAgent, list[1].UserAgent, list[2].UserAgent}; strings.Join(got, " ") != "Tablet/3.0 Laptop/1.0 Phone/2.0" {
			t.Errorf("order: %v, want the last used first, then the last made", got)
		}
		if !list[1].LastSeen.Equal(clk.Now().Truncate(time.Microsecond)) || !list[1].Created.Equal(list[2].Created.Add(-time.Minute)) {
			t.Errorf("the laptop's times: %+v", list[1])
		}
		if cur := currentOf(t, list); cur.UserAgent != "Laptop/1.0" {
			t.Errorf("current: %+v", cur)
		}
		for _, si := range list {
			if !sessionIDShape.MatchString(si.ID) || si.ClientNetwork != "127.0.0.0/24" || si.Created.IsZero() || !si.Expires.After(si.LastSeen) {
				t.Errorf("session %+v", si)
			}
		}
		for _, key := range []string{`"id"`, `"created"`, `"last_seen"`, `"expires"`, `"current"`, `"client_network"`, `"user_agent"`} {
			if !strings.Contains(r.body, key) {
				t.Errorf("the JSON has no %s: %s", key, r.body)
			}
		}
		if got := currentOf(t, s.list(phone)); got.UserAgent != "Phone/2.0" {
			t.Errorf("current seen from the phone: %+v", got)
		}

		// The page: the same sessions, with a button each and one for the
		// others, posting back to /auth/sessions.
		r = s.do("GET", "/auth/sessions", "", "", laptop)
		if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") ||
			r.header.Get("Content-Security-Policy") != authn.DefaultContentSecurityPolicy {
			t.Fatalf("page: %d %v", r.status, r.header)
		}
		for _, want := range []string{`action="/auth/sessions"`, "This session", "Tablet/3.0", `value="others"`, `value="` + list[1].ID + `"`, "127.0.0.0/24"} {
			if !strings.Contains(r.body, want) {
				t.Errorf("the page lacks %q:\n%s", want, r.body)
			}
		}

		// Another user's session is not alice's to see or end: 404, as
		// an unknown ID, and it goes on working.
		bobID := currentOf(t, s.list(bobs)).ID
		for _, si := range s.list(laptop) {
			if si.ID == bobID {
				t.Fatal("alice sees bob's session")
			}
		}
		if r := s.end(laptop, bobID); r.status != 404 {
			t.Errorf("ending bob's session as alice: %d %s, want 404", r.status, r.body)
		}
		if got := s.app(bobs); got != 200 {
			t.Fatalf("bob's session after alice's attempt: %d", got)
		}
		unknown := strings.Repeat("0", 32)
		if r := s.end(laptop, unknown); r.status != 404 {
			t.Errorf("unknown ID: %d %s, want 404", r.status, r.body)
		}

		// Malformed IDs and bodies: 400 (415 for another content type),
		// and nothing ended.
		for _, tc := range []struct{ ct, body string }{
			{"application/json", `{"end":"xyz"}`},
			{"application/json", `{"end":"` + strings.ToUpper(list[1].ID) + `"}`},
			{"application/json", `{"end":"` + list[1].ID + `0"}`},
			{"application/json", `{"end":"Others"}`},
			{"application/json", `{"end":""}`},
			{"application/json", `{}`},
			{"application/json", `{"end":1}`},
			{"application/json", `{"end":["others"]}`},
			{"application/json", `{"end":"others","end":"others"}`},
			{"application/json", `{"end":"others","username":"bob"}`},
			{"application/json", `{"end":"others"} {}`},
			{"application/json", `["others"]`},
			{"application/json", `{"end":"\ud800"}`},
			{"application/x-www-form-urlencoded", "end=others&end=others"},
			{"application/x-www-form-urlencoded", "other=1"},
			{"text/plain", "end=others"},
		} {
			r := s.do("POST", "/auth/sessions", tc.ct, tc.body, laptop)
			want := 400
			if tc.ct == "text/plain" {
				want = 415
			}
			if r.status != want {
				t.Errorf("POST %s %q: %d %s, want %d", tc.ct, tc.body, r.status, r.body, want)
			}
		}
		if got := len(s.list(laptop)); got != 3 {
			t.Fatalf("%d sessions after refused requests, want 3", got)
		}
		// A form refused shows the page again, with the message.
		r = s.do("POST", "/auth/sessions", "application/x-www-form-urlencoded", "end=nope", laptop)
		if r.status != 400 || !strings.Contains(r.body, `role="alert"`) || !strings.Contains(r.body, "Tablet/3.0") {
			t.Errorf("form with a malformed ID: %d\n%s", r.status, r.body)
		}

		// A cross-origin POST is refused, and ends nothing.
		if r := s.end(laptop, "others", "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"); r.status != 403 {
			t.Errorf("cross-origin POST: %d, want 403", r.status)
		}
		if got := s.app(tablet); got != 200 {
			t.Fatalf("the tablet after a cross-origin POST: %d", got)
		}

		// No session: a browser goes to the login form and comes back, an
		// API client gets 401, a POST too.
		r = s.do("GET", "/auth/sessions", "", "", nil)
		if r.status != 303 || r.header.Get("Location") != "/auth/login?next=%2Fauth%2Fsessions" {
			t.Errorf("page without a session: %d to %q", r.status, r.header.Get("Location"))
		}
		if r := s.do("GET", "/auth/sessions", "", "", nil, "Accept", "application/json"); r.status != 401 {
			t.Errorf("JSON without a session: %d", r.status)
		}
		if r := s.end(nil, "others"); r.status != 401 {
			t.Errorf("POST without a session: %d", r.status)
		}

		// Ending the phone's session by its ID: 204, and the phone is
		// refused on its very next request; the others go on.
		events.mu.Lock()
		events.events = nil
		events.mu.Unlock()
		if r := s.end(laptop, idOf(t, list, "Phone/2.0")); r.status != 204 || len(r.resp.Cookies()) != 0 {
			t.Fatalf("ending the phone: %d %v %s", r.status, r.resp.Cookies(), r.body)
		}
		if got := s.app(phone); got != 401 {
			t.Fatalf("the phone after it was ended: %d, want 401", got)
		}
		if s.app(laptop) != 200 || s.app(tablet) != 200 {
			t.Fatal("the laptop or the tablet ended with the phone")
		}
		if r := s.end(laptop, idOf(t, list, "Phone/2.0")); r.status != 404 {
			t.Errorf("ending the phone again: %d, want 404", r.status)
		}

		// "End all other sessions" from the form: back to the page; the
		// tablet is refused, the laptop and bob go on.
		r = s.do("POST", "/auth/sessions", "application/x-www-form-urlencoded", url.Values{"end": {"others"}}.Encode(), laptop)
		if r.status != 303 || r.header.Get("Location") != "/auth/sessions?notice=other_sessions_ended" {
			t.Fatalf("end=others: %d to %q", r.status, r.header.Get("Location"))
		}
		if got := s.app(tablet); got != 401 {
			t.Fatalf("the tablet after end=others: %d, want 401", got)
		}
		if s.app(laptop) != 200 || s.app(bobs) != 200 {
			t.Fatal("end=others ended the current session or another user's")
		}
		if list := s.list(laptop); len(list) != 1 || !list[0].Current {
			t.Fatalf("after end=others: %+v", list)
		}
		if got, want := events.String(), "logout alice ended by the user\nlogout alice ended by the user"; got != want {
			t.Errorf("events:\n%s\nwant:\n%s", got, want)
		}

		// Ending the current session signs out: the cookie is cleared.
		r = s.end(laptop, currentOf(t, s.list(laptop)).ID)
		if r.status != 204 || len(r.resp.Cookies()) != 1 || r.resp.Cookies()[0].MaxAge >= 0 {
			t.Fatalf("ending the current session: %d %v", r.status, r.resp.Cookies())
		}
		if got := s.app(laptop); got != 401 {
			t.Fatalf("the laptop after ending itself: %d, want 401", got)
		}
		// From the form, it goes to the login page.
		desk := s.login("alice", "Desk/1.0")
		r = s.do("POST", "/auth/sessions", "multipart/form-data; boundary=XyZ", "--XyZ\r\nContent-Disposition: form-data; name=\"end\"\r\n\r\n"+
			currentOf(t, s.list(desk)).ID+"\r\n--XyZ--\r\n", desk)
		if r.status != 303 || r.header.Get("Location") != "/auth/login?notice=signed_out" || len(r.resp.Cookies()) != 1 || r.resp.Cookies()[0].MaxAge >= 0 {
			t.Fatalf("ending the current session from a multipart form: %d to %q %v", r.status, r.header.Get("Location"), r.resp.Cookies())
		}
		if got := s.app(desk); got != 401 {
			t.Fatalf("the desk after ending itself: %d, want 401", got)
		}
		if got := s.app(bobs); got != 200 {
			t.Fatalf("bob at the end: %d", got)
		}
	})
}

// TestEndSessions: EndSessions ends every session of one user, refused on
// the very next request, and says how many; Sessions lists them; both say
// ErrNotFound for an unknown user.
func TestEndSessions(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		var events eventLog
		a := db.Open(t, authn.Config{OnEvent: events.add, HTTP: authn.HTTPConfig{Prefix: "/auth", InsecureCookies: true}})
		admin := db.Open(t, authn.Config{}) // another process: authctl
		ctx := context.Background()
		for _, name := range []string{"alice", "bob"} {
			if err := a.Register(ctx, name, goodPassword); err != nil {
				t.Fatal(err)
			}
		}
		s := newSessionsSite(t, a)
		alice1, alice2, bobs := s.login("alice", "A/1"), s.login("alice", "A/2"), s.login("bob", "B/1")
		list, err := admin.Sessions(ctx, "alice")
		if err != nil || len(list) != 2 || list[0].Current || list[1].Current {
			t.Fatalf("Sessions(alice) = %+v, %v", list, err)
		}
		n, err := admin.EndSessions(ctx, "alice")
		if err != nil || n != 2 {
			t.Fatalf("EndSessions(alice) = %d, %v; want 2", n, err)
		}
		if s.app(alice1) != 401 || s.app(alice2) != 401 {
			t.Fatal("alice's sessions work after EndSessions")
		}
		if s.app(bobs) != 200 {
			t.Fatal("bob's session ended with alice's")
		}
		if list, err := admin.Sessions(ctx, "alice"); err != nil || len(list) != 0 {
			t.Fatalf("Sessions after EndSessions = %+v, %v", list, err)
		}
		if n, err := admin.EndSessions(ctx, "alice"); err != nil || n != 0 {
			t.Fatalf("EndSessions again = %d, %v; want 0", n, err)
		}
		for _, name := range []string{"nobody", "", "bad name"} {
			if _, err := admin.Sessions(ctx, name); !errors.Is(err, authn.ErrNotFound) {
				t.Errorf("Sessions(%q): %v, want ErrNotFound", name, err)
			}
			if _, err := admin.EndSessions(ctx, name); !errors.Is(err, authn.ErrNotFound) {
				t.Errorf("EndSessions(%q): %v, want ErrNotFound", name, err)
			}
		}
	})
}

// TestMaxSessionsPerUser: 150 logins of one user, one after another and
// in parallel, leave at most MaxSessionsPerUser (default 50) sessions, the
// newest working; each one ended is reported.
func TestMaxSessionsPerUser(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		var mu sync.Mutex
		ended := 0
		onEvent := func(_ context.Context, e authn.Event) {
			if e.Type == authn.EventLogout && e.Reason == authn.ReasonSessionLimit {
				mu.Lock()
				ended++
				mu.Unlock()
			}
		}
		// No lockout: parallel logins of one user are claimed as attempts
		// before they succeed, and more than the threshold at once lock.
		a := db.Open(t, authn.Config{OnEvent: onEvent, LockoutThreshold: -1, HashConcurrency: 8, HashSlotsPerClient: -1,
			HTTP: authn.HTTPConfig{Prefix: "/auth", InsecureCookies: true}})
		ctx := context.Background()
		for _, name := range []string{"seq", "par"} {
			if err := a.Register(ctx, name, goodPassword); err != nil {
				t.Fatal(err)
			}
		}
		s := newSessionsSite(t, a)
		var last *http.Cookie
		for i := range 150 {
			last = s.login("seq", fmt.Sprintf("seq/%d", i))
		}
		if got := countSessions(t, db.Raw, "seq"); got != 50 {
			t.Fatalf("%d sessions after 150 logins one after another, want 50", got)
		}
		if s.app(last) != 200 {
			t.Fatal("the newest session was ended")
		}
		mu.Lock()
		if ended != 100 {
			t.Errorf("%d sessions reported ended for the limit, want 100", ended)
		}
		mu.Unlock()

		var wg sync.WaitGroup
		for w := range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 15 {
					r := s.do("POST", "/auth/login", "application/json", `{"username":"par","password":"`+goodPassword+`"}`, nil,
						"User-Agent", fmt.Sprintf("par/%d/%d", w, i))
					if r.status != 200 {
						t.Errorf("parallel login: %d %s", r.status, r.body)
					}
				}
			}()
		}
		wg.Wait()
		if got := countSessions(t, db.Raw, "par"); got != 50 {
			t.Fatalf("%d sessions after 150 parallel logins, want 50", got)
		}
		if got := countSessions(t, db.Raw, "seq"); got != 50 {
			t.Fatalf("another user's logins changed seq's sessions: %d", got)
		}
	})
}

// TestMaxSessionsEndsLeastRecentlyUsed: the session ended for the limit
// is the one used longest ago, not the oldest login; a negative limit
// keeps every session.
func TestMaxSessionsEndsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		a := db.Open(t, authn.Config{Now: clk.Now, HTTP: authn.HTTPConfig{Prefix: "/auth", InsecureCookies: true, MaxSessionsPerUser: 3}})
		if err := a.Register(context.Background(), "u", goodPassword); err != nil {
			t.Fatal(err)
		}
		s := newSessionsSite(t, a)
		first := s.login("u", "first")
		clk.Advance(2 * time.Minute)
		second := s.login("u", "second")
		clk.Advance(2 * time.Minute)
		third := s.login("u", "third")
		clk.Advance(2 * time.Minute)
		if s.app(first) != 200 { // the first is now the last used
			t.Fatal("first session")
		}
		clk.Advance(2 * time.Minute)
		fourth := s.login("u", "fourth")
		if s.app(second) != 401 {
			t.Fatal("the session used longest ago survived the limit")
		}
		for _, c := range []*http.Cookie{first, third, fourth} {
			if s.app(c) != 200 {
				t.Fatalf("session %v ended", c)
			}
		}

		unlimited := db.Open(t, authn.Config{HTTP: authn.HTTPConfig{Prefix: "/auth", InsecureCookies: true, MaxSessionsPerUser: -1}})
		s = newSessionsSite(t, unlimited)
		for range 60 {
			s.login("u", "many")
		}
		if got := countSessions(t, db.Raw, "u"); got != 60+3 {
			t.Fatalf("%d sessions with no limit, want 63", got)
		}
	})
}

// TestSessionClientStored: what a session stores of its client is the
// address's network (/24, /48) and a User-Agent cut short, without
// control or format characters.
func TestSessionClientStored(t *testing.T) {
	t.Parallel()
	a, _ := openTest(t, authn.Config{HTTP: authn.HTTPConfig{InsecureCookies: true}})
	if err := a.Register(context.Background(), "u", goodPassword); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		remote, ua  string
		net, wantUA string
	}{
		{"203.0.113.77:1234", "Mozilla/5.0 (X11)", "203.0.113.0/24", "Mozilla/5.0 (X11)"},
		{"[2001:db8:aaaa:bbbb::5]:1234", "a\x00b\tc\x1b[2Jd\u202ee\u0085f\xffg", "2001:db8:aaaa::/48", "abc[2Jdefg"},
		{"[::ffff:198.51.100.9]:1234", strings.Repeat("é", 300), "198.51.100.0/24", strings.Repeat("é", 128)},
		{"192.0.2.1:1", "", "192.0.2.0/24", ""},
	} {
		r := httptest.NewRequest("POST", "/login", strings.NewReader(`{"username":"u","password":"`+goodPassword+`"}`))
		r.RemoteAddr = tc.remote
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("User-Agent", tc.ua)
		w := httptest.NewRecorder()
		a.LoginHandler().ServeHTTP(w, r)
		if w.Code != 200 {
			t.Fatalf("login from %s: %d", tc.remote, w.Code)
		}
		list, err := a.Sessions(context.Background(), "u")
		if err != nil || len(list) == 0 {
			t.Fatal(list, err)
		}
		got := list[0] // the last used first: ties keep no order, so each login is checked by its network
		for _, si := range list {
			if si.ClientNetwork == tc.net {
				got = si
			}
		}
		if got.ClientNetwork != tc.net || got.UserAgent != tc.wantUA {
			t.Errorf("from %s with %q: stored %q and %q, want %q and %q", tc.remote, tc.ua, got.ClientNetwork, got.UserAgent, tc.net, tc.wantUA)
		}
	}
}

// TestSessionsSchemaUpgrade: a database whose sessions table predates the
// client columns gets them on Open, on both databases, at once from two
// processes too; its sessions go on working and list without a client.
func TestSessionsSchemaUpgrade(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		real := "REAL"
		if db.Name == "postgres" {
			real = "DOUBLE PRECISION"
		} else if _, err := db.Raw.Exec("PRAGMA journal_mode=WAL"); err != nil {
			// As the library left it: two first Opens of a file in
			// rollback mode would race to switch it to WAL.
			t.Fatal(err)
		}
		for _, stmt := range []string{
			"CREATE TABLE users (username TEXT PRIMARY KEY, password_hash TEXT NOT NULL, failed_attempts INTEGER DEFAULT 0, lockout_until " + real + ")",
			"CREATE TABLE sessions (token_hash TEXT PRIMARY KEY, username TEXT NOT NULL, created_at " + real + " NOT NULL, last_seen " + real + " NOT NULL, expires_at " + real + " NOT NULL)",
			"CREATE INDEX sessions_username_idx ON sessions (username)",
			"CREATE INDEX sessions_expires_at_idx ON sessions (expires_at)",
		} {
			if _, err := db.Raw.Exec(stmt); err != nil {
				t.Fatal(err)
			}
		}
		token := strings.Repeat("A", 43) // 32 bytes, base64url
		now := float64(time.Now().Unix())
		if _, err := db.Raw.Exec("INSERT INTO users (username, password_hash) VALUES ('u', 'x')"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Raw.Exec("INSERT INTO sessions VALUES (?, 'u', ?, ?, ?)", sha256Hex(token), now, now, now+3600); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		as := make([]*authn.Authenticator, 2)
		for i := range as {
			wg.Add(1)
			go func() {
				defer wg.Done()
				as[i] = db.Open(t, authn.Config{HTTP: authn.HTTPConfig{InsecureCookies: true}})
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		a := db.Open(t, authn.Config{HTTP: authn.HTTPConfig{InsecureCookies: true}}) // a third time: nothing to add
		if got := countRows(t, db.Raw, "sessions", "client_net IS NULL AND user_agent IS NULL"); got != 1 {
			t.Fatalf("%d old sessions with the new columns NULL, want 1", got)
		}
		if got := sessionStatus(a.RequireSession(okHandler()), &http.Cookie{Name: "session", Value: token}); got != 200 {
			t.Fatalf("the old session after the upgrade: %d", got)
		}
		list, err := as[1].Sessions(context.Background(), "u")
		if err != nil || len(list) != 1 || list[0].ClientNetwork != "" || list[0].UserAgent != "" || !sessionIDShape.MatchString(list[0].ID) {
			t.Fatalf("Sessions after the upgrade: %+v, %v", list, err)
		}
	})
}
