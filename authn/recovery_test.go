package authn_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/smtp"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/minimost/minimost/internal/testsmtp"
)

// recoverySite is an Authenticator whose routes are served over real HTTP
// and whose mail goes through the library's SMTP sender to a real SMTP
// server (STARTTLS and AUTH PLAIN).
type recoverySite struct {
	a    *authn.Authenticator
	url  string // the server's base URL, which is also HTTPConfig.BaseURL
	mail *testsmtp.Server
	log  *syncLog
}

// newRecoverySite starts a site on db; change, if not nil, adjusts the
// Config first (its Mailer, BaseURL and Routes are set here).
func newRecoverySite(t *testing.T, db *testdb.DB, change func(*authn.Config)) *recoverySite {
	t.Helper()
	mail := testsmtp.Start(t, testsmtp.Config{StartTLS: true, Username: "mailer", Password: "smtp secret 123"})
	sender, err := smtp.New(smtp.Config{
		Addr: mail.Addr, From: "Example <no-reply@example.com>",
		Username: "mailer", Password: "smtp secret 123",
		TLSConfig: tlsTrusting(mail), Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	log := new(syncLog)
	cfg := authn.Config{
		Mailer: sender,
		Logger: log.logger(),
		HTTP: authn.HTTPConfig{
			BaseURL: base, InsecureCookies: true, Throttle: bigThrottle(),
			AllowRegistration: true, RegistrationEmail: true,
		},
		Recovery: authn.RecoveryConfig{MailRetryDelay: 10 * time.Millisecond, RequestsPerClient: -1},
	}
	if change != nil {
		change(&cfg)
	}
	a := db.Open(t, cfg)
	srv.Config.Handler = a.Routes()
	srv.Start()
	t.Cleanup(srv.Close)
	return &recoverySite{a: a, url: base, mail: mail, log: log}
}

// client is a new browser-like client with a cookie jar, which follows no
// redirect.
func (s *recoverySite) client(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

// seen is what a client sees of a response, for comparing two.
type seen struct {
	status int
	header http.Header
	body   string
}

// httpDo sends a JSON POST (body not "") or a GET and returns what the client saw.
func httpDo(t *testing.T, c *http.Client, method, url, body string) seen {
	t.Helper()
	var r *http.Request
	var err error
	if body != "" {
		r, err = http.NewRequest(method, url, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
	} else {
		r, err = http.NewRequest(method, url, nil)
		r.Header.Set("Accept", "application/json")
	}
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return seen{resp.StatusCode, resp.Header, string(b)}
}

// jsonBody is v as a JSON object.
func jsonBody(v map[string]any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// signIn logs username in on c, and fails the test otherwise.
func (s *recoverySite) signIn(t *testing.T, c *http.Client, username, pw string) {
	t.Helper()
	if got := httpDo(t, c, "POST", s.url+"/login", jsonBody(map[string]any{"username": username, "password": pw})); got.status != 200 {
		t.Fatalf("login of %s: %d %s", username, got.status, got.body)
	}
}

// verifyAddress sets and verifies username's address through the routes:
// the email form, then the link mailed. It returns the number of mails
// the server holds afterwards.
func (s *recoverySite) verifyAddress(t *testing.T, username, pw, address string) int {
	t.Helper()
	c := s.client(t)
	s.signIn(t, c, username, pw)
	before := len(s.mail.Messages())
	if got := httpDo(t, c, "POST", s.url+"/email", jsonBody(map[string]any{"email": address, "password": pw})); got.status != http.StatusAccepted {
		t.Fatalf("POST /email: %d %s", got.status, got.body)
	}
	msgs := s.mail.Wait(t, before+1, 10*time.Second)
	m := msgs[before]
	if len(m.To) != 1 || m.To[0] != address {
		t.Fatalf("verification mailed to %v, want %s", m.To, address)
	}
	link := mustLink(t, m)
	if got := httpDo(t, s.client(t), "GET", link, ""); got.status != http.StatusNoContent {
		t.Fatalf("following the verification link: %d %s", got.status, got.body)
	}
	return before + 1
}

func mustLink(t *testing.T, m testsmtp.Message) string {
	t.Helper()
	link, err := m.Link()
	if err != nil {
		t.Fatal(err)
	}
	return link
}

// tokenOf is the token of a link.
func tokenOf(t *testing.T, link string) string {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("token")
}

// TestRecoveryEndToEnd: an address set on the email page counts once its
// link is followed; a reset request by name mails a link, over STARTTLS
// with AUTH, built from BaseURL; the link's page sets a new password,
// ends the session the user had, and works once.
func TestRecoveryEndToEnd(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newRecoverySite(t, db, nil)
		ctx := context.Background()
		if err := s.a.Register(ctx, "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		browser := s.client(t)
		s.signIn(t, browser, "alice", goodPassword)
		// Not counted before the link is followed.
		if got := httpDo(t, browser, "POST", s.url+"/email", jsonBody(map[string]any{"email": "Alice@Example.com", "password": goodPassword})); got.status != http.StatusAccepted {
			t.Fatalf("POST /email: %d %s", got.status, got.body)
		}
		m := s.mail.Wait(t, 1, 10*time.Second)[0]
		if !m.TLS || m.User != "mailer" {
			t.Errorf("verification mail: TLS %v, AUTH user %q; want STARTTLS and AUTH", m.TLS, m.User)
		}
		if addr, err := s.a.Recovery().Email(ctx, "alice"); err != nil || addr != "" {
			t.Fatalf("address before the link: %q, %v; want none", addr, err)
		}
		subject, text, html, err := m.Parts()
		if err != nil || !strings.Contains(subject, "Confirm") || html == "" || !strings.Contains(text, s.url+"/email/verify?token=") {
			t.Fatalf("verification mail: subject %q, html %d bytes, err %v, text:\n%s", subject, len(html), err, text)
		}
		link := mustLink(t, m)
		if got := httpDo(t, s.client(t), "GET", link, ""); got.status != http.StatusNoContent {
			t.Fatalf("verification link: %d %s", got.status, got.body)
		}
		if got := httpDo(t, s.client(t), "GET", link, ""); got.status != http.StatusBadRequest {
			t.Fatalf("verification link followed twice: %d, want 400", got.status)
		}
		if addr, _ := s.a.Recovery().Email(ctx, "alice"); addr != "Alice@Example.com" {
			t.Fatalf("address after the link: %q", addr)
		}

		// Forgot password, by address in another case.
		if got := httpDo(t, s.client(t), "POST", s.url+"/reset", jsonBody(map[string]any{"email": "alice@example.COM"})); got.status != http.StatusAccepted {
			t.Fatalf("POST /reset: %d %s", got.status, got.body)
		}
		m = s.mail.Wait(t, 2, 10*time.Second)[1]
		if m.To[0] != "Alice@Example.com" {
			t.Fatalf("reset mailed to %v", m.To)
		}
		link = mustLink(t, m)
		if !strings.HasPrefix(link, s.url+"/reset/confirm?token=") {
			t.Fatalf("reset link %q not under BaseURL %s", link, s.url)
		}
		token := tokenOf(t, link)
		page := httpDo(t, s.client(t), "GET", link, "")
		if page.status != 200 || !strings.Contains(page.body, `value="alice"`) || page.header.Get("Referrer-Policy") != "no-referrer" {
			t.Fatalf("reset page: %d, Referrer-Policy %q:\n%s", page.status, page.header.Get("Referrer-Policy"), page.body)
		}
		// A password the policy refuses leaves the link working.
		if got := httpDo(t, s.client(t), "POST", s.url+"/reset/confirm", jsonBody(map[string]any{"token": token, "new_password": "short"})); got.status != 400 || !strings.Contains(got.body, authn.CodePasswordTooShort) {
			t.Fatalf("short password: %d %s", got.status, got.body)
		}
		if got := httpDo(t, s.client(t), "POST", s.url+"/reset/confirm", jsonBody(map[string]any{"token": token, "new_password": newPassword})); got.status != http.StatusNoContent {
			t.Fatalf("reset: %d %s", got.status, got.body)
		}
		// Used up.
		if got := httpDo(t, s.client(t), "POST", s.url+"/reset/confirm", jsonBody(map[string]any{"token": token, "new_password": "yet another passphrase 99"})); got.status != 400 || !strings.Contains(got.body, authn.CodeInvalidLink) {
			t.Fatalf("the link again: %d %s", got.status, got.body)
		}
		// The session alice had is over; the new password signs in.
		if got := httpDo(t, browser, "GET", s.url+"/sessions", ""); got.status != http.StatusUnauthorized {
			t.Fatalf("the old session after the reset: %d, want 401", got.status)
		}
		var rows int
		if err := db.Raw.NewSelect().Table("sessions").ColumnExpr("count(*)").Where("username = 'alice'").Scan(ctx, &rows); err != nil || rows != 0 {
			t.Fatalf("%d session rows of alice after the reset (%v), want none", rows, err)
		}
		if err := s.a.Authenticate(ctx, "alice", goodPassword); !errors.Is(err, authn.ErrInvalidCredentials) {
			t.Fatalf("old password after the reset: %v", err)
		}
		s.signIn(t, s.client(t), "alice", newPassword)
		// The address survives the library's own change of hash.
		if addr, _ := s.a.Recovery().Email(ctx, "alice"); addr != "Alice@Example.com" {
			t.Fatalf("address after the reset: %q", addr)
		}
		if strings.Contains(s.log.String(), token) || strings.Contains(s.log.String(), "smtp secret") {
			t.Fatalf("the log holds the token or the SMTP password:\n%s", s.log)
		}
	})
}

// TestResetLinkExpires: a link older than ResetLinkLifetime is refused.
func TestResetLinkExpires(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clock := newClock()
		s := newRecoverySite(t, db, func(c *authn.Config) { c.Now = clock.Now })
		ctx := context.Background()
		if err := s.a.Register(ctx, "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		link, err := s.a.Recovery().ResetLink(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		clock.Advance(30*time.Minute + time.Second)
		if _, err := s.a.Recovery().Reset(ctx, tokenOf(t, link), newPassword); !errors.Is(err, authn.ErrInvalidLink) {
			t.Fatalf("expired link: %v, want ErrInvalidLink", err)
		}
		if got := httpDo(t, s.client(t), "GET", link, ""); got.status != 400 {
			t.Fatalf("page of an expired link: %d", got.status)
		}
		if err := s.a.Authenticate(ctx, "alice", goodPassword); err != nil {
			t.Fatalf("the password after an expired link: %v", err)
		}
	})
}

// TestResetAnswersAlike: a reset request for an unknown name, an unknown
// address, a known name without a verified address and a known name with
// one get the same status, headers and body; only the last sends mail.
func TestResetAnswersAlike(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newRecoverySite(t, db, nil)
		ctx := context.Background()
		for _, u := range []string{"alice", "bob"} {
			if err := s.a.Register(ctx, u, goodPassword); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.a.Recovery().SetEmail(ctx, "alice", "alice@example.com"); err != nil {
			t.Fatal(err)
		}
		var answers []seen
		for _, body := range []string{
			`{"username":"nobody"}`, `{"email":"nobody@example.com"}`, `{"username":"bob"}`,
			`{"username":"alice"}`, `{"email":"ALICE@example.com"}`,
		} {
			got := httpDo(t, s.client(t), "POST", s.url+"/reset", body)
			got.header.Del("Date")
			answers = append(answers, got)
		}
		for i, got := range answers[1:] {
			if got.status != answers[0].status || got.body != answers[0].body || !sameHeader(got.header, answers[0].header) {
				t.Errorf("answer %d differs from the unknown name's: %d %v %q against %d %v %q", i+1,
					got.status, got.header, got.body, answers[0].status, answers[0].header, answers[0].body)
			}
		}
		if answers[0].status != http.StatusAccepted || len(answers[0].header.Values("Set-Cookie")) != 0 {
			t.Fatalf("answer: %d, cookies %v", answers[0].status, answers[0].header.Values("Set-Cookie"))
		}
		// The queue has one worker: once alice's second mail is in,
		// every request before it was handled.
		s.mail.Wait(t, 2, 10*time.Second)
		time.Sleep(100 * time.Millisecond)
		msgs := s.mail.Messages()
		if len(msgs) != 2 {
			t.Fatalf("%d mails, want alice's 2", len(msgs))
		}
		for _, m := range msgs {
			if m.To[0] != "alice@example.com" {
				t.Fatalf("a mail went to %v", m.To)
			}
		}
		// Only the newest link of an account works.
		if _, err := s.a.Recovery().Reset(ctx, tokenOf(t, mustLink(t, msgs[0])), newPassword); !errors.Is(err, authn.ErrInvalidLink) {
			t.Fatalf("an older link: %v, want ErrInvalidLink", err)
		}
		if _, err := s.a.Recovery().Reset(ctx, tokenOf(t, mustLink(t, msgs[1])), newPassword); err != nil {
			t.Fatalf("the newest link: %v", err)
		}
	})
}

// sameHeader compares two headers as a client sees them.
func sameHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if strings.Join(v, "\n") != strings.Join(b[k], "\n") {
			return false
		}
	}
	return true
}

// TestResetLinkIgnoresHost: the link is built from BaseURL whatever Host
// and forwarding headers the request says.
func TestResetLinkIgnoresHost(t *testing.T) {
	t.Parallel()
	s := newRecoverySite(t, testdb.SQLite(t), nil)
	ctx := context.Background()
	if err := s.a.Register(ctx, "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	if err := s.a.Recovery().SetEmail(ctx, "alice", "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	r, _ := http.NewRequest("POST", s.url+"/reset", strings.NewReader(`{"username":"alice"}`))
	r.Header.Set("Content-Type", "application/json")
	r.Host = "evil.example"
	r.Header.Set("X-Forwarded-Host", "evil.example")
	r.Header.Set("Forwarded", "host=evil.example;proto=https")
	resp, err := s.client(t).Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /reset: %d", resp.StatusCode)
	}
	link := mustLink(t, s.mail.Wait(t, 1, 10*time.Second)[0])
	if !strings.HasPrefix(link, s.url+"/") || strings.Contains(link, "evil") {
		t.Fatalf("link %q: want it under %s", link, s.url)
	}
}

// TestResetLinkOnceAcrossInstances: one link posted many times at once to
// two Authenticators on one database resets the password once.
func TestResetLinkOnceAcrossInstances(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s1 := newRecoverySite(t, db, nil)
		s2 := newRecoverySite(t, db, nil)
		ctx := context.Background()
		if err := s1.a.Register(ctx, "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		link, err := s1.a.Recovery().ResetLink(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		token := tokenOf(t, link)
		const n = 12
		statuses := make([]int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				site := s1
				if i%2 == 1 {
					site = s2
				}
				pw := newPassword + string(rune('a'+i))
				statuses[i] = httpDo(t, site.client(t), "POST", site.url+"/reset/confirm", jsonBody(map[string]any{"token": token, "new_password": pw})).status
			}()
		}
		wg.Wait()
		won := 0
		for _, st := range statuses {
			switch st {
			case http.StatusNoContent:
				won++
			case http.StatusBadRequest:
			default:
				t.Errorf("status %d", st)
			}
		}
		if won != 1 {
			t.Fatalf("%d resets succeeded with one link (statuses %v), want 1", won, statuses)
		}
	})
}

// TestResetLinkBoundToAccount: a change of password, a deletion, a rename
// or a hash written outside the library voids a link made before.
func TestResetLinkBoundToAccount(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newRecoverySite(t, db, nil)
		ctx := context.Background()
		for name, void := range map[string]func(t *testing.T){
			"SetPassword": func(t *testing.T) {
				if err := s.a.SetPassword(ctx, "alice", "a third passphrase 1234"); err != nil {
					t.Fatal(err)
				}
			},
			"ChangePassword": func(t *testing.T) {
				if err := s.a.ChangePassword(ctx, "alice", goodPassword, "a third passphrase 1234"); err != nil {
					t.Fatal(err)
				}
			},
			"deleted and made again": func(t *testing.T) {
				if err := s.a.Delete(ctx, "alice"); err != nil {
					t.Fatal(err)
				}
				if err := s.a.Register(ctx, "alice", goodPassword); err != nil {
					t.Fatal(err)
				}
			},
			"renamed outside": func(t *testing.T) {
				if _, err := db.Raw.ExecContext(ctx, "UPDATE users SET username = 'alice2' WHERE username = 'alice'"); err != nil {
					t.Fatal(err)
				}
			},
			"hash written outside": func(t *testing.T) {
				if _, err := db.Raw.ExecContext(ctx, "UPDATE users SET password_hash = 'x' || password_hash WHERE username = 'alice'"); err != nil {
					t.Fatal(err)
				}
			},
		} {
			t.Run(name, func(t *testing.T) {
				for _, u := range []string{"alice", "alice2"} {
					s.a.Delete(ctx, u)
				}
				if err := s.a.Register(ctx, "alice", goodPassword); err != nil {
					t.Fatal(err)
				}
				link, err := s.a.Recovery().ResetLink(ctx, "alice")
				if err != nil {
					t.Fatal(err)
				}
				void(t)
				if _, err := s.a.Recovery().Reset(ctx, tokenOf(t, link), newPassword); !errors.Is(err, authn.ErrInvalidLink) {
					t.Fatalf("link after the change: %v, want ErrInvalidLink", err)
				}
			})
		}
	})
}

// TestResetLockout: a reset clears a lockout of failed passwords, ends
// the sessions and app tokens; an administrator's Lock is never lifted:
// no mail is sent while it holds, and a link is refused.
func TestResetLockout(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newRecoverySite(t, db, nil)
		ctx := context.Background()
		if err := s.a.Register(ctx, "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		if err := s.a.Recovery().SetEmail(ctx, "alice", "alice@example.com"); err != nil {
			t.Fatal(err)
		}
		token, err := s.a.CreateToken(ctx, "alice", "ci")
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			s.a.Authenticate(ctx, "alice", "wrong password here")
		}
		if err := s.a.Authenticate(ctx, "alice", goodPassword); !errors.Is(err, authn.ErrLocked) {
			t.Fatalf("after 5 failures: %v, want locked", err)
		}
		link, err := s.a.Recovery().ResetLink(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.a.Recovery().Reset(ctx, tokenOf(t, link), newPassword); err != nil {
			t.Fatalf("reset of a locked-out account: %v", err)
		}
		if err := s.a.Authenticate(ctx, "alice", newPassword); err != nil {
			t.Fatalf("login after the reset: %v", err)
		}
		if tokens, err := s.a.Tokens(ctx, "alice"); err != nil || len(tokens) != 0 {
			t.Fatalf("app tokens after the reset: %v, %v; want none", tokens, err)
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		if code := serve(s.a.BasicAuth(okHandler()), r); code != 401 {
			t.Fatalf("app token after the reset: %d, want 401", code)
		}

		// An administrator's lock.
		if err := s.a.Lock(ctx, "alice", time.Hour); err != nil {
			t.Fatal(err)
		}
		link, err = s.a.Recovery().ResetLink(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.a.Recovery().Reset(ctx, tokenOf(t, link), "a fourth passphrase 5678"); !errors.Is(err, authn.ErrLocked) {
			t.Fatalf("reset under Lock: %v, want ErrLocked", err)
		}
		if err := s.a.Authenticate(ctx, "alice", newPassword); !errors.Is(err, authn.ErrLocked) {
			t.Fatalf("after a refused reset under Lock: %v, want still locked", err)
		}
		if got := httpDo(t, s.client(t), "POST", s.url+"/reset/confirm", jsonBody(map[string]any{"token": tokenOf(t, link), "new_password": "a fourth passphrase 5678"})); got.status != http.StatusForbidden {
			t.Fatalf("reset route under Lock: %d %s", got.status, got.body)
		}
		httpDo(t, s.client(t), "POST", s.url+"/reset", `{"username":"alice"}`)
		// The request is handled after its answer: wait for it, so that
		// the Unlock below comes after.
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(s.log.String(), "an administrator locked; no mail"); {
			if time.Now().After(deadline) {
				t.Fatalf("the request under Lock was not handled:\n%s", s.log)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := s.a.Unlock(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		httpDo(t, s.client(t), "POST", s.url+"/reset", `{"email":"alice@example.com"}`)
		s.mail.Wait(t, 1, 10*time.Second)
		time.Sleep(100 * time.Millisecond)
		if msgs := s.mail.Messages(); len(msgs) != 1 {
			t.Fatalf("%d mails: want only the one after Unlock", len(msgs))
		}
	})
}

// TestResetBounds: the account's bound sends no more mail and answers the
// same (for an unknown name too); the client's bound answers 429, for
// every name alike.
func TestResetBounds(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newRecoverySite(t, db, func(c *authn.Config) {
			c.Recovery.RequestsPerAccount = 2
			c.Recovery.RequestsPerClient = 6
		})
		ctx := context.Background()
		if err := s.a.Register(ctx, "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		if err := s.a.Recovery().SetEmail(ctx, "alice", "alice@example.com"); err != nil {
			t.Fatal(err)
		}
		c := s.client(t)
		var statuses []int
		for _, body := range []string{`{"username":"alice"}`, `{"email":"alice@example.com"}`, `{"username":"alice"}`,
			`{"username":"nobody"}`, `{"username":"nobody"}`, `{"username":"nobody"}`, `{"username":"alice"}`, `{"username":"nobody"}`} {
			statuses = append(statuses, httpDo(t, c, "POST", s.url+"/reset", body).status)
		}
		want := []int{202, 202, 202, 202, 202, 202, 429, 429}
		for i := range want {
			if statuses[i] != want[i] {
				t.Fatalf("statuses %v, want %v", statuses, want)
			}
		}
		s.mail.Wait(t, 2, 10*time.Second)
		time.Sleep(200 * time.Millisecond)
		if n := len(s.mail.Messages()); n != 2 {
			t.Fatalf("%d mails with a bound of 2 per account", n)
		}
	})
}

// blockingMailer holds every Send until release is closed.
type blockingMailer struct{ release chan struct{} }

func (m blockingMailer) Send(ctx context.Context, _ authn.MailMessage) error {
	select {
	case <-m.release:
	case <-ctx.Done():
	}
	return nil
}

// TestMailQueueFull: with the mailer stuck, requests keep being answered
// at once; the mails beyond the queue are dropped and logged.
func TestMailQueueFull(t *testing.T) {
	t.Parallel()
	mailer := blockingMailer{release: make(chan struct{})}
	defer close(mailer.release)
	log := new(syncLog)
	a := testdb.SQLite(t).Open(t, authn.Config{
		Mailer: mailer, Logger: log.logger(),
		HTTP:     authn.HTTPConfig{BaseURL: "https://example.com", Throttle: bigThrottle()},
		Recovery: authn.RecoveryConfig{MailQueueSize: 2, RequestsPerClient: -1, RequestsPerAccount: -1},
	})
	ctx := context.Background()
	if err := a.Register(ctx, "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	// Every request's job mails alice, and the first mail never ends.
	if err := a.Recovery().SetEmail(ctx, "alice", "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	h := a.Routes()
	done := make(chan error, 1)
	go func() {
		for range 20 {
			r := httptest.NewRequest("POST", "/reset", strings.NewReader(`{"username":"alice"}`))
			r.Header.Set("Content-Type", "application/json")
			if code := serve(h, r); code != http.StatusAccepted {
				done <- fmt.Errorf("POST /reset: %d", code)
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("20 requests not answered within 5 s with the mailer stuck: a request waits for the queue")
	}
	if st := a.Stats(); st.MailDropped == 0 {
		t.Fatalf("Stats %+v: want dropped mail", st)
	}
	if !strings.Contains(log.String(), "mail queue full") {
		t.Fatalf("no log line of the full queue:\n%s", log.String())
	}
}

// TestSMTPServerDown: a mail to a server that is not there is tried
// MailAttempts times, each failure logged, then given up at ERROR; no
// line holds the link or the SMTP password.
func TestSMTPServerDown(t *testing.T) {
	t.Parallel()
	mail := testsmtp.Start(t, testsmtp.Config{})
	addr := mail.Addr
	mail.Close()
	sender, err := smtp.New(smtp.Config{Addr: addr, From: "no-reply@example.com", Username: "mailer", Password: "smtp secret 123", Security: smtp.Plaintext, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	log := new(syncLog)
	a := testdb.SQLite(t).Open(t, authn.Config{
		Mailer: sender, Logger: log.logger(),
		HTTP:     authn.HTTPConfig{BaseURL: "https://example.com"},
		Recovery: authn.RecoveryConfig{MailAttempts: 3, MailRetryDelay: 10 * time.Millisecond},
	})
	ctx := context.Background()
	if err := a.Register(ctx, "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	if err := a.Recovery().SetEmail(ctx, "alice", "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := a.Recovery().RequestReset(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.Stats().MailFailed == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the mail was not given up:\n%s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	out := log.String()
	if n := strings.Count(out, "sending mail failed"); n != 3 {
		t.Fatalf("%d failed attempts logged, want 3:\n%s", n, out)
	}
	if !strings.Contains(out, "mail not sent after every attempt") {
		t.Fatalf("no final error:\n%s", out)
	}
	if strings.Contains(out, "token=") || strings.Contains(out, "smtp secret") {
		t.Fatalf("the log holds a link or the password:\n%s", out)
	}
}

// TestSMTPRetry: a temporary refusal (451) is tried again, and the mail
// arrives.
func TestSMTPRetry(t *testing.T) {
	t.Parallel()
	mail := testsmtp.Start(t, testsmtp.Config{FailFirst: 2})
	sender, err := smtp.New(smtp.Config{Addr: mail.Addr, From: "no-reply@example.com", Security: smtp.Plaintext})
	if err != nil {
		t.Fatal(err)
	}
	a := testdb.SQLite(t).Open(t, authn.Config{Mailer: sender,
		HTTP:     authn.HTTPConfig{BaseURL: "https://example.com"},
		Recovery: authn.RecoveryConfig{MailRetryDelay: 10 * time.Millisecond}})
	ctx := context.Background()
	if err := a.Register(ctx, "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	if err := a.Recovery().RequestVerification(ctx, "alice", "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	mail.Wait(t, 1, 10*time.Second)
	if n := mail.Connections(); n != 3 {
		t.Fatalf("%d connections, want 3 (two refused)", n)
	}
}

// TestSMTPRefusesPlaintextCredentials: credentials over a connection
// without TLS go to a loopback host only; StartTLS refuses a server that
// does not offer it; AUTH over STARTTLS and implicit TLS work.
func TestSMTPRefusesPlaintextCredentials(t *testing.T) {
	t.Parallel()
	for _, host := range []string{"192.0.2.1:25", "smtp.example.com:25", "[2001:db8::1]:25"} {
		if _, err := smtp.New(smtp.Config{Addr: host, From: "a@example.com", Username: "u", Password: "p", Security: smtp.Plaintext}); err == nil {
			t.Errorf("%s: Plaintext with credentials accepted", host)
		}
	}
	for _, host := range []string{"127.0.0.1:25", "localhost:25", "[::1]:25"} {
		if _, err := smtp.New(smtp.Config{Addr: host, From: "a@example.com", Username: "u", Password: "p", Security: smtp.Plaintext}); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
	ctx := context.Background()
	msg := authn.MailMessage{To: "alice@example.com", Subject: "hi", Text: "hello"}
	plain := testsmtp.Start(t, testsmtp.Config{Username: "u", Password: "p"})
	s, err := smtp.New(smtp.Config{Addr: plain.Addr, From: "a@example.com", Username: "u", Password: "p"}) // StartTLS
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(ctx, msg); err == nil {
		t.Fatal("StartTLS sent to a server without STARTTLS")
	}
	for name, cfg := range map[string]testsmtp.Config{"starttls": {StartTLS: true, Username: "u", Password: "p"}, "tls": {ImplicitTLS: true, Username: "u", Password: "p"}} {
		srv := testsmtp.Start(t, cfg)
		security := smtp.StartTLS
		if cfg.ImplicitTLS {
			security = smtp.ImplicitTLS
		}
		s, err := smtp.New(smtp.Config{Addr: srv.Addr, From: "a@example.com", Username: "u", Password: "p", Security: security, TLSConfig: tlsTrusting(srv)})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(ctx, msg); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if m := srv.Messages(); len(m) != 1 || !m[0].TLS || m[0].User != "u" {
			t.Fatalf("%s: %+v", name, m)
		}
	}
}

// TestVerifyEmailTaken: an address verified by one account cannot be
// verified by another (409 on the link), and the request for it is
// answered as any other.
func TestVerifyEmailTaken(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newRecoverySite(t, db, nil)
		ctx := context.Background()
		for _, u := range []string{"alice", "bob"} {
			if err := s.a.Register(ctx, u, goodPassword); err != nil {
				t.Fatal(err)
			}
		}
		n := s.verifyAddress(t, "alice", goodPassword, "shared@example.com")
		c := s.client(t)
		s.signIn(t, c, "bob", goodPassword)
		if got := httpDo(t, c, "POST", s.url+"/email", jsonBody(map[string]any{"email": "SHARED@example.com", "password": goodPassword})); got.status != http.StatusAccepted {
			t.Fatalf("POST /email for a taken address: %d %s", got.status, got.body)
		}
		link := mustLink(t, s.mail.Wait(t, n+1, 10*time.Second)[n])
		if got := httpDo(t, s.client(t), "GET", link, ""); got.status != http.StatusConflict {
			t.Fatalf("verifying a taken address: %d %s", got.status, got.body)
		}
		if addr, _ := s.a.Recovery().Email(ctx, "bob"); addr != "" {
			t.Fatalf("bob has %q", addr)
		}
		if err := s.a.Recovery().SetEmail(ctx, "bob", "Shared@Example.com"); !errors.Is(err, authn.ErrEmailTaken) {
			t.Fatalf("SetEmail of a taken address: %v", err)
		}
		// A wrong password does not set an address.
		if got := httpDo(t, c, "POST", s.url+"/email", jsonBody(map[string]any{"email": "bob@example.com", "password": "wrong password 1234"})); got.status != http.StatusUnauthorized {
			t.Fatalf("POST /email with a wrong password: %d", got.status)
		}
	})
}

// TestRecoveryConfigChecked: New refuses a BaseURL that would make links
// to somewhere else or in plain HTTP, a Mailer without BaseURL, and a
// reset link lifetime over 30 minutes.
func TestRecoveryConfigChecked(t *testing.T) {
	t.Parallel()
	mailer := blockingMailer{}
	for name, cfg := range map[string]authn.Config{
		"mailer without BaseURL": {Mailer: mailer},
		"http to a public host":  {HTTP: authn.HTTPConfig{BaseURL: "http://example.com"}},
		"no scheme":              {HTTP: authn.HTTPConfig{BaseURL: "example.com"}},
		"another scheme":         {HTTP: authn.HTTPConfig{BaseURL: "ftp://example.com"}},
		"query":                  {HTTP: authn.HTTPConfig{BaseURL: "https://example.com/?a=b"}},
		"fragment":               {HTTP: authn.HTTPConfig{BaseURL: "https://example.com/#x"}},
		"user info":              {HTTP: authn.HTTPConfig{BaseURL: "https://u:p@example.com"}},
		"line break":             {HTTP: authn.HTTPConfig{BaseURL: "https://example.com/\nx"}},
		"long reset links":       {HTTP: authn.HTTPConfig{BaseURL: "https://example.com"}, Recovery: authn.RecoveryConfig{ResetLinkLifetime: time.Hour}},
	} {
		cfg.Hasher = fastHasher
		if a, err := authn.Open(context.Background(), t.TempDir()+"/auth.db", cfg); err == nil {
			a.Close()
			t.Errorf("%s: New accepted it", name)
		}
	}
	for _, base := range []string{"https://example.com", "https://example.com/auth/", "http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"} {
		a, err := authn.Open(context.Background(), t.TempDir()+"/auth.db", authn.Config{Hasher: fastHasher, Mailer: mailer, HTTP: authn.HTTPConfig{BaseURL: base}})
		if err != nil {
			t.Errorf("%s: %v", base, err)
			continue
		}
		a.Close()
	}
}

// TestResetFailingDatabase: a reset whose write fails changes nothing
// and leaves the link working; the route answers 503.
func TestResetFailingDatabase(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a, faults := db.OpenFaulty(t, authn.Config{HTTP: authn.HTTPConfig{BaseURL: "https://example.com", Throttle: bigThrottle()}})
		ctx := context.Background()
		if err := a.Register(ctx, "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		link, err := a.Recovery().ResetLink(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		token := tokenOf(t, link)
		faults.Fail(`UPDATE "users"`)
		r := httptest.NewRequest("POST", "/reset/confirm", strings.NewReader(jsonBody(map[string]any{"token": token, "new_password": newPassword})))
		r.Header.Set("Content-Type", "application/json")
		if code := serve(a.Routes(), r); code != http.StatusServiceUnavailable {
			t.Fatalf("reset on a failing database: %d, want 503", code)
		}
		faults.Clear()
		if err := a.Authenticate(ctx, "alice", goodPassword); err != nil {
			t.Fatalf("old password after a failed reset: %v", err)
		}
		if _, err := a.Recovery().Reset(ctx, token, newPassword); err != nil {
			t.Fatalf("the link after a failed reset: %v", err)
		}
	})
}

// tlsTrusting is a TLS configuration that trusts srv's certificate.
func tlsTrusting(srv *testsmtp.Server) *tls.Config { return &tls.Config{RootCAs: srv.RootCAs} }

// TestRecoveryRoutes: without a Mailer the recovery routes are not served
// and the login form links no reset; with one, the pages keep the strict
// Content-Security-Policy, say no-referrer, and a cross-origin POST is
// refused.
func TestRecoveryRoutes(t *testing.T) {
	t.Parallel()
	plain := testdb.SQLite(t).Open(t, authn.Config{})
	for _, path := range []string{"/reset", "/reset/confirm", "/email", "/email/verify"} {
		if code := serve(plain.Routes(), httptest.NewRequest("GET", path, nil)); code != http.StatusNotFound {
			t.Errorf("GET %s without a Mailer: %d, want 404", path, code)
		}
	}
	w := httptest.NewRecorder()
	plain.Routes().ServeHTTP(w, httptest.NewRequest("GET", "/login", nil))
	if strings.Contains(w.Body.String(), "/reset") {
		t.Errorf("the login form links a reset without a Mailer")
	}

	a := testdb.SQLite(t).Open(t, authn.Config{Mailer: &countingMailer{}, HTTP: authn.HTTPConfig{BaseURL: "https://example.com", Prefix: "/auth"}})
	w = httptest.NewRecorder()
	a.Routes().ServeHTTP(w, httptest.NewRequest("GET", "/auth/login", nil))
	if !strings.Contains(w.Body.String(), `href="/auth/reset"`) {
		t.Errorf("the login form links no reset:\n%s", w.Body)
	}
	for _, path := range []string{"/auth/reset", "/auth/reset/confirm?token=x"} {
		w := httptest.NewRecorder()
		a.Routes().ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if csp := w.Header().Get("Content-Security-Policy"); csp != authn.DefaultContentSecurityPolicy || w.Header().Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("GET %s: CSP %q, Referrer-Policy %q", path, csp, w.Header().Get("Referrer-Policy"))
		}
	}
	r := httptest.NewRequest("POST", "https://example.com/auth/reset", strings.NewReader("username=alice"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", "https://evil.example")
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	if code := serve(a.Routes(), r); code != http.StatusForbidden {
		t.Errorf("cross-origin POST /reset: %d, want 403", code)
	}
	for _, body := range []string{`{}`, `{"username":""}`, `{"username":"` + strings.Repeat("a", 300) + `"}`, `{"other":"x"}`} {
		r := httptest.NewRequest("POST", "/auth/reset", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		if code := serve(a.Routes(), r); code != http.StatusBadRequest {
			t.Errorf("POST /reset %s: %d, want 400", body, code)
		}
	}
}

// TestResetAsksSecondFactor: the reset link of an account with TOTP asks
// for its code before the new password is set: without one the link is
// refused (401) and still works; a wrong code counts toward the lockout
// like a wrong password; a replayed code is refused; the right code sets
// the password, and the login afterwards still asks for the second
// factor. A recovery code works once in its place.
func TestResetAsksSecondFactor(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		s := newRecoverySite(t, db, func(c *authn.Config) { c.Now = clk.Now })
		ctx := context.Background()
		secret, recoveryCodes := enrolTOTP(t, s.a, clk, "alice")
		if err := s.a.Recovery().SetEmail(ctx, "alice", "alice@example.com"); err != nil {
			t.Fatal(err)
		}
		if got := httpDo(t, s.client(t), "POST", s.url+"/reset", `{"username":"alice"}`); got.status != http.StatusAccepted {
			t.Fatalf("POST /reset: %d", got.status)
		}
		link := mustLink(t, s.mail.Wait(t, 1, 10*time.Second)[0])
		token := tokenOf(t, link)
		page := httpDo(t, s.client(t), "GET", link, "")
		if page.status != 200 || !strings.Contains(page.body, `name="code"`) {
			t.Fatalf("the reset page of a TOTP account asks no code: %d\n%s", page.status, page.body)
		}
		confirm := func(code, pw string) seen {
			return httpDo(t, s.client(t), "POST", s.url+"/reset/confirm", jsonBody(map[string]any{"token": token, "new_password": pw, "code": code}))
		}
		if got := confirm("", newPassword); got.status != http.StatusUnauthorized || !strings.Contains(got.body, authn.CodeSecondFactorRequired) {
			t.Fatalf("reset without the code: %d %s", got.status, got.body)
		}
		if n := failedAttempts(t, s.a, "alice"); n != 0 {
			t.Fatalf("a reset without a code counted %d attempts", n)
		}
		wrong := codeAt(t, secret, clk.Now().Add(-10*time.Minute))
		if got := confirm(wrong, newPassword); got.status != http.StatusUnauthorized || !strings.Contains(got.body, authn.CodeInvalidCode) {
			t.Fatalf("reset with a wrong code: %d %s", got.status, got.body)
		}
		if n := failedAttempts(t, s.a, "alice"); n != 1 {
			t.Fatalf("a wrong code counted %d attempts, want 1", n)
		}
		if _, err := s.a.Recovery().Reset(ctx, token, newPassword); !errors.Is(err, authn.ErrSecondFactorRequired) {
			t.Fatalf("Reset without a code: %v, want ErrSecondFactorRequired", err)
		}
		if err := s.a.Authenticate(ctx, "alice", goodPassword); !errors.Is(err, authn.ErrSecondFactorRequired) {
			t.Fatalf("the old password before the reset: %v", err)
		}
		code := codeAt(t, secret, clk.Now())
		if got := confirm(code, newPassword); got.status != http.StatusNoContent {
			t.Fatalf("reset with the right code: %d %s", got.status, got.body)
		}
		if n := failedAttempts(t, s.a, "alice"); n != 0 {
			t.Fatalf("after the reset: %d failed attempts, want 0", n)
		}
		// The new password is a password: the second factor is still asked.
		if err := s.a.Authenticate(ctx, "alice", newPassword); !errors.Is(err, authn.ErrSecondFactorRequired) {
			t.Fatalf("the new password alone: %v, want ErrSecondFactorRequired", err)
		}
		// The same code again, with a new link: refused (a time step once).
		link2, err := s.a.Recovery().ResetLink(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.a.Recovery().ResetWithCode(ctx, tokenOf(t, link2), code, "a third passphrase 1234"); !errors.Is(err, authn.ErrInvalidCredentials) {
			t.Fatalf("a replayed code: %v, want ErrInvalidCredentials", err)
		}
		// A recovery code in its place, once.
		if _, err := s.a.Recovery().ResetWithCode(ctx, tokenOf(t, link2), recoveryCodes[0], "a third passphrase 1234"); err != nil {
			t.Fatalf("a recovery code: %v", err)
		}
		link3, err := s.a.Recovery().ResetLink(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.a.Recovery().ResetWithCode(ctx, tokenOf(t, link3), recoveryCodes[0], "a fourth passphrase 5678"); !errors.Is(err, authn.ErrInvalidCredentials) {
			t.Fatalf("a recovery code twice: %v, want ErrInvalidCredentials", err)
		}
	})
}

// TestRegistrationEmail: with RegistrationEmail, a registration may give
// an address, which is mailed a link that verifies it; an invalid one is
// refused before the account is made. The email route removes it.
func TestRegistrationEmail(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newRecoverySite(t, db, nil)
		ctx := context.Background()
		c := s.client(t)
		if got := httpDo(t, c, "POST", s.url+"/register", jsonBody(map[string]any{"username": "carol", "password": goodPassword, "email": "carol@"})); got.status != 400 || !strings.Contains(got.body, authn.CodeEmailInvalid) {
			t.Fatalf("registration with an invalid address: %d %s", got.status, got.body)
		}
		if _, err := s.a.Account(ctx, "carol"); !errors.Is(err, authn.ErrNotFound) {
			t.Fatalf("an account was made with an invalid address: %v", err)
		}
		if got := httpDo(t, c, "POST", s.url+"/register", jsonBody(map[string]any{"username": "carol", "password": goodPassword, "email": "carol@example.com"})); got.status != http.StatusCreated {
			t.Fatalf("registration: %d %s", got.status, got.body)
		}
		m := s.mail.Wait(t, 1, 10*time.Second)[0]
		if m.To[0] != "carol@example.com" {
			t.Fatalf("mailed to %v", m.To)
		}
		if got := httpDo(t, s.client(t), "GET", mustLink(t, m), ""); got.status != http.StatusNoContent {
			t.Fatalf("verification: %d %s", got.status, got.body)
		}
		if addr, _ := s.a.Recovery().Email(ctx, "carol"); addr != "carol@example.com" {
			t.Fatalf("address %q", addr)
		}
		s.signIn(t, c, "carol", goodPassword)
		if got := httpDo(t, c, "POST", s.url+"/email", jsonBody(map[string]any{"remove": true, "password": goodPassword})); got.status != http.StatusNoContent {
			t.Fatalf("removing the address: %d %s", got.status, got.body)
		}
		if addr, _ := s.a.Recovery().Email(ctx, "carol"); addr != "" {
			t.Fatalf("address after removal %q", addr)
		}
	})
}

// TestVerificationBound: an account asks for at most RequestsPerAccount
// verification mails a window (then 429), so that it cannot mail another
// address over and over; the background cleanup deletes expired links
// and old counts.
func TestVerificationBound(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		s := newRecoverySite(t, db, func(c *authn.Config) {
			c.Now = clk.Now
			c.Recovery.RequestsPerAccount = 2
			c.HTTP.SessionCleanupInterval = 20 * time.Millisecond
		})
		ctx := context.Background()
		if err := s.a.Register(ctx, "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		c := s.client(t)
		s.signIn(t, c, "alice", goodPassword)
		var statuses []int
		for range 3 {
			statuses = append(statuses, httpDo(t, c, "POST", s.url+"/email", jsonBody(map[string]any{"email": "victim@example.com", "password": goodPassword})).status)
		}
		if statuses[0] != 202 || statuses[1] != 202 || statuses[2] != 429 {
			t.Fatalf("statuses %v, want 202 202 429", statuses)
		}
		count := func(table string) int {
			var n int
			if err := db.Raw.NewSelect().Table(table).ColumnExpr("count(*)").Scan(ctx, &n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		if count("recovery_tokens") == 0 || count("recovery_limits") == 0 {
			t.Fatal("no rows to clean")
		}
		clk.Advance(25 * time.Hour)
		deadline := time.Now().Add(10 * time.Second)
		for count("recovery_tokens")+count("recovery_limits") != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("after the links' and counts' end: %d links, %d counts left", count("recovery_tokens"), count("recovery_limits"))
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// TestAddressBoundToHash: a hash written outside the library voids the
// verified address (no reset mail goes to it), and a name deleted and
// made again outside inherits none; the library's own changes of
// password keep it.
func TestAddressBoundToHash(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s := newRecoverySite(t, db, nil)
		ctx := context.Background()
		if err := s.a.Register(ctx, "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		if err := s.a.Recovery().SetEmail(ctx, "alice", "alice@example.com"); err != nil {
			t.Fatal(err)
		}
		if err := s.a.SetPassword(ctx, "alice", newPassword); err != nil {
			t.Fatal(err)
		}
		if addr, _ := s.a.Recovery().Email(ctx, "alice"); addr != "alice@example.com" {
			t.Fatalf("after SetPassword: %q", addr)
		}
		// Deleted and made again outside: the Python application.
		if _, err := db.Raw.ExecContext(ctx, "DELETE FROM users WHERE username = 'alice'"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Raw.ExecContext(ctx, "INSERT INTO users (username, password_hash, failed_attempts) VALUES ('alice', 'pbkdf2:sha256:1000$x$y', 0)"); err != nil {
			t.Fatal(err)
		}
		if addr, _ := s.a.Recovery().Email(ctx, "alice"); addr != "" {
			t.Fatalf("a name made again outside inherits the address %q", addr)
		}
		httpDo(t, s.client(t), "POST", s.url+"/reset", `{"email":"alice@example.com"}`)
		httpDo(t, s.client(t), "POST", s.url+"/reset", `{"username":"alice"}`)
		// Another account may now verify the address.
		if err := s.a.Register(ctx, "bob", goodPassword); err != nil {
			t.Fatal(err)
		}
		if err := s.a.Recovery().SetEmail(ctx, "bob", "alice@example.com"); err != nil {
			t.Fatalf("the voided address for another account: %v", err)
		}
		if err := s.a.Recovery().RequestVerification(ctx, "bob", "bob@example.com"); err != nil {
			t.Fatal(err)
		}
		// The queue runs in order: bob's mail in means the resets were
		// handled, and sent nothing.
		s.mail.Wait(t, 1, 10*time.Second)
		var to []string
		for _, m := range s.mail.Messages() {
			to = append(to, m.To...)
		}
		if len(to) != 1 || to[0] != "bob@example.com" {
			t.Fatalf("mails to %v, want bob's alone", to)
		}
	})
}

// TestVerifyOneAddressRace: links that verify one address for several
// accounts, followed at once on two instances, give it to one account;
// the others are told it is taken (409), none fails.
func TestVerifyOneAddressRace(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		s1 := newRecoverySite(t, db, nil)
		s2 := newRecoverySite(t, db, nil)
		ctx := context.Background()
		const n = 6
		links := make([]string, n)
		for i := range n {
			name := fmt.Sprintf("user%d", i)
			if err := s1.a.Register(ctx, name, goodPassword); err != nil {
				t.Fatal(err)
			}
			if err := s1.a.Recovery().RequestVerification(ctx, name, "Shared@example.com"); err != nil {
				t.Fatal(err)
			}
			links[i] = mustLink(t, s1.mail.Wait(t, i+1, 10*time.Second)[i])
		}
		statuses := make([]int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				site := s1
				if i%2 == 1 {
					site = s2
				}
				link := strings.Replace(links[i], s1.url, site.url, 1)
				statuses[i] = httpDo(t, site.client(t), "GET", link, "").status
			}()
		}
		wg.Wait()
		won := 0
		for _, st := range statuses {
			switch st {
			case http.StatusNoContent:
				won++
			case http.StatusConflict:
			default:
				t.Errorf("status %d", st)
			}
		}
		if won != 1 {
			t.Fatalf("statuses %v: want one 204, the rest 409", statuses)
		}
	})
}

// TestResetUnderLockWithCode: an account with a second factor under an
// administrator's Lock is refused a reset as locked (403), even with the
// right code, before the code is claimed; the link outlives the refusal.
// (It was answered as a wrong code, 401, the claim refusing the lock.)
func TestResetUnderLockWithCode(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		s := newRecoverySite(t, db, func(c *authn.Config) { c.Now = clk.Now })
		ctx := context.Background()
		secret, _ := enrolTOTP(t, s.a, clk, "alice")
		link, err := s.a.Recovery().ResetLink(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.a.Lock(ctx, "alice", time.Hour); err != nil {
			t.Fatal(err)
		}
		confirm := func(code string) seen {
			return httpDo(t, s.client(t), "POST", s.url+"/reset/confirm", jsonBody(map[string]any{"token": tokenOf(t, link), "new_password": newPassword, "code": code}))
		}
		if got := confirm(codeAt(t, secret, clk.Now())); got.status != http.StatusForbidden || !strings.Contains(got.body, authn.CodeAccountLocked) {
			t.Fatalf("reset under Lock with the right code: %d %s, want 403 %s", got.status, got.body, authn.CodeAccountLocked)
		}
		if _, err := s.a.Recovery().ResetWithCode(ctx, tokenOf(t, link), codeAt(t, secret, clk.Now()), newPassword); !errors.Is(err, authn.ErrLocked) {
			t.Fatalf("ResetWithCode under Lock: %v, want ErrLocked", err)
		}
		if err := s.a.Unlock(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		clk.Advance(30 * time.Second) // a time step of its own
		if got := confirm(codeAt(t, secret, clk.Now())); got.status != http.StatusNoContent {
			t.Fatalf("the same link after Unlock: %d %s", got.status, got.body)
		}
	})
}
