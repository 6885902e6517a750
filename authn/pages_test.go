package authn_test

import (
	"context"
	"encoding/json"
	"html"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/minimost/minimost/authn"
)

var (
	titleElem  = regexp.MustCompile(`(?s)<title>(.*?)</title>`)
	h1Elem     = regexp.MustCompile(`(?s)<h1>(.*?)</h1>`)
	anyTag     = regexp.MustCompile(`<[^>]*>`)
	statusElem = regexp.MustCompile(`(?s)<p class="ok" role="status">(.*?)</p>`)
)

// textOf returns the text of the first element re matches in body: its
// tags dropped, its character references decoded, its spaces collapsed.
func textOf(t *testing.T, re *regexp.Regexp, body string) string {
	t.Helper()
	m := re.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in:\n%s", re, body)
	}
	return strings.Join(strings.Fields(html.UnescapeString(anyTag.ReplaceAllString(m[1], " "))), " ")
}

// noticeOf returns the text of the page's notice (role="status"), or "".
func noticeOf(body string) string {
	m := statusElem.FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// postForm serves a form POST of fields to h with the cookies, as a
// browser on the same origin sends it.
func postForm(h http.Handler, target string, fields url.Values, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	return do(h, "POST", target, fields, cookies...)
}

// TestPagesAppName: HTTPConfig.AppName is in the title and the heading of
// every built-in page, in each of its states, escaped: a name with markup
// and quotes stays text. Without it the titles and headings are as they
// were.
func TestPagesAppName(t *testing.T) {
	t.Parallel()
	const name = `Ye "Olde" <script>alert('x')</script> & Co`
	pages := func(t *testing.T, appName string) map[string]string {
		a, _ := openTest(t, authn.Config{HTTP: authn.HTTPConfig{AppName: appName, AllowRegistration: true, Throttle: bigThrottle()}})
		if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		h := a.Routes()
		w := postForm(h, "/login", url.Values{"username": {"alice"}, "password": {goodPassword}})
		c := sessionCookie(t, w)
		out := map[string]string{}
		for label, w := range map[string]*httptest.ResponseRecorder{
			"login":            do(h, "GET", "/login", nil),
			"login failed":     postForm(h, "/login", url.Values{"username": {"alice"}, "password": {"wrong"}}),
			"login signed out": do(h, "GET", "/login?notice=signed_out", nil),
			"register":         do(h, "GET", "/register", nil),
			"register done":    postForm(h, "/register", url.Values{"username": {"bob"}, "password": {goodPassword}}),
			"password":         do(h, "GET", "/password", nil, c),
			"sessions":         do(h, "GET", "/sessions", nil, c),
			"password done":    postForm(h, "/password", url.Values{"current_password": {goodPassword}, "new_password": {newPassword}}, c),
		} {
			if w.Code >= 300 && w.Code != 401 {
				t.Fatalf("%s: %d\n%s", label, w.Code, w.Body)
			}
			out[label] = w.Body.String()
		}
		return out
	}

	heading := map[string]string{
		"login": "Sign in", "login failed": "Sign in", "login signed out": "Sign in",
		"register": "Create an account", "register done": "Account created",
		"password": "Change your password", "password done": "Password changed",
		"sessions": "Your sessions",
	}
	for label, body := range pages(t, name) {
		if got, want := textOf(t, titleElem, body), heading[label]+" · "+name; got != want {
			t.Errorf("%s: title %q, want %q", label, got, want)
		}
		if got, want := textOf(t, h1Elem, body), name+" "+heading[label]; got != want {
			t.Errorf("%s: heading %q, want %q", label, got, want)
		}
		if strings.Contains(body, "<script>") || strings.Contains(body, `"Olde"`) || strings.Contains(body, `'x'`) {
			t.Errorf("%s: the name is not escaped:\n%s", label, body)
		}
		if n := strings.Count(body, template.HTMLEscapeString(name)); n < 2 {
			t.Errorf("%s: the escaped name appears %d times, want it in the title and the heading:\n%s", label, n, body)
		}
	}
	for label, body := range pages(t, "") {
		if got := textOf(t, titleElem, body); got != heading[label] {
			t.Errorf("no AppName, %s: title %q, want %q", label, got, heading[label])
		}
		if got := textOf(t, h1Elem, body); got != heading[label] {
			t.Errorf("no AppName, %s: heading %q, want %q", label, got, heading[label])
		}
	}
}

// TestPagesBackLink: the password page (form and done) and the sessions
// page link back to the application: HTTPConfig.HomePath, else
// AfterLoginPath, else "/". New refuses a HomePath that is not a local
// path.
func TestPagesBackLink(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  authn.HTTPConfig
		want string
	}{
		{authn.HTTPConfig{}, "/"},
		{authn.HTTPConfig{AfterLoginPath: "/app/"}, "/app/"},
		{authn.HTTPConfig{AfterLoginPath: "/app/", HomePath: "/home?tab=1&x=y"}, "/home?tab=1&x=y"},
	} {
		tc.cfg.Prefix, tc.cfg.Throttle = "/auth", bigThrottle()
		a, _ := openTest(t, authn.Config{HTTP: tc.cfg})
		if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		h := a.Routes()
		c := sessionCookie(t, postForm(h, "/auth/login", url.Values{"username": {"alice"}, "password": {goodPassword}}))
		for label, w := range map[string]*httptest.ResponseRecorder{
			"password": do(h, "GET", "/auth/password", nil, c),
			"sessions": do(h, "GET", "/auth/sessions", nil, c),
		} {
			if got := hrefs(w.Body.String()); w.Code != 200 || len(got) != 1 || got[0] != tc.want {
				t.Errorf("HomePath %q, AfterLoginPath %q: the %s page (%d) links %q, want [%s]", tc.cfg.HomePath, tc.cfg.AfterLoginPath, label, w.Code, got, tc.want)
			}
		}
		w := postForm(h, "/auth/password", url.Values{"current_password": {goodPassword}, "new_password": {newPassword}}, c)
		if got := hrefs(w.Body.String()); w.Code != 200 || len(got) != 1 || got[0] != tc.want {
			t.Errorf("HomePath %q: the password-changed page (%d) links %q, want [%s]", tc.cfg.HomePath, w.Code, got, tc.want)
		}
	}
	for _, bad := range []string{"//evil.example/", "https://evil.example/", "javascript:alert(1)", "app", "/\\evil.example", "/\tx"} {
		a, err := authn.Open(context.Background(), filepath.Join(t.TempDir(), "auth.db"), authn.Config{Hasher: fastHasher, HTTP: authn.HTTPConfig{HomePath: bad}})
		if err == nil {
			a.Close()
			t.Errorf("HomePath %q was accepted", bad)
		} else if !strings.Contains(err.Error(), "HTTPConfig.HomePath") {
			t.Errorf("HomePath %q: the error %q does not name the setting", bad, err)
		}
	}
}

// TestLogoutNotice: a logout sends the browser to the login page with
// notice=signed_out, which says so in fixed words. No other query puts a
// word on the page: it is byte for byte the plain login page. A request
// that still carries a session cookie is told nothing, so that a link
// cannot tell a signed-in user they are signed out. A custom template gets
// the notice's code.
func TestLogoutNotice(t *testing.T) {
	t.Parallel()
	a, _ := openTest(t, authn.Config{HTTP: authn.HTTPConfig{Prefix: "/auth", Throttle: bigThrottle()}})
	if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	h := a.Routes()
	c := sessionCookie(t, postForm(h, "/auth/login", url.Values{"username": {"alice"}, "password": {goodPassword}}))
	w := postForm(h, "/auth/logout", url.Values{}, c)
	wantRedirect(t, w, "/auth/login?notice=signed_out")

	w = do(h, "GET", w.Header().Get("Location"), nil)
	if got := noticeOf(w.Body.String()); w.Code != 200 || got != "You are signed out." {
		t.Fatalf("the login page after the logout: %d, notice %q\n%s", w.Code, got, w.Body)
	}
	if formOf(t, w) != "/auth/login" {
		t.Errorf("the form posts to %q", formOf(t, w))
	}

	plain := do(h, "GET", "/auth/login", nil).Body.String()
	if noticeOf(plain) != "" {
		t.Fatalf("the plain login page has a notice:\n%s", plain)
	}
	for _, query := range []string{
		"notice=You+have+been+hacked", "notice=%3Cscript%3Ealert(1)%3C%2Fscript%3E", "notice=SIGNED_OUT", "notice=signed_out%00",
		"notice=+signed_out", "notice=session_ended", "notice=other_sessions_ended", "notice=", "signed_out=1",
		"msg=You+have+been+hacked", "error=You+have+been+hacked",
	} {
		if got := do(h, "GET", "/auth/login?"+query, nil).Body.String(); got != plain {
			t.Errorf("GET /auth/login?%s differs from the plain page:\n%s", query, got)
		}
	}
	// Signed in again: a link with the notice says nothing.
	c = sessionCookie(t, postForm(h, "/auth/login", url.Values{"username": {"alice"}, "password": {goodPassword}}))
	if got := noticeOf(do(h, "GET", "/auth/login?notice=signed_out", nil, c).Body.String()); got != "" {
		t.Errorf("a signed-in request is told %q", got)
	}

	custom := template.Must(template.New("login").Parse(`code={{.NoticeCode}} notice={{.Notice}}`))
	b, _ := openTest(t, authn.Config{HTTP: authn.HTTPConfig{LoginTemplate: custom}})
	if got := do(b.Routes(), "GET", "/login?notice=signed_out", nil).Body.String(); got != "code=signed_out notice=You are signed out." {
		t.Errorf("custom template after a logout: %q", got)
	}
	if got := do(b.Routes(), "GET", "/login?notice=nope", nil).Body.String(); got != "code= notice=" {
		t.Errorf("custom template with a crafted notice: %q", got)
	}
}

// TestEndSessionNotice: ending a session from the sessions page (a form)
// goes back to the page, which confirms it in fixed words: one session,
// or all the others. Ending one's own goes to the login page, which says
// one is signed out. A crafted notice shows nothing.
func TestEndSessionNotice(t *testing.T) {
	t.Parallel()
	a, _ := openTest(t, authn.Config{HTTP: authn.HTTPConfig{Prefix: "/auth", InsecureCookies: true, Throttle: bigThrottle()}})
	if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	s := newSessionsSite(t, a)
	laptop := s.login("alice", "Laptop/1.0")
	phone := s.login("alice", "Phone/2.0")
	s.login("alice", "Tablet/3.0")
	form := func(end string, c *http.Cookie) reply {
		return s.do("POST", "/auth/sessions", "application/x-www-form-urlencoded", url.Values{"end": {end}}.Encode(), c)
	}

	r := form(idOf(t, s.list(laptop), "Phone/2.0"), laptop)
	if r.status != 303 || r.header.Get("Location") != "/auth/sessions?notice=session_ended" {
		t.Fatalf("ending the phone: %d to %q", r.status, r.header.Get("Location"))
	}
	page := s.do("GET", r.header.Get("Location"), "", "", laptop)
	if got := noticeOf(page.body); page.status != 200 || got != "The session was ended. It is signed out." {
		t.Errorf("the page after ending the phone: %d, notice %q\n%s", page.status, got, page.body)
	}
	if s.app(phone) != 401 || len(s.list(laptop)) != 2 {
		t.Fatal("the phone's session was not ended")
	}

	r = form("others", laptop)
	if r.status != 303 || r.header.Get("Location") != "/auth/sessions?notice=other_sessions_ended" {
		t.Fatalf("ending the others: %d to %q", r.status, r.header.Get("Location"))
	}
	page = s.do("GET", r.header.Get("Location"), "", "", laptop)
	if got := noticeOf(page.body); page.status != 200 || got != "All your other sessions were ended. They are signed out." {
		t.Errorf("the page after ending the others: %d, notice %q\n%s", page.status, got, page.body)
	}

	for _, query := range []string{"", "?notice=signed_out", "?notice=%3Cb%3Ehi%3C%2Fb%3E", "?notice=You+won", "?notice=SESSION_ENDED"} {
		page := s.do("GET", "/auth/sessions"+query, "", "", laptop)
		if page.status != 200 || strings.Contains(page.body, `role="status"`) || strings.Contains(page.body, "hi</b>") || strings.Contains(page.body, "You won") {
			t.Errorf("GET /auth/sessions%s: %d, a notice:\n%s", query, page.status, page.body)
		}
	}
	// The JSON list has no notice, whatever the URL.
	if r := s.do("GET", "/auth/sessions?notice=session_ended", "", "", laptop, "Accept", "application/json"); r.status != 200 || !strings.HasPrefix(r.body, "[") {
		t.Errorf("JSON with a notice: %d %s", r.status, r.body)
	}

	// Ending its own session signs the laptop out: the login page says so.
	r = form(currentOf(t, s.list(laptop)).ID, laptop)
	if r.status != 303 || r.header.Get("Location") != "/auth/login?notice=signed_out" {
		t.Fatalf("ending the current session: %d to %q", r.status, r.header.Get("Location"))
	}
	page = s.do("GET", r.header.Get("Location"), "", "", nil)
	if got := noticeOf(page.body); got != "You are signed out." {
		t.Errorf("the login page after ending the current session: notice %q", got)
	}
}

// TestSessionsTemplate: HTTPConfig.SessionsTemplate replaces the sessions
// page, executed with a SessionsData (the sessions, the notice, the error,
// the application's name and link), and is sent with the same-origin
// policy of custom templates, or the configured one.
func TestSessionsTemplate(t *testing.T) {
	t.Parallel()
	tmpl := template.Must(template.New("mine").Parse(`user={{.Username}} n={{len .Sessions}} device={{(index .Sessions 0).Device}} ` +
		`current={{(index .Sessions 0).Current}} others={{.Others}} action={{.Action}} notice={{.NoticeCode}}:{{.Notice}} ` +
		`error={{.Error}} app={{.AppName}} home={{.HomePath}} login={{.LoginPath}}`))
	const own = "default-src 'self'"
	for _, tc := range []struct {
		csp, want string
	}{{"", authn.CustomContentSecurityPolicy}, {own, own}} {
		a, _ := openTest(t, authn.Config{HTTP: authn.HTTPConfig{
			Prefix: "/auth", InsecureCookies: true, Throttle: bigThrottle(),
			SessionsTemplate: tmpl, AppName: "Example", HomePath: "/app/", ContentSecurityPolicy: tc.csp,
		}})
		if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		s := newSessionsSite(t, a)
		other := s.login("alice", "curl/8.5.0")
		c := s.login("alice", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")

		r := s.do("GET", "/auth/sessions", "", "", c)
		if want := "user=alice n=2 device=Firefox on Linux current=true others=true action=/auth/sessions notice=: error= app=Example home=/app/ login=/auth/login"; r.status != 200 || r.body != want {
			t.Errorf("custom page: %d %q, want %q", r.status, r.body, want)
		}
		if got := r.header.Values("Content-Security-Policy"); len(got) != 1 || got[0] != tc.want {
			t.Errorf("custom page: Content-Security-Policy %q, want %q", got, tc.want)
		}
		r = s.do("POST", "/auth/sessions", "application/x-www-form-urlencoded", "end=nope", c)
		if want := "error=That is not a session ID."; r.status != 400 || !strings.Contains(r.body, want) || r.header.Get("Content-Security-Policy") != tc.want {
			t.Errorf("custom page after a malformed ID: %d %q, want %q", r.status, r.body, want)
		}
		r = s.do("POST", "/auth/sessions", "application/x-www-form-urlencoded", "end=others", c)
		r = s.do("GET", r.header.Get("Location"), "", "", c)
		if want := "n=1 device=Firefox on Linux current=true others=false action=/auth/sessions notice=other_sessions_ended:All your other sessions were ended. They are signed out."; !strings.Contains(r.body, want) {
			t.Errorf("custom page after ending the others: %q, want %q in it", r.body, want)
		}
		if s.app(other) != 401 {
			t.Error("the other session goes on")
		}
	}
}

// TestSessionDevice: SessionInfo.Device names the browser and system of
// real User-Agent strings, a client's product otherwise, and nothing for
// garbage, and is at most 64 bytes of plain characters, whatever was sent
// or stored. The page shows it; the JSON has it as "device".
func TestSessionDevice(t *testing.T) {
	t.Parallel()
	pad := func(prefix, suffix string, n int) string {
		return prefix + strings.Repeat("x", n-len(prefix)-len(suffix)) + suffix
	}
	for _, tc := range []struct{ ua, want string }{
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox on Windows"},
		{"Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox on macOS"},
		{"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox on Linux"},
		{"Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", "Firefox on Linux"},
		{"Mozilla/5.0 (Android 14; Mobile; rv:128.0) Gecko/128.0 Firefox/128.0", "Firefox on Android"},
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/127.0 Mobile/15E148 Safari/605.1.15", "Firefox on iPhone"},
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36", "Chrome on Windows"},
		{"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36", "Chrome on macOS"},
		{"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36", "Chrome on Linux"},
		{"Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36", "Chrome on Android"},
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/126.0.6478.54 Mobile/15E148 Safari/604.1", "Chrome on iPhone"},
		{"Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36", "Chrome on ChromeOS"},
		{"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/126.0.0.0 Safari/537.36", "Headless Chrome on Linux"},
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0", "Edge on Windows"},
		{"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0", "Edge on macOS"},
		{"Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36 EdgA/126.0.0.0", "Edge on Android"},
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 EdgiOS/126.2592.56 Mobile/15E148 Safari/605.1.15", "Edge on iPhone"},
		{"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", "Safari on macOS"},
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", "Safari on iPhone"},
		{"Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", "Safari on iPad"},
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 OPR/111.0.0.0", "Opera on Windows"},
		{"Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36", "Samsung Internet on Android"},
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148", "iPhone"}, // an app's web view
		{"Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/AP2A.240605.024)", "Dalvik on Android"},
		{"curl/8.5.0", "curl"},
		{"Wget/1.21.4", "Wget"},
		{"python-requests/2.31.0", "python-requests"},
		{"Go-http-client/1.1", "Go-http-client"},
		{"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", ""},
		{"", ""},
		{"a\x00b\tc\x1b[2Jd\u202ee\u0085f\xffg", ""},
		{"\x1b[31mcurl/8.5.0\x1b[0m", ""},
		{"curl/8.5.0\r\nX-Injected: 1", "curl"},
		{"<script>alert(1)</script>", ""},
		{"Evil<b>/1.0", ""},
		{"Ünïcode/1.0", ""},
		{strings.Repeat("A", 32) + "/1", strings.Repeat("A", 32)},
		{strings.Repeat("A", 33) + "/1", ""},
		{strings.Repeat("A", 256), ""},
		{strings.Repeat("\x00", 256), ""},
		// Exactly 256 bytes, all kept; 300, cut where the Firefox token was.
		{pad("Mozilla/5.0 (X11; Linux x86_64; ", "; rv:128.0) Gecko/20100101 Firefox/128.0", 256), "Firefox on Linux"},
		{pad("Mozilla/5.0 (X11; Linux x86_64; ", "; rv:128.0) Gecko/20100101 Firefox/128.0", 300), "Linux"},
	} {
		a, _ := openTest(t, authn.Config{HTTP: authn.HTTPConfig{InsecureCookies: true, Throttle: bigThrottle()}})
		if err := a.Register(context.Background(), "u", goodPassword); err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("POST", "/login", strings.NewReader(`{"username":"u","password":"`+goodPassword+`"}`))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("User-Agent", tc.ua)
		w := httptest.NewRecorder()
		a.LoginHandler().ServeHTTP(w, r)
		if w.Code != 200 {
			t.Fatalf("login with %q: %d", tc.ua, w.Code)
		}
		list, err := a.Sessions(context.Background(), "u")
		if err != nil || len(list) != 1 {
			t.Fatal(list, err)
		}
		if got := list[0].Device; got != tc.want {
			t.Errorf("User-Agent %q: device %q, want %q", tc.ua, got, tc.want)
		}
		checkDeviceShape(t, list[0].Device)

		// The page shows it, the JSON has it.
		page := do(a.SessionsHandler(), "GET", "/sessions", nil, sessionCookie(t, w)).Body.String()
		if want := "<strong>" + template.HTMLEscapeString(orDefault(tc.want, "Unknown device")) + "</strong>"; !strings.Contains(page, want) {
			t.Errorf("User-Agent %q: the page lacks %s:\n%s", tc.ua, want, page)
		}
		if tc.want != "" {
			jr := httptest.NewRequest("GET", "/sessions", nil)
			jr.Header.Set("Accept", "application/json")
			jr.AddCookie(sessionCookie(t, w))
			jw := httptest.NewRecorder()
			a.SessionsHandler().ServeHTTP(jw, jr)
			var raw []map[string]any
			if err := json.Unmarshal(jw.Body.Bytes(), &raw); err != nil || len(raw) != 1 || raw[0]["device"] != tc.want || raw[0]["user_agent"] == nil && tc.ua != "" {
				t.Errorf("User-Agent %q: JSON %s", tc.ua, jw.Body)
			}
		}
	}

	// A row written outside the library may hold anything: what is read
	// back is bounded all the same.
	a, path := openTest(t, authn.Config{HTTP: authn.HTTPConfig{InsecureCookies: true}})
	if err := a.Register(context.Background(), "u", goodPassword); err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("POST", "/login", strings.NewReader(`{"username":"u","password":"`+goodPassword+`"}`))
	r.Header.Set("Content-Type", "application/json")
	a.LoginHandler().ServeHTTP(httptest.NewRecorder(), r)
	for _, stored := range []string{
		strings.Repeat("Z", 10000) + " Firefox/1 (Windows)",
		strings.Repeat("a/\x00\u202e(", 3000),
		strings.Repeat("Windows Phone ", 500),
	} {
		// Through database/sql: a real parameter, NUL and all.
		if _, err := rawDB(t, path).DB.Exec("UPDATE sessions SET user_agent = ?", stored); err != nil {
			t.Fatal(err)
		}
		list, err := a.Sessions(context.Background(), "u")
		if err != nil || len(list) != 1 {
			t.Fatal(list, err)
		}
		if len(list[0].UserAgent) > 256 {
			t.Errorf("a stored User-Agent of %d bytes read back as %d", len(stored), len(list[0].UserAgent))
		}
		checkDeviceShape(t, list[0].Device)
	}
}

// deviceShape is what SessionInfo.Device may hold.
var deviceShape = regexp.MustCompile(`^[A-Za-z0-9 ._+-]{0,64}$`)

func checkDeviceShape(t *testing.T, device string) {
	t.Helper()
	if !deviceShape.MatchString(device) {
		t.Errorf("device %q: more than 64 bytes, or characters other than letters, digits, spaces and -_.+", device)
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
