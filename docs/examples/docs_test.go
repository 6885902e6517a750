package examples

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/password"
	"github.com/prometheus/client_golang/prometheus"
)

// TestDocBlocks: every Go block of README.md and docs/*.md is in a Go file
// of this package, line for line (leading and trailing blanks aside), so
// that it compiles. A block that is a whole program ("package main") is
// checked where it lives: README.md's first block by authn's
// TestReadmeSnippet.
func TestDocBlocks(t *testing.T) {
	docs, err := filepath.Glob("../*.md")
	if err != nil {
		t.Fatal(err)
	}
	docs = append(docs, "../../README.md")
	code := goLines(t)
	blocks := 0
	for _, doc := range docs {
		text, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, block := range goBlocks(string(text)) {
			if strings.HasPrefix(block[0], "package ") {
				continue
			}
			blocks++
			if !containsRun(code, block) {
				t.Errorf("%s: a Go block is in no Go file of docs/examples, so nothing compiles it:\n%s", doc, strings.Join(block, "\n"))
			}
		}
	}
	if blocks < 8 {
		t.Fatalf("only %d Go blocks found in the docs: is the extraction broken?", blocks)
	}
}

// goBlocks returns the ```go blocks of a Markdown text, each as its lines,
// trimmed, without the blank ones.
func goBlocks(text string) [][]string {
	var blocks [][]string
	var cur []string
	in := false
	for _, line := range strings.Split(text, "\n") {
		switch {
		case !in && strings.TrimSpace(line) == "```go":
			in, cur = true, nil
		case in && strings.TrimSpace(line) == "```":
			in = false
			if len(cur) > 0 {
				blocks = append(blocks, cur)
			}
		case in && strings.TrimSpace(line) != "":
			cur = append(cur, strings.TrimSpace(line))
		}
	}
	return blocks
}

// goLines returns the lines of each Go file here, trimmed, without the
// blank ones.
func goLines(t *testing.T) [][]string {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var all [][]string
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, line := range strings.Split(string(text), "\n") {
			if s := strings.TrimSpace(line); s != "" {
				lines = append(lines, s)
			}
		}
		all = append(all, lines)
	}
	return all
}

// containsRun reports whether one of files has block as consecutive lines.
func containsRun(files [][]string, block []string) bool {
	for _, lines := range files {
		for i := 0; i+len(block) <= len(lines); i++ {
			match := true
			for j := range block {
				if lines[i+j] != block[j] {
					match = false
					break
				}
			}
			if match {
				return true
			}
		}
	}
	return false
}

// TestRouters serves each router example of docs/routers.md: the login
// form at /auth/login, /app/ sending a browser without a session to it,
// and a login through it reaching /app/.
func TestRouters(t *testing.T) {
	prefixed := authn.HTTPConfig{Prefix: "/auth"}
	for _, tc := range []struct {
		name  string
		cfg   authn.HTTPConfig
		mount func(*authn.Authenticator) http.Handler
	}{
		{"net/http", prefixed, stdlibRoutes},
		{"http.StripPrefix", authn.HTTPConfig{LoginPath: "/auth/login"}, stripPrefixRoutes},
		{"chi", prefixed, chiRoutes},
		{"echo", prefixed, echoRoutes},
		{"gin", prefixed, ginRoutes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.cfg.InsecureCookies = true
			ctx := context.Background()
			a, err := authn.Open(ctx, filepath.Join(t.TempDir(), "auth.db"), authn.Config{
				HTTP: tc.cfg, Hasher: password.PBKDF2{Iterations: 1000}, Logger: slog.New(slog.DiscardHandler),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if err := a.Register(ctx, "alice", "alice's long passphrase"); err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(tc.mount(a))
			defer srv.Close()
			jar, _ := cookiejar.New(nil)
			c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

			if st, body := get(t, c, srv.URL+"/auth/login"); st != 200 || !strings.Contains(body, "<form") {
				t.Fatalf("GET /auth/login: %d", st)
			}
			resp, err := c.Get(srv.URL + "/app/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/auth/login?next=") {
				t.Fatalf("GET /app/ without a session: %d to %q, want 303 to the login", resp.StatusCode, resp.Header.Get("Location"))
			}
			resp, err = c.PostForm(srv.URL+"/auth/login", url.Values{"username": {"alice"}, "password": {"alice's long passphrase"}, "next": {"/app/"}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/app/" {
				t.Fatalf("login: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
			}
			if st, body := get(t, c, srv.URL+"/app/"); st != 200 || body != "Hello, alice" {
				t.Fatalf("GET /app/ signed in: %d %q", st, body)
			}
		})
	}
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestSnippets runs the guides' smaller examples: the token calls, the
// optional session, the trusted proxy and the Prometheus collector.
func TestSnippets(t *testing.T) {
	ctx := context.Background()
	cfg := trustedProxy()
	if len(cfg.HTTP.TrustedProxies) != 1 {
		t.Fatalf("TrustedProxies %v", cfg.HTTP.TrustedProxies)
	}
	cfg.Hasher, cfg.Logger = password.PBKDF2{Iterations: 1000}, slog.New(slog.DiscardHandler)
	a, err := authn.Open(ctx, filepath.Join(t.TempDir(), "auth.db"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Register(ctx, "alice", "alice's long passphrase"); err != nil {
		t.Fatal(err)
	}
	list, err := tokens(ctx, a)
	if err != nil || len(list) != 1 || list[0].Name != "ci" {
		t.Fatalf("tokens: %+v %v, want the one token listed before its revocation", list, err)
	}
	if left, err := a.Tokens(ctx, "alice"); err != nil || len(left) != 0 {
		t.Fatalf("tokens after the revocation: %+v %v", left, err)
	}

	mux := http.NewServeMux()
	optionalSession(a, mux, app)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if w.Code != 200 || w.Body.String() != "Hello, " {
		t.Fatalf("the optional session without one: %d %q", w.Code, w.Body)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(authnCollector{a})
	families, err := reg.Gather()
	if err != nil || len(families) != 1 || len(families[0].GetMetric()) < 5 {
		t.Fatalf("the collector gathered %v, %v", families, err)
	}
}

// TestPasskeysConfig: docs/passkeys.md's configuration is one New accepts.
func TestPasskeysConfig(t *testing.T) {
	cfg := passkeysConfig()
	cfg.Hasher, cfg.Logger = password.PBKDF2{Iterations: 1000}, slog.New(slog.DiscardHandler)
	a, err := authn.Open(context.Background(), filepath.Join(t.TempDir(), "auth.db"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if !a.Passkeys().Enabled() {
		t.Fatal("passkeys not enabled")
	}
}
