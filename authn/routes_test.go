package authn_test

import (
	"context"
	"html"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/minimost/minimost/authn"
)

// do serves one request to h: a form POST when form is non-nil, else a
// bodiless request, with the cookies.
func do(h http.Handler, method, target string, form url.Values, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	var r *http.Request
	if form != nil {
		r = httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		r = httptest.NewRequest(method, target, nil)
	}
	for _, c := range cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

var (
	actionAttr = regexp.MustCompile(`<form [^>]*action="([^"]*)"`)
	nextInput  = regexp.MustCompile(`name="next" value="([^"]*)"`)
)

// hrefs lists the links of a page, unescaped.
func hrefs(body string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`<a href="([^"]*)"`).FindAllStringSubmatch(body, -1) {
		out = append(out, html.UnescapeString(m[1]))
	}
	return out
}

// formOf checks that w is a form page and returns its action, unescaped.
func formOf(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	m := actionAttr.FindStringSubmatch(w.Body.String())
	if m == nil {
		t.Fatalf("no form in the %d page: %s", w.Code, w.Body)
	}
	return html.UnescapeString(m[1])
}

// wantRedirect checks a 303 to location.
func wantRedirect(t *testing.T, w *httptest.ResponseRecorder, location string) {
	t.Helper()
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != location {
		t.Fatalf("got %d to %q, want 303 to %q", w.Code, w.Header().Get("Location"), location)
	}
}

// sessionCookie returns the one non-empty cookie w sets.
func sessionCookie(t *testing.T, w *httptest.ResponseRecorder) *http.Cookie {
	t.Helper()
	for _, c := range w.Result().Cookies() {
		if c.Value != "" {
			return c
		}
	}
	t.Fatalf("no session cookie in %d %v", w.Code, w.Result().Cookies())
	return nil
}

// whoAmI answers the username of the request.
func whoAmI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, _ := authn.Username(r.Context())
		w.Write([]byte("user=" + name))
	})
}

// checkMountedRoutes walks through every route of Routes mounted at /auth
// in h, with pages at /app/ behind RequireSession: the redirect to the
// login form, the form, the login, the app, the logout, the registration
// link and form, and 404 for what Routes does not serve.
func checkMountedRoutes(t *testing.T, a *authn.Authenticator, h http.Handler) {
	t.Helper()
	if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	// RequireSession sends the browser to the prefixed login page.
	wantRedirect(t, do(h, "GET", "/app/page?x=1", nil), "/auth/login?next=%2Fapp%2Fpage%3Fx%3D1")

	w := do(h, "GET", "/auth/login?next=%2Fapp%2Fpage%3Fx%3D1", nil)
	if w.Code != 200 {
		t.Fatalf("login form: %d", w.Code)
	}
	if got := formOf(t, w); got != "/auth/login" {
		t.Errorf("login form posts to %q, want /auth/login", got)
	}
	if m := nextInput.FindStringSubmatch(w.Body.String()); m == nil || html.UnescapeString(m[1]) != "/app/page?x=1" {
		t.Errorf("next of the form: %v", m)
	}
	if got := hrefs(w.Body.String()); len(got) != 1 || got[0] != "/auth/register" {
		t.Errorf("login form links %q, want [/auth/register]", got)
	}

	w = do(h, "POST", "/auth/login", url.Values{"username": {"alice"}, "password": {goodPassword}, "next": {"/app/page?x=1"}})
	wantRedirect(t, w, "/app/page?x=1")
	cookie := sessionCookie(t, w)
	if w := do(h, "GET", "/app/page", nil, cookie); w.Code != 200 || w.Body.String() != "user=alice" {
		t.Fatalf("app with the session: %d %q", w.Code, w.Body)
	}

	wantRedirect(t, do(h, "POST", "/auth/logout", url.Values{}, cookie), "/auth/login?notice=signed_out")
	wantRedirect(t, do(h, "GET", "/app/page", nil, cookie), "/auth/login?next=%2Fapp%2Fpage")

	w = do(h, "GET", "/auth/register", nil)
	if w.Code != 200 || formOf(t, w) != "/auth/register" {
		t.Fatalf("registration form: %d, action %q", w.Code, formOf(t, w))
	}
	if got := hrefs(w.Body.String()); len(got) != 1 || got[0] != "/auth/login" {
		t.Errorf("registration form links %q, want [/auth/login]", got)
	}
	w = do(h, "POST", "/auth/register", url.Values{"username": {"bob"}, "password": {goodPassword}})
	if w.Code != http.StatusCreated {
		t.Fatalf("registration: %d %s", w.Code, w.Body)
	}
	if got := hrefs(w.Body.String()); len(got) != 1 || got[0] != "/auth/login" {
		t.Errorf("registered page links %q, want [/auth/login]", got)
	}
	w = do(h, "POST", "/auth/login", url.Values{"username": {"bob"}, "password": {goodPassword}})
	wantRedirect(t, w, "/")

	// Only the routes, only at their exact paths; logout is POST only.
	for _, target := range []string{
		"/auth/", "/auth/nope", "/auth/login/", "/auth/LOGIN", "/auth/password/", "/auth/sessions/",
		"/auth/login/x", "/auth/register.html",
	} {
		if w := do(h, "GET", target, nil); w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", target, w.Code)
		}
	}
	// The password form is the signed-in user's: others go to the login.
	wantRedirect(t, do(h, "GET", "/auth/password", nil), "/auth/login?next=%2Fauth%2Fpassword")
	if w := do(h, "GET", "/auth/logout", nil); w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "POST" {
		t.Errorf("GET /auth/logout: %d Allow %q, want 405 Allow POST", w.Code, w.Header().Get("Allow"))
	}
	// The sessions page needs a session, and comes back after the login.
	wantRedirect(t, do(h, "GET", "/auth/sessions", nil), "/auth/login?next=%2Fauth%2Fsessions")
}

// TestRoutesServeMux: Routes under the standard library's mux at Prefix.
func TestRoutesServeMux(t *testing.T) {
	t.Parallel()
	a, _ := openTest(t, authn.Config{HTTP: authn.HTTPConfig{Prefix: "/auth", InsecureCookies: true, AllowRegistration: true}})
	mux := http.NewServeMux()
	mux.Handle("/auth/", a.Routes())
	mux.Handle("/app/", a.RequireSession(whoAmI()))
	checkMountedRoutes(t, a, mux)
}

// TestRoutesChi: Routes mounted by chi, which leaves r.URL.Path whole.
func TestRoutesChi(t *testing.T) {
	t.Parallel()
	a, _ := openTest(t, authn.Config{HTTP: authn.HTTPConfig{Prefix: "/auth", InsecureCookies: true, AllowRegistration: true}})
	r := chi.NewRouter()
	r.Mount("/auth", a.Routes())
	r.Handle("/app/*", a.RequireSession(whoAmI()))
	checkMountedRoutes(t, a, r)
}

// TestRoutesMatchPrefixExactly: Routes serves nothing outside its Prefix,
// such as the stripped paths of a misconfigured http.StripPrefix, or a
// path that merely starts with the same letters.
func TestRoutesMatchPrefixExactly(t *testing.T) {
	t.Parallel()
	a, _ := openTest(t, authn.Config{HTTP: authn.HTTPConfig{Prefix: "/auth"}})
	h := a.Routes()
	for _, target := range []string{"/login", "/register", "/authlogin", "/auth", "/x/auth/login", "/auth//login", "/auth/./login"} {
		if w := do(h, "GET", target, nil); w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", target, w.Code)
		}
	}
	r := httptest.NewRequest("GET", "/auth/nope", nil)
	r.Header.Set("Accept", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 404 || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("JSON 404: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
}

// TestRoutesAtRoot: with no Prefix the routes are at the root, and the
// defaults are the old ones.
func TestRoutesAtRoot(t *testing.T) {
	t.Parallel()
	a, _ := openTest(t, authn.Config{HTTP: authn.HTTPConfig{AllowRegistration: true}})
	h := a.Routes()
	w := do(h, "GET", "/login", nil)
	if w.Code != 200 || formOf(t, w) != "/login" {
		t.Fatalf("GET /login: %d", w.Code)
	}
	if got := hrefs(w.Body.String()); len(got) != 1 || got[0] != "/register" {
		t.Errorf("links %q, want [/register]", got)
	}
	wantRedirect(t, do(h, "POST", "/logout", url.Values{}), "/login?notice=signed_out")
	wantRedirect(t, do(a.RequireSession(okHandler()), "GET", "/app/", nil), "/login?next=%2Fapp%2F")
}

// TestRoutesRegistrationOffByDefault: with a zero HTTPConfig, no
// registration route, and no link to it unless RegisterPath names one
// elsewhere: Routes mounted on an internal tool lets no stranger make an
// account.
func TestRoutesRegistrationOffByDefault(t *testing.T) {
	t.Parallel()
	a, path := openTest(t, authn.Config{HTTP: authn.HTTPConfig{Prefix: "/auth"}})
	h := a.Routes()
	if w := do(h, "GET", "/auth/register", nil); w.Code != http.StatusNotFound {
		t.Errorf("GET /auth/register: %d, want 404", w.Code)
	}
	if w := do(h, "POST", "/auth/register", url.Values{"username": {"mallory"}, "password": {goodPassword}}); w.Code != http.StatusNotFound {
		t.Errorf("POST /auth/register: %d, want 404", w.Code)
	}
	if n := len(allUsers(t, rawDB(t, path))); n != 0 {
		t.Errorf("%d accounts, want none", n)
	}
	w := do(h, "GET", "/auth/login", nil)
	if w.Code != 200 || len(hrefs(w.Body.String())) != 0 {
		t.Errorf("login form: %d, links %q, want none", w.Code, hrefs(w.Body.String()))
	}

	b, _ := openTest(t, authn.Config{HTTP: authn.HTTPConfig{Prefix: "/auth", RegisterPath: "/signup"}})
	w = do(b.Routes(), "GET", "/auth/login", nil)
	if got := hrefs(w.Body.String()); len(got) != 1 || got[0] != "/signup" {
		t.Errorf("links %q, want [/signup]", got)
	}
}

// TestHandlersAloneKeepTheirLinks: LoginHandler used alone links no
// registration page unless RegisterPath says so, Prefix or not; the
// redirects follow Prefix unless LoginPath is set.
func TestHandlersAloneKeepTheirLinks(t *testing.T) {
	t.Parallel()
	a, _ := openTest(t, authn.Config{HTTP: authn.HTTPConfig{Prefix: "/auth"}})
	w := do(a.LoginHandler(), "GET", "/auth/login", nil)
	if w.Code != 200 || len(hrefs(w.Body.String())) != 0 {
		t.Errorf("LoginHandler: %d, links %q, want none", w.Code, hrefs(w.Body.String()))
	}
	wantRedirect(t, do(a.LogoutHandler(), "POST", "/auth/logout", url.Values{}), "/auth/login?notice=signed_out")
	if got := hrefs(do(a.RegisterHandler(), "GET", "/auth/register", nil).Body.String()); len(got) != 1 || got[0] != "/auth/login" {
		t.Errorf("RegisterHandler links %q, want [/auth/login]", got)
	}

	b, _ := openTest(t, authn.Config{HTTP: authn.HTTPConfig{Prefix: "/auth", LoginPath: "/signin", RegisterPath: "/signup"}})
	if got := hrefs(do(b.LoginHandler(), "GET", "/signin", nil).Body.String()); len(got) != 1 || got[0] != "/signup" {
		t.Errorf("LoginHandler links %q, want [/signup]", got)
	}
	wantRedirect(t, do(b.RequireSession(okHandler()), "GET", "/app/", nil), "/signin?next=%2Fapp%2F")
	wantRedirect(t, do(b.Routes(), "POST", "/auth/logout", url.Values{}), "/signin?notice=signed_out")
}

// TestRoutesStripPrefix: under http.StripPrefix the forms post to the
// outer path, the one the browser asked for, and logging in through it
// works.
func TestRoutesStripPrefix(t *testing.T) {
	t.Parallel()
	a, _ := openTest(t, authn.Config{HTTP: authn.HTTPConfig{
		LoginPath: "/outer/login", RegisterPath: "/outer/register", InsecureCookies: true, AllowRegistration: true,
	}})
	if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/outer/", http.StripPrefix("/outer", a.Routes()))
	mux.Handle("/one/login", http.StripPrefix("/one", a.LoginHandler()))
	mux.Handle("/app/", a.RequireSession(whoAmI()))
	mux.Handle("/inner/", http.StripPrefix("/inner", a.RequireSession(whoAmI())))

	for target, action := range map[string]string{
		"/outer/login?next=%2Fapp%2F": "/outer/login",
		"/outer/register":             "/outer/register",
		"/one/login":                  "/one/login",
		"/outer/%6Cogin":              "/outer/%6Cogin", // as the client escaped it
	} {
		w := do(mux, "GET", target, nil)
		if w.Code != 200 {
			t.Fatalf("GET %s: %d", target, w.Code)
		}
		if got := formOf(t, w); got != action {
			t.Errorf("GET %s: the form posts to %q, want %q", target, got, action)
		}
	}
	if got := hrefs(do(mux, "GET", "/outer/login", nil).Body.String()); len(got) != 1 || got[0] != "/outer/register" {
		t.Errorf("login form links %q, want [/outer/register]", got)
	}
	wantRedirect(t, do(mux, "GET", "/app/", nil), "/outer/login?next=%2Fapp%2F")
	// RequireSession under StripPrefix sends back to the outer path too.
	wantRedirect(t, do(mux, "GET", "/inner/page?q=1", nil), "/outer/login?next=%2Finner%2Fpage%3Fq%3D1")
	// A failed login shows the form again, posting to the same place.
	w := do(mux, "POST", "/outer/login", url.Values{"username": {"alice"}, "password": {"wrong"}})
	if w.Code != http.StatusUnauthorized || formOf(t, w) != "/outer/login" {
		t.Errorf("failed login: %d, action %q", w.Code, formOf(t, w))
	}
	w = do(mux, "POST", "/outer/login", url.Values{"username": {"alice"}, "password": {goodPassword}, "next": {"/app/"}})
	wantRedirect(t, w, "/app/")
	if w := do(mux, "GET", "/app/", nil, sessionCookie(t, w)); w.Body.String() != "user=alice" {
		t.Errorf("app: %d %q", w.Code, w.Body)
	}
	wantRedirect(t, do(mux, "POST", "/outer/logout", url.Values{}), "/outer/login?notice=signed_out")
}

// TestFormActionStaysOnSite: whatever request-URI a client sends, the
// form's action is a path on this site: never another host, never a
// scheme, never the query.
func TestFormActionStaysOnSite(t *testing.T) {
	t.Parallel()
	a, _ := openTest(t, authn.Config{})
	login := a.LoginHandler()
	for _, tc := range []struct{ requestURI, action string }{
		{"http://evil.example/login", "/login"},
		{"https://evil.example//evil.example/login", "/evil.example/login"},
		{"//evil.example/login", "/evil.example/login"},
		{"///evil.example/login", "/evil.example/login"},
		{"/\\evil.example/login", "/%5Cevil.example/login"},
		{"/%5Cevil.example/login", "/%5Cevil.example/login"},
		{"/%2F/evil.example/login", "/%2F/evil.example/login"},
		{"/login?next=x&a=%22%3E%3Cscript%3E", "/login"},
		{`/login"><script>`, `/login%22%3E%3Cscript%3E`},
		{"*", "/*"},
	} {
		r := httptest.NewRequest("GET", "/login", nil)
		r.RequestURI = tc.requestURI
		w := httptest.NewRecorder()
		login.ServeHTTP(w, r)
		checkLocalAction(t, tc.requestURI, formOf(t, w), tc.action)
	}
	// A request made in the program has no RequestURI: its URL counts.
	for _, tc := range []struct{ path, action string }{
		{"/login", "/login"},
		{"//evil.example/login", "/evil.example/login"},
		{"/\\evil.example/login", "/%5Cevil.example/login"},
		{"/\t/evil.example", "/%09/evil.example"},
	} {
		r := httptest.NewRequest("GET", "/login", nil)
		r.RequestURI = ""
		r.URL = &url.URL{Path: tc.path, Host: "evil.example", Scheme: "https"}
		w := httptest.NewRecorder()
		login.ServeHTTP(w, r)
		checkLocalAction(t, tc.path, formOf(t, w), tc.action)
	}
	// A RequestURI that does not parse falls back to the URL.
	r := httptest.NewRequest("GET", "/login", nil)
	r.RequestURI = "//evil.example/\x00"
	w := httptest.NewRecorder()
	login.ServeHTTP(w, r)
	checkLocalAction(t, r.RequestURI, formOf(t, w), "/login")
}

// TestRequireSessionNextStaysOnSite: the next of RequireSession's redirect
// is the path and query the client asked for, on this site whatever the
// request-URI.
func TestRequireSessionNextStaysOnSite(t *testing.T) {
	t.Parallel()
	a, _ := openTest(t, authn.Config{})
	h := a.RequireSession(okHandler())
	for requestURI, next := range map[string]string{
		"/app/page?x=1&y=%2F":                "/app/page?x=1&y=%2F",
		"http://evil.example/app/?x=1":       "/app/?x=1",
		"//evil.example/app/":                "/evil.example/app/",
		"/\\evil.example/app/":               "/%5Cevil.example/app/",
		"/app/%2F%2Fevil.example?next=//bad": "/app/%2F%2Fevil.example?next=//bad",
	} {
		r := httptest.NewRequest("GET", "/app/", nil)
		r.RequestURI = requestURI
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		wantRedirect(t, w, "/login?"+url.Values{"next": {next}}.Encode())
	}
}

// checkLocalAction checks that the action a browser would take from a page
// is the path want, on this site.
func checkLocalAction(t *testing.T, from, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("request-URI %q: the form posts to %q, want %q", from, got, want)
	}
	base, _ := url.Parse("https://app.example/a/b")
	u, err := base.Parse(strings.ReplaceAll(got, `\`, "/")) // browsers read "\" as "/"
	if err != nil || u.Host != "app.example" || !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") {
		t.Errorf("request-URI %q: the action %q leaves the site (%v, %v)", from, got, u, err)
	}
}

// TestPrefixValidation: New refuses a Prefix it cannot serve as written,
// naming the setting, and accepts clean ones.
func TestPrefixValidation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for i, bad := range []string{
		"auth", "/auth/", "/", "//evil.example", "//", "/a//b", "/a/./b", "/a/..", "/.", "/a b",
		"/a?b", "/a#b", "/a%2Fb", "/a\\b", "/é", "/a\x00", "/a\n", "http://evil.example/auth",
	} {
		a, err := authn.Open(context.Background(), filepath.Join(dir, "bad"+string(rune('a'+i))+".db"), authn.Config{
			Hasher: fastHasher, HTTP: authn.HTTPConfig{Prefix: bad},
		})
		if err == nil {
			a.Close()
			t.Errorf("Prefix %q was accepted", bad)
			continue
		}
		if !strings.Contains(err.Error(), "HTTPConfig.Prefix") {
			t.Errorf("Prefix %q: the error %q does not name the setting", bad, err)
		}
	}
	for _, good := range []string{"", "/auth", "/a/b", "/a-b_c.d~e", "/a@b:c", "/v1.2"} {
		a, _ := openTest(t, authn.Config{HTTP: authn.HTTPConfig{Prefix: good}})
		if w := do(a.Routes(), "GET", good+"/login", nil); w.Code != 200 {
			t.Errorf("Prefix %q: GET %s/login: %d", good, good, w.Code)
		}
	}
}

// TestContentSecurityPolicy: the strict policy for the built-in forms, a
// same-origin one for custom templates, and the configured one, as is, on
// every page rendered.
func TestContentSecurityPolicy(t *testing.T) {
	t.Parallel()
	custom := template.Must(template.New("login.html").Parse(`<link rel="stylesheet" href="/static/site.css"><form method="post" action="{{.Action}}"></form>`))
	const own = "default-src 'self'; script-src 'self' https://cdn.example"

	for _, tc := range []struct {
		name               string
		http               authn.HTTPConfig
		loginCSP, regisCSP string
	}{
		{"built-in", authn.HTTPConfig{}, authn.DefaultContentSecurityPolicy, authn.DefaultContentSecurityPolicy},
		{"custom login", authn.HTTPConfig{LoginTemplate: custom}, authn.CustomContentSecurityPolicy, authn.DefaultContentSecurityPolicy},
		{"custom both", authn.HTTPConfig{LoginTemplate: custom, RegisterTemplate: custom}, authn.CustomContentSecurityPolicy, authn.CustomContentSecurityPolicy},
		{"override built-in", authn.HTTPConfig{ContentSecurityPolicy: own}, own, own},
		{"override custom", authn.HTTPConfig{ContentSecurityPolicy: own, RegisterTemplate: custom}, own, own},
	} {
		tc.http.AllowRegistration = true // the registration page is checked too
		t.Run(tc.name, func(t *testing.T) {
			a, _ := openTest(t, authn.Config{HTTP: tc.http})
			if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
				t.Fatal(err)
			}
			h := a.Routes()
			for _, c := range []struct {
				method, target string
				form           url.Values
				status         int
				want           string
			}{
				{"GET", "/login", nil, 200, tc.loginCSP},
				{"POST", "/login", url.Values{"username": {"alice"}, "password": {"wrong"}}, 401, tc.loginCSP},
				{"POST", "/login", url.Values{"username": {"alice"}}, 400, tc.loginCSP},
				{"GET", "/register", nil, 200, tc.regisCSP},
				{"POST", "/register", url.Values{"username": {"alice"}, "password": {goodPassword}}, 409, tc.regisCSP},
				{"POST", "/register", url.Values{"username": {"bob"}, "password": {goodPassword}}, 201, tc.regisCSP},
			} {
				w := do(h, c.method, c.target, c.form)
				if w.Code != c.status {
					t.Errorf("%s %s: %d, want %d", c.method, c.target, w.Code, c.status)
				}
				if got := w.Header().Values("Content-Security-Policy"); len(got) != 1 || got[0] != c.want {
					t.Errorf("%s %s: Content-Security-Policy %q, want %q", c.method, c.target, got, c.want)
				}
			}
		})
	}
}

// TestContentSecurityPolicyValidation: a policy with a line break or other
// control character fails New.
func TestContentSecurityPolicyValidation(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"default-src 'self'\r\nSet-Cookie: x=y", "default-src 'self'\n", "a\x00", "a\x7f"} {
		a, err := authn.Open(context.Background(), filepath.Join(t.TempDir(), "auth.db"), authn.Config{
			Hasher: fastHasher, HTTP: authn.HTTPConfig{ContentSecurityPolicy: bad},
		})
		if err == nil {
			a.Close()
			t.Errorf("ContentSecurityPolicy %q was accepted", bad)
		} else if !strings.Contains(err.Error(), "HTTPConfig.ContentSecurityPolicy") {
			t.Errorf("the error %q does not name the setting", err)
		}
	}
}

// TestAfterLoginPath: a form login without a local next lands on
// AfterLoginPath ("/" unless set); a next that is a local path still wins;
// New refuses an AfterLoginPath that is not a local path.
func TestAfterLoginPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ set, want string }{{"", "/"}, {"/app/", "/app/"}} {
		a, _ := openTest(t, authn.Config{HTTP: authn.HTTPConfig{AfterLoginPath: tc.set, InsecureCookies: true}})
		if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		h := a.Routes()
		wantRedirect(t, do(h, "POST", "/login", url.Values{"username": {"alice"}, "password": {goodPassword}}), tc.want)
		wantRedirect(t, do(h, "POST", "/login", url.Values{"username": {"alice"}, "password": {goodPassword}, "next": {"//evil.example/"}}), tc.want)
		wantRedirect(t, do(h, "POST", "/login", url.Values{"username": {"alice"}, "password": {goodPassword}, "next": {"/elsewhere"}}), "/elsewhere")
	}
	for _, bad := range []string{"//evil.example/", "https://evil.example/", "app", "/\\evil"} {
		_, err := authn.Open(context.Background(), filepath.Join(t.TempDir(), "auth.db"), authn.Config{HTTP: authn.HTTPConfig{AfterLoginPath: bad}})
		if err == nil || !strings.Contains(err.Error(), "AfterLoginPath") {
			t.Errorf("AfterLoginPath %q: %v, want an error naming the field", bad, err)
		}
	}
}

// TestRoutesMountedWithoutPrefix: Routes mounted at /account/ with no
// Prefix answers 404 to /account/login, and says why in one WARN line that
// names HTTPConfig.Prefix, once per Authenticator however many requests
// come; requests for paths that are none of its routes say nothing.
func TestRoutesMountedWithoutPrefix(t *testing.T) {
	t.Parallel()
	var logs strings.Builder
	a, _ := openTest(t, authn.Config{Logger: newTextLogger(&logs)})
	mux := http.NewServeMux()
	mux.Handle("/account/", a.Routes())
	for _, target := range []string{"/account/nothing", "/account/", "/account/login.php"} {
		do(mux, "GET", target, nil)
	}
	if strings.Contains(logs.String(), "Prefix") {
		t.Fatalf("a warning for paths that are none of the routes:\n%s", logs.String())
	}
	for range 5 {
		if w := do(mux, "GET", "/account/login", nil); w.Code != http.StatusNotFound {
			t.Fatalf("GET /account/login with no Prefix: %d, want 404", w.Code)
		}
		do(mux, "POST", "/account/sessions", url.Values{})
	}
	out := logs.String()
	if n := strings.Count(out, "HTTPConfig.Prefix"); n != 1 || !strings.Contains(out, "level=WARN") || !strings.Contains(out, `mount=/account`) {
		t.Fatalf("want one WARN line naming HTTPConfig.Prefix and the mount point, got %d:\n%s", n, out)
	}
	// Mounted right, nothing is said.
	logs.Reset()
	b, _ := openTest(t, authn.Config{Logger: newTextLogger(&logs), HTTP: authn.HTTPConfig{Prefix: "/account"}})
	mux = http.NewServeMux()
	mux.Handle("/account/", b.Routes())
	if w := do(mux, "GET", "/account/login", nil); w.Code != 200 {
		t.Fatalf("GET /account/login with Prefix /account: %d", w.Code)
	}
	do(mux, "GET", "/account/register", nil) // off: 404, but where it belongs
	if strings.Contains(logs.String(), "Prefix") {
		t.Fatalf("a warning with Prefix right:\n%s", logs.String())
	}
}
