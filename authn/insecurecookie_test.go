package authn_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
)

// insecureCookieWarning is the text of the WARN line of a Secure session
// cookie set over plain HTTP; another test of the project greps for it.
const insecureCookieWarning = "authn: Secure session cookie set over plain HTTP; browsers drop it and the login loops"

// loginsOver starts a server with cfg (TLS or not), signs alice in n times
// over real HTTP with Host set to host and the headers (name, value, ...),
// and returns what was logged. Every login must succeed: the warning is
// about successful logins whose cookie the browser will drop.
func loginsOver(t *testing.T, tls bool, cfg authn.HTTPConfig, host string, n int, header ...string) string {
	t.Helper()
	var log strings.Builder
	a := testdb.SQLite(t).Open(t, authn.Config{Logger: newTextLogger(&log), HTTP: cfg})
	if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(a.LoginHandler())
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	for range n {
		req, err := http.NewRequest("POST", srv.URL+"/login", strings.NewReader(`{"username":"alice","password":"`+goodPassword+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Add(header[i], header[i+1])
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || len(resp.Cookies()) != 1 {
			t.Fatalf("login to %s: %d %v", host, resp.StatusCode, resp.Header)
		}
	}
	return log.String()
}

// TestInsecureCookieWarning: a Secure session cookie set over plain HTTP to
// a host that is not loopback, which the browser drops, is logged as one
// WARN line per Authenticator however many logins there are.
func TestInsecureCookieWarning(t *testing.T) {
	t.Parallel()
	log := loginsOver(t, false, authn.HTTPConfig{}, "example.test", 5)
	if n := strings.Count(log, insecureCookieWarning); n != 1 {
		t.Fatalf("%d warnings for 5 logins over plain HTTP, want 1:\n%s", n, log)
	}
	line := log[strings.Index(log, "level=WARN"):]
	line = line[:strings.IndexByte(line, '\n')]
	for _, want := range []string{"host=example.test", "fix=", "HTTPS", "TrustedProxies", "X-Forwarded-Proto: https", "InsecureCookies"} {
		if !strings.Contains(line, want) {
			t.Errorf("the warning does not say %q:\n%s", want, line)
		}
	}
	if strings.Contains(log, goodPassword) {
		t.Errorf("the log has the password:\n%s", log)
	}
}

// TestInsecureCookieWarningParallel: logins racing over plain HTTP still
// give one line.
func TestInsecureCookieWarningParallel(t *testing.T) {
	t.Parallel()
	var log strings.Builder
	a := testdb.SQLite(t).Open(t, authn.Config{Logger: newTextLogger(&log)})
	if err := a.Register(context.Background(), "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	h := a.LoginHandler()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			r := httptest.NewRequest("POST", "http://example.test/login", strings.NewReader(`{"username":"alice","password":"`+goodPassword+`"}`))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != 200 {
				t.Errorf("login: %d", w.Code)
			}
		})
	}
	wg.Wait()
	if n := strings.Count(log.String(), insecureCookieWarning); n != 1 {
		t.Fatalf("%d warnings for 8 parallel logins, want 1", n)
	}
}

// TestInsecureCookieNoWarning: no warning where the browser keeps the
// cookie (TLS, a loopback host, a trusted proxy saying the browser used
// HTTPS) or where the cookie is not Secure; a client that is not a trusted
// proxy cannot silence it by saying HTTPS itself.
func TestInsecureCookieNoWarning(t *testing.T) {
	t.Parallel()
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	other := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, tc := range []struct {
		name   string
		tls    bool
		cfg    authn.HTTPConfig
		host   string
		header []string
		warn   bool
	}{
		{name: "plain HTTP", host: "example.test:8080", warn: true},
		{name: "an IP address", host: "192.0.2.7", warn: true},
		{name: "a name ending in localhost", host: "notlocalhost", warn: true},
		{name: "localhost.example", host: "localhost.example", warn: true},
		{name: "IPv4-mapped loopback", host: "[::ffff:127.0.0.1]:8080", warn: true},
		{name: "TLS", tls: true, host: "example.test"},
		{name: "localhost", host: "localhost:8080"},
		{name: "LOCALHOST.", host: "LOCALHOST."},
		{name: "a name under .localhost", host: "app.localhost:3000"},
		{name: "127.0.0.1", host: "127.0.0.1:8080"},
		{name: "127.1.2.3", host: "127.1.2.3"},
		{name: "[::1]", host: "[::1]:8080"},
		{name: "::1 without a port", host: "[::1]"},
		{name: "InsecureCookies", cfg: authn.HTTPConfig{InsecureCookies: true}, host: "example.test"},
		{name: "a trusted proxy saying https", cfg: authn.HTTPConfig{TrustedProxies: loopback}, host: "example.test",
			header: []string{"X-Forwarded-Proto", "https"}},
		{name: "a trusted proxy saying HTTPS in Forwarded", cfg: authn.HTTPConfig{TrustedProxies: loopback}, host: "example.test",
			header: []string{"Forwarded", `for=192.0.2.60;Proto="HTTPS";by=203.0.113.43`}},
		{name: "the nearest of two proxies saying https", cfg: authn.HTTPConfig{TrustedProxies: loopback}, host: "example.test",
			header: []string{"Forwarded", `for=198.51.100.1;proto=http, for="[2001:db8::1]:4711";proto=https`}},
		{name: "a trusted proxy saying http", cfg: authn.HTTPConfig{TrustedProxies: loopback}, host: "example.test",
			header: []string{"X-Forwarded-Proto", "http", "Forwarded", "proto=http"}, warn: true},
		{name: "a trusted proxy appending http to a client's https", cfg: authn.HTTPConfig{TrustedProxies: loopback}, host: "example.test",
			header: []string{"X-Forwarded-Proto", "https, http"}, warn: true},
		{name: "a trusted proxy with the client's https in a quoted comma", cfg: authn.HTTPConfig{TrustedProxies: loopback}, host: "example.test",
			header: []string{"Forwarded", `for="a,proto=https";proto=http`}, warn: true},
		{name: "an untrusted client saying https", host: "example.test",
			header: []string{"X-Forwarded-Proto", "https", "Forwarded", "proto=https"}, warn: true},
		{name: "an untrusted client, other proxies trusted", cfg: authn.HTTPConfig{TrustedProxies: other}, host: "example.test",
			header: []string{"X-Forwarded-Proto", "https", "Forwarded", "proto=https"}, warn: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			log := loginsOver(t, tc.tls, tc.cfg, tc.host, 2, tc.header...)
			want := 0
			if tc.warn {
				want = 1
			}
			if n := strings.Count(log, insecureCookieWarning); n != want {
				t.Fatalf("%d warnings, want %d:\n%s", n, want, log)
			}
		})
	}
}
