package minimost_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestForwardAuthNginx runs Debian's nginx with the configuration of docs/proxies.md
// (its nginx block, with free ports) in front of an application that echoes
// the Remote-User header it gets, asking examples/forwardauth: Basic
// credentials, an app token from authctl (as the password and as a Bearer
// token) and a session from the login route reach the application with
// the user's name and without the Authorization header, no, wrong or
// revoked credentials get 401 and never reach it,
// a client's own Remote-User never does either, and a browser is sent to
// the login page and, signed in through nginx, comes back to the page it
// asked for. It skips without nginx, but fails under CI (.ci/run installs
// it).
func TestForwardAuthNginx(t *testing.T) {
	t.Parallel()
	bin := nginxBinary(t)
	const pw = "forward auth passphrase 42"
	authn := startExample(t, "forwardauth", "-demo-password", pw)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app: user=%q authorization=%q", r.Header.Values("Remote-User"), r.Header.Get("Authorization"))
	}))
	t.Cleanup(app.Close)
	base := startNginx(t, bin, strings.TrimPrefix(authn.base, "http://"), strings.TrimPrefix(app.URL, "http://"))
	c := clientFrom("127.0.0.1")

	do := func(method, path, body string, cookies []*http.Cookie, header ...string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		for _, ck := range cookies {
			req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	demoOnly := `app: user=["demo"] authorization=""`
	basic := func(user, pass string) string {
		req, _ := http.NewRequest("GET", "/", nil)
		req.SetBasicAuth(user, pass)
		return req.Header.Get("Authorization")
	}

	// Basic credentials: the application sees demo, and not the password.
	resp, body := do("GET", "/app/", "", nil, "Authorization", basic("demo", pw))
	if resp.StatusCode != 200 || body != demoOnly {
		t.Fatalf("Basic: %d %q, want 200 %q\n%s", resp.StatusCode, body, demoOnly, authn.logText())
	}
	// A Remote-User of the client's own is replaced, not added to.
	resp, body = do("GET", "/app/", "", nil, "Authorization", basic("demo", pw), "Remote-User", "admin")
	if resp.StatusCode != 200 || body != demoOnly {
		t.Fatalf("Basic with a forged Remote-User: %d %q, want 200 %q", resp.StatusCode, body, demoOnly)
	}
	// No or wrong credentials, a forged Remote-User alone: 401 with the
	// challenge, and the application never runs.
	for _, h := range [][]string{
		nil,
		{"Remote-User", "demo"},
		{"Authorization", basic("demo", "wrong passphrase")},
		{"Authorization", basic("nobody", pw)},
		{"Authorization", "Basic !!!"},
	} {
		resp, body := do("GET", "/app/", "", nil, h...)
		if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") || strings.Contains(body, "app:") {
			t.Errorf("%q: %d WWW-Authenticate=%q %q, want 401 with the challenge", h, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
		}
	}
	// An app token from authctl, as demo's password and as a Bearer
	// token: the application sees demo and not the token.
	token := strings.TrimSuffix(authctl(t, authn.db, "token", "add", "demo", "ci"), "\n")
	if !strings.HasPrefix(token, "mmt_") || strings.ContainsAny(token, " \n") {
		t.Fatalf("authctl token add printed %q, want the token alone", token)
	}
	for _, auth := range []string{basic("demo", token), "Bearer " + token} {
		if resp, body := do("GET", "/app/", "", nil, "Authorization", auth); resp.StatusCode != 200 || body != demoOnly {
			t.Fatalf("token (%.6s): %d %q, want 200 %q\n%s", auth, resp.StatusCode, body, demoOnly, authn.logText())
		}
	}
	if strings.Contains(authn.logText(), token[len("mmt_"):]) {
		t.Errorf("the server logged the token:\n%s", authn.logText())
	}
	// Revoked: refused on the next request, with the challenge, and the
	// application never runs.
	authctl(t, authn.db, "token", "revoke", "demo", "ci")
	for _, auth := range []string{basic("demo", token), "Bearer " + token} {
		resp, body := do("GET", "/app/", "", nil, "Authorization", auth)
		if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") || strings.Contains(body, "app:") {
			t.Errorf("revoked token (%.6s): %d WWW-Authenticate=%q %q, want 401 with the challenge",
				auth, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
		}
	}

	// The question is not asked from outside.
	if resp, _ := do("GET", "/_authn", "", nil); resp.StatusCode != 404 {
		t.Errorf("/_authn from outside: %d, want 404", resp.StatusCode)
	}

	// A session from the login route, through nginx.
	resp, body = do("POST", "/authn/login", `{"username":"demo","password":"`+pw+`"}`, nil, "Content-Type", "application/json")
	if resp.StatusCode != 200 || len(resp.Cookies()) != 1 {
		t.Fatalf("JSON login through nginx: %d %q %v", resp.StatusCode, body, resp.Cookies())
	}
	session := resp.Cookies()
	if resp, body := do("GET", "/app/", "", session); resp.StatusCode != 200 || body != demoOnly {
		t.Fatalf("session: %d %q, want 200 %q", resp.StatusCode, body, demoOnly)
	}
	if resp, _ := do("POST", "/authn/logout", "", session, "Accept", "application/json"); resp.StatusCode != 204 {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if resp, body := do("GET", "/app/", "", session); resp.StatusCode != 401 || strings.Contains(body, "app:") {
		t.Fatalf("session after logout: %d %q, want 401", resp.StatusCode, body)
	}

	// A browser: to the login page, signed in there, back to the page.
	const page = "/app/page?x=1&y=%2F"
	browser := []string{"Accept", "text/html,application/xhtml+xml,*/*;q=0.8"}
	resp, _ = do("GET", page, "", nil, browser...)
	want := "/authn/login?" + url.Values{"next": {page}}.Encode()
	if resp.StatusCode != 302 || resp.Header.Get("Location") != want || resp.Header.Get("WWW-Authenticate") != "" {
		t.Fatalf("browser: %d Location=%q WWW-Authenticate=%q, want 302 to %q and no challenge",
			resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("WWW-Authenticate"), want)
	}
	resp, form := do("GET", want, "", nil, browser...)
	if resp.StatusCode != 200 || !strings.Contains(form, `value="/app/page?x=1&amp;y=%2F"`) {
		t.Fatalf("login page through nginx: %d, no next field:\n%s", resp.StatusCode, form)
	}
	fields := url.Values{"username": {"demo"}, "password": {pw}, "next": {page}}
	resp, _ = do("POST", "/authn/login", fields.Encode(), nil,
		"Content-Type", "application/x-www-form-urlencoded", "Origin", base, "Sec-Fetch-Site", "same-origin")
	if resp.StatusCode != 303 || resp.Header.Get("Location") != page || len(resp.Cookies()) != 1 {
		t.Fatalf("form login through nginx: %d Location=%q %v, want 303 to %q with a cookie",
			resp.StatusCode, resp.Header.Get("Location"), resp.Cookies(), page)
	}
	if resp, body := do("GET", page, "", resp.Cookies(), browser...); resp.StatusCode != 200 || body != demoOnly {
		t.Fatalf("back at the page: %d %q, want 200 %q", resp.StatusCode, body, demoOnly)
	}
}

// authctl runs examples/authctl on the database file db with args and
// returns its standard output, or fails the test.
func authctl(t *testing.T, db string, args ...string) string {
	t.Helper()
	cmd := exec.Command(buildExample(t, "authctl"), append([]string{"-db", db}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("authctl %q: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

// nginxBinary returns the path of nginx, or skips the test without it
// (fails under CI, where .ci/run installs it).
func nginxBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx" // not on a user's PATH on Debian
	}
	if os.Getenv("CI") != "" {
		t.Fatal("nginx is missing; .ci/run installs it (apt-get install nginx)")
	}
	t.Skip("nginx is missing (apt-get install nginx): TestForwardAuthNginx skipped")
	return ""
}

// startNginx runs nginx in the foreground with docs/proxies.md's nginx
// configuration in a directory of its own (pid, logs and temporary files
// there), listening on a free port of 127.0.0.1, forwarding to authn (the
// example's host:port) and app. It returns nginx's base URL; nginx stops
// with the test.
func startNginx(t *testing.T, bin, authnAddr, appAddr string) string {
	t.Helper()
	addr := freeAddr(t)
	server := readmeNginx(t)
	for old, new := range map[string]string{
		"listen 80;":     "listen " + addr + ";",
		"127.0.0.1:9091": authnAddr,
		"127.0.0.1:8000": appAddr,
	} {
		if !strings.Contains(server, old) {
			t.Fatalf("the nginx configuration of docs/proxies.md has no %q to replace", old)
		}
		server = strings.ReplaceAll(server, old, new)
	}
	return runNginx(t, bin, addr, server)
}

// runNginx runs nginx in the foreground with the http-level configuration
// server (server and upstream blocks), which listens on addr, in a
// directory of its own (pid, logs and temporary files there), so that it
// needs no root. It returns nginx's base URL; nginx stops with the test.
func runNginx(t *testing.T, bin, addr, server string) string {
	t.Helper()
	dir := t.TempDir()
	var temps strings.Builder
	for _, name := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&temps, "    %s_temp_path %s;\n", name, filepath.Join(dir, name))
	}
	conf := fmt.Sprintf(`daemon off;
worker_processes 1;
pid %s;
error_log %s info;
events { worker_connections 256; }
http {
    access_log off;
%s
%s
}
`, filepath.Join(dir, "nginx.pid"), filepath.Join(dir, "error.log"), temps.String(), server)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	errorLog := filepath.Join(dir, "error.log")
	cmd := exec.Command(bin, "-p", dir, "-c", confPath, "-e", errorLog)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGQUIT) // graceful shutdown
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			log, _ := os.ReadFile(errorLog)
			t.Logf("nginx configuration:\n%s\nnginx error log:\n%s", conf, log)
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; {
		if conn, err := net.Dial("tcp", addr); err == nil {
			conn.Close()
			return "http://" + addr
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(errorLog)
			t.Fatalf("nginx exited: %s\n%s\nconfiguration:\n%s", out, log, conf)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not listen on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readmeNginx returns the nginx configuration of docs/proxies.md's section on
// forward auth: the first nginx code block after its heading.
func readmeNginx(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("docs/proxies.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Forward auth")
	_, block, ok2 := strings.Cut(section, "```nginx\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("docs/proxies.md has no nginx block under a heading \"## Forward auth\"")
	}
	return block
}
