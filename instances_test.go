package minimost_test

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minimost/minimost/internal/testdb"
)

// lbSite is three instances of examples/login on one PostgreSQL database
// behind Debian's nginx as a round-robin load balancer, which names the
// instance that answered each request in an X-Upstream header.
type lbSite struct {
	base      string    // nginx
	db        string    // the database's URL, for authctl
	instances []*server // in the order of the upstream block
}

// startLB starts three instances of examples/login on a PostgreSQL schema
// of the test's own (MINIMOST_TEST_POSTGRES; skipped without it, failed
// under CI) with args, trusting nginx's X-Forwarded-For, and nginx in
// front of them.
func startLB(t *testing.T, args ...string) *lbSite {
	t.Helper()
	bin := nginxBinary(t)
	db := testdb.Postgres(t)
	addr := freeAddr(t) // nginx's, which the links the instances make name
	args = append([]string{"-trusted-proxies", "127.0.0.1/32", "-base-url", "http://" + addr}, args...)
	// The first creates the demo user; the others find it.
	s := &lbSite{db: db.URL}
	for range 3 {
		s.instances = append(s.instances, startExampleOn(t, "login", db.URL, args...))
	}
	var upstream strings.Builder
	for _, in := range s.instances {
		fmt.Fprintf(&upstream, "        server %s;\n", strings.TrimPrefix(in.base, "http://"))
	}
	// Round robin (nginx's default) sends each request to the next
	// instance: one flow's steps cross instances.
	s.base = runNginx(t, bin, addr, fmt.Sprintf(`    upstream logins {
%s    }
    server {
        listen %s;
        location / {
            proxy_pass http://logins;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            add_header X-Upstream $upstream_addr always;
        }
    }
`, upstream.String(), addr))
	return s
}

// lbAnswer is a response through the load balancer.
type lbAnswer struct {
	code     int
	upstream string // the instance that answered
	body     string
	resp     *http.Response
}

// do sends one request through nginx with c: a JSON body when body is not
// "", the cookies, and header pairs.
func (s *lbSite) do(t *testing.T, c *http.Client, method, path, body string, cookies []*http.Cookie, header ...string) lbAnswer {
	t.Helper()
	req, err := http.NewRequest(method, s.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	for _, ck := range cookies {
		req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Error(err) // not Fatal: the spray calls it from goroutines
		return lbAnswer{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return lbAnswer{resp.StatusCode, resp.Header.Get("X-Upstream"), string(b), resp}
}

// everywhere sends the same request three times in a row, which round
// robin gives to each instance once, and checks that each answered want.
func (s *lbSite) everywhere(t *testing.T, what string, want int, send func() lbAnswer) {
	t.Helper()
	seen := map[string]bool{}
	for range len(s.instances) {
		got := send()
		if got.code != want {
			t.Errorf("%s at %s: %d %q, want %d", what, got.upstream, got.code, got.body, want)
		}
		seen[got.upstream] = true
	}
	if len(seen) != len(s.instances) {
		t.Errorf("%s: answered by %v, want each of the %d instances once", what, seen, len(s.instances))
	}
}

// TestInstancesBehindNginx: three instances of examples/login on one
// PostgreSQL database behind nginx's round robin behave as one server. A
// spray from one address gets one failure budget in all, not three;
// another address is not refused for it. A session made at one instance
// works at every other; an authctl lock is seen at every instance on the
// next request, by sessions and by remembered Basic credentials; a logout
// at one ends the session everywhere. Every flow's next step goes to
// another instance, so state kept in one process would fail it.
//
// A reset link's form and new password go to two instances, and the reset
// ends the sessions everywhere; a second factor is enrolled through two
// instances and a login's password and code steps go to two more. A
// passkey ceremony joins here as steps of one s.do each, followed by an
// everywhere check.
func TestInstancesBehindNginx(t *testing.T) {
	t.Parallel()
	pw := "load balanced passphrase 42"           // a reset below sets another
	key := filepath.Join(t.TempDir(), "totp.key") // every instance seals with the same key
	if err := os.WriteFile(key, []byte(strings.Repeat("5e", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startLB(t, "-demo-password", pw, "-hash-wait", "3s", "-secret-key-file", key)

	t.Run("one budget", func(t *testing.T) {
		// The default budget: 20 failures, then one every 6 s.
		const burst, interval, conns, requests = 20, 6 * time.Second, 16, 80
		c := clientFrom("127.0.0.20")
		defer c.CloseIdleConnections()
		var next atomic.Int64
		var mu sync.Mutex
		counts := map[int]int{}
		checkedAt := map[string]int{}
		start := time.Now()
		var wg sync.WaitGroup
		for range conns {
			wg.Go(func() {
				for i := next.Add(1); i <= requests; i = next.Add(1) {
					body := fmt.Sprintf(`{"username":"nobody%d","password":"not the password at all"}`, i)
					got := s.do(t, c, "POST", "/login", body, nil)
					mu.Lock()
					counts[got.code]++
					if got.code == http.StatusUnauthorized {
						checkedAt[got.upstream]++
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		budget := burst + int(elapsed/interval) + 1 // a token earned while the last requests ran
		t.Logf("%d requests in %v from one address over %d connections: %v; checks per instance %v (budget %d)",
			requests, elapsed.Round(time.Millisecond), conns, counts, checkedAt, budget)
		if got := counts[http.StatusUnauthorized]; got > budget || got < burst {
			t.Errorf("%d password checks from one address through three instances, want %d to %d (one budget)", got, burst, budget)
		}
		if len(checkedAt) < 2 {
			t.Errorf("the checks were made by %v: the spray did not cross instances", checkedAt)
		}
		if counts[http.StatusTooManyRequests] == 0 {
			t.Errorf("no 429: %v", counts)
		}
		other := clientFrom("127.0.0.21")
		defer other.CloseIdleConnections()
		s.everywhere(t, "another address's wrong password", http.StatusUnauthorized, func() lbAnswer {
			return s.do(t, other, "POST", "/login", `{"username":"nobody","password":"not the password at all"}`, nil)
		})
	})

	c := clientFrom("127.0.0.22")
	defer c.CloseIdleConnections()
	login := func() ([]*http.Cookie, string) {
		t.Helper()
		got := s.do(t, c, "POST", "/login", `{"username":"demo","password":"`+pw+`"}`, nil)
		var who struct{ Username string }
		if json.Unmarshal([]byte(got.body), &who); got.code != http.StatusOK || who.Username != "demo" || len(got.resp.Cookies()) == 0 {
			t.Fatalf("login at %s: %d %q %v", got.upstream, got.code, got.body, got.resp.Cookies())
		}
		return got.resp.Cookies(), got.upstream
	}
	home := func(cookies []*http.Cookie) func() lbAnswer {
		return func() lbAnswer { return s.do(t, c, "GET", "/", "", cookies) }
	}
	basic := func() lbAnswer {
		req, _ := http.NewRequest("GET", "/", nil)
		req.SetBasicAuth("demo", pw)
		return s.do(t, c, "GET", "/api/", "", nil, "Authorization", req.Header.Get("Authorization"))
	}

	// A login at one instance, its session used at every one.
	cookies, at := login()
	s.everywhere(t, "the session made at "+at, http.StatusOK, home(cookies))
	s.everywhere(t, "Basic", http.StatusOK, basic) // each instance remembers the credential

	// An administrator's lock at the database: the next request at every
	// instance sees it, remembered credential or not.
	authctl(t, s.db, "lock", "demo", "1h")
	s.everywhere(t, "the session after authctl lock", http.StatusUnauthorized, home(cookies))
	s.everywhere(t, "Basic after authctl lock", http.StatusUnauthorized, basic)
	authctl(t, s.db, "unlock", "demo")
	s.everywhere(t, "Basic after authctl unlock", http.StatusOK, basic)

	// A logout at one instance ends the session at every one.
	cookies, at = login()
	s.everywhere(t, "the second session, made at "+at, http.StatusOK, home(cookies))
	if got := s.do(t, c, "POST", "/logout", "", cookies); got.code != http.StatusNoContent && got.code != http.StatusSeeOther {
		t.Fatalf("logout at %s: %d %q", got.upstream, got.code, got.body)
	}
	s.everywhere(t, "the session after its logout", http.StatusUnauthorized, home(cookies))

	// A reset link from authctl, its form at one instance and its new
	// password at the next: every session ends everywhere, and the new
	// password works.
	cookies, _ = login()
	link, err := url.Parse(strings.TrimSpace(authctl(t, s.db, "reset-link", "-base-url", s.base, "demo")))
	if err != nil || link.Query().Get("token") == "" {
		t.Fatalf("authctl reset-link printed %v (%v), want a link with a token", link, err)
	}
	token := link.Query().Get("token")
	form := s.do(t, c, "GET", "/reset/confirm?token="+url.QueryEscape(token), "", nil, "Accept", "text/html")
	pw = "a new load balanced passphrase 43"
	reset := s.do(t, c, "POST", "/reset/confirm", `{"token":"`+token+`","new_password":"`+pw+`"}`, nil)
	if form.code != http.StatusOK || reset.code != http.StatusNoContent || reset.upstream == form.upstream {
		t.Fatalf("reset: form at %s %d, new password at %s %d %q; want 200 and 204 at two instances",
			form.upstream, form.code, reset.upstream, reset.code, reset.body)
	}
	s.everywhere(t, "the session after the reset", http.StatusUnauthorized, home(cookies))
	if again := s.do(t, c, "POST", "/reset/confirm", `{"token":"`+token+`","new_password":"yet another passphrase 44"}`, nil); again.code == http.StatusNoContent {
		t.Errorf("the reset link used again at %s: %d, want it refused", again.upstream, again.code)
	}

	// A second factor: enrolled through two instances, and a login whose
	// password step and code step go to two others. The pending login and
	// the enrolment's secret are rows; the code's time step is recorded
	// once per account, so the login uses the step after the one the
	// enrolment used (a code is accepted one step either side).
	cookies, _ = login()
	enrol := s.do(t, c, "POST", "/totp", `{"password":"`+pw+`"}`, cookies)
	var secret struct{ Secret string }
	if json.Unmarshal([]byte(enrol.body), &secret); enrol.code != http.StatusOK || secret.Secret == "" {
		t.Fatalf("TOTP enrolment at %s: %d %q", enrol.upstream, enrol.code, enrol.body)
	}
	now := time.Now()
	confirm := s.do(t, c, "POST", "/totp/confirm", `{"code":"`+totpCode(t, secret.Secret, now)+`"}`, cookies)
	if confirm.code != http.StatusOK || confirm.upstream == enrol.upstream {
		t.Fatalf("TOTP confirmation at %s (enrolled at %s): %d %q", confirm.upstream, enrol.upstream, confirm.code, confirm.body)
	}
	browser := clientFrom("127.0.0.23")
	defer browser.CloseIdleConnections()
	step1 := s.do(t, browser, "POST", "/login", `{"username":"demo","password":"`+pw+`"}`, nil)
	if step1.code != http.StatusOK || !strings.Contains(step1.body, `"second_factor"`) {
		t.Fatalf("password step at %s: %d %q, want 200 and second_factor", step1.upstream, step1.code, step1.body)
	}
	step2 := s.do(t, browser, "POST", "/login/verify", `{"code":"`+totpCode(t, secret.Secret, now.Add(30*time.Second))+`"}`, step1.resp.Cookies())
	if step2.code != http.StatusOK || step2.upstream == step1.upstream || len(step2.resp.Cookies()) == 0 {
		t.Fatalf("code step at %s (password step at %s): %d %q %v", step2.upstream, step1.upstream, step2.code, step2.body, step2.resp.Cookies())
	}
	s.everywhere(t, "the session of the login with a second factor", http.StatusOK, func() lbAnswer {
		return s.do(t, browser, "GET", "/", "", step2.resp.Cookies())
	})

	if t.Failed() {
		for i, in := range s.instances {
			t.Logf("instance %d (%s) log:\n%s", i, in.base, in.logText())
		}
	}
}

// totpCode is the RFC 6238 code (SHA-1, 30 s, 6 digits) of the base32
// secret at time at: what an authenticator app shows.
func totpCode(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.TrimRight(secret, "="))
	if err != nil {
		t.Fatalf("TOTP secret %q: %v", secret, err)
	}
	mac := hmac.New(sha1.New, key)
	binary.Write(mac, binary.BigEndian, uint64(at.Unix()/30))
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0xf
	return fmt.Sprintf("%06d", (binary.BigEndian.Uint32(sum[off:off+4])&0x7fffffff)%1_000_000)
}
