package authn_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/minimost/minimost/middleware"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// totpSite is an Authenticator serving Routes, with a clock of its own.
type totpSite struct {
	a   *authn.Authenticator
	srv *httptest.Server
}

// totpConfig is the config of the TOTP tests: a frozen clock, no client
// budget in the way (the tests count attempts on the account).
func totpConfig(clk *testdb.Clock, events func(authn.Event)) authn.Config {
	cfg := authn.Config{
		Now: clk.Now,
		HTTP: authn.HTTPConfig{
			InsecureCookies: true,
			Throttle:        middleware.NewThrottle(middleware.ThrottleConfig{Burst: 10_000, Interval: time.Hour}),
		},
	}
	if events != nil {
		cfg.OnEvent = func(_ context.Context, e authn.Event) { events(e) }
	}
	return cfg
}

func newTOTPSite(t *testing.T, db *testdb.DB, cfg authn.Config) *totpSite {
	t.Helper()
	a := db.Open(t, cfg)
	srv := httptest.NewServer(a.Routes())
	t.Cleanup(srv.Close)
	return &totpSite{a: a, srv: srv}
}

// enrolTOTP registers username and turns TOTP on through the Go API; it
// returns the base32 secret and the recovery codes.
func enrolTOTP(t *testing.T, a *authn.Authenticator, clk *testdb.Clock, username string) (string, []string) {
	t.Helper()
	ctx := context.Background()
	if err := a.Register(ctx, username, goodPassword); err != nil {
		t.Fatal(err)
	}
	e, err := a.TOTP().Enroll(ctx, username, goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(e.URI, "otpauth://totp/") || len(e.Secret) < 32 {
		t.Fatalf("enrolment = %+v: want an otpauth URI and a secret of 160 bits", e)
	}
	codes, err := a.TOTP().Confirm(ctx, username, codeAt(t, e.Secret, clk.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != 10 {
		t.Fatalf("%d recovery codes, want 10", len(codes))
	}
	// The code of confirmation is used: logins start at the next step.
	clk.Advance(30 * time.Second)
	return e.Secret, codes
}

// codeAt is the TOTP code of secret at t.
func codeAt(t testing.TB, secret string, at time.Time) string {
	t.Helper()
	code, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// newBrowser is a client with a cookie jar.
func newBrowser(t testing.TB) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// post sends body as JSON and returns the status and the body.
func post(t testing.TB, c *http.Client, url, body string) (int, string) {
	t.Helper()
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// passwordStep posts alice's password to site with c: a pending login.
func passwordStep(t testing.TB, c *http.Client, site *totpSite, username string) {
	t.Helper()
	status, body := post(t, c, site.srv.URL+"/login", fmt.Sprintf(`{"username":%q,"password":%q}`, username, goodPassword))
	if status != http.StatusOK || !strings.Contains(body, `"second_factor":["totp","recovery_code"]`) {
		t.Fatalf("password step = %d %s, want 200 with second_factor", status, body)
	}
}

func failedAttempts(t testing.TB, a *authn.Authenticator, username string) int {
	t.Helper()
	acc, err := a.Account(context.Background(), username)
	if err != nil {
		t.Fatal(err)
	}
	return acc.FailedAttempts
}

// TestTOTPLogin: the password of an account with TOTP gives a pending
// login (no session, counter not reset); a code finishes it (session,
// counter reset); the same code again, and a code of an earlier step,
// are refused; a recovery code signs in once.
func TestTOTPLogin(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		site := newTOTPSite(t, db, totpConfig(clk, nil))
		secret, recovery := enrolTOTP(t, site.a, clk, "alice")
		acc, err := site.a.Account(context.Background(), "alice")
		if err != nil || !acc.SecondFactor() || acc.SecondFactors[0] != "totp" {
			t.Fatalf("Account = %+v, %v: want a second factor", acc, err)
		}

		c := newBrowser(t)
		passwordStep(t, c, site, "alice")
		if n := failedAttempts(t, site.a, "alice"); n != 1 {
			t.Errorf("after the password step failed_attempts = %d, want 1 (only a finished login resets it)", n)
		}
		if status, _ := post(t, c, site.srv.URL+"/sessions", `{}`); status != http.StatusUnauthorized {
			t.Errorf("a pending login reached a session page: %d", status)
		}
		code := codeAt(t, secret, clk.Now())
		status, body := post(t, c, site.srv.URL+"/login/verify", fmt.Sprintf(`{"code":%q}`, code))
		if status != http.StatusOK || !strings.Contains(body, `"username":"alice"`) {
			t.Fatalf("verify = %d %s, want 200", status, body)
		}
		if n := failedAttempts(t, site.a, "alice"); n != 0 {
			t.Errorf("after a finished login failed_attempts = %d, want 0", n)
		}
		if sessions, _ := site.a.Sessions(context.Background(), "alice"); len(sessions) != 1 {
			t.Errorf("%d sessions after the login, want 1", len(sessions))
		}
		// The pending login is consumed: its cookie finishes nothing more.
		if status, _ := post(t, c, site.srv.URL+"/login/verify", fmt.Sprintf(`{"code":%q}`, code)); status != http.StatusUnauthorized {
			t.Errorf("a consumed pending login: %d, want 401", status)
		}

		// The same code, on a new pending login: refused (its step is used).
		c2 := newBrowser(t)
		passwordStep(t, c2, site, "alice")
		if status, _ := post(t, c2, site.srv.URL+"/login/verify", fmt.Sprintf(`{"code":%q}`, code)); status != http.StatusUnauthorized {
			t.Errorf("a replayed code: %d, want 401", status)
		}
		// The code of the step before is refused too; the next one passes.
		if status, _ := post(t, c2, site.srv.URL+"/login/verify", fmt.Sprintf(`{"code":%q}`, codeAt(t, secret, clk.Now().Add(-30*time.Second)))); status != http.StatusUnauthorized {
			t.Errorf("a code of an earlier step: %d, want 401", status)
		}
		clk.Advance(30 * time.Second)
		if status, body := post(t, c2, site.srv.URL+"/login/verify", fmt.Sprintf(`{"code":%q}`, codeAt(t, secret, clk.Now()))); status != http.StatusOK {
			t.Errorf("the next step's code: %d %s, want 200", status, body)
		}

		// A recovery code, typed in upper case: once.
		for i, want := range []int{http.StatusOK, http.StatusUnauthorized} {
			c := newBrowser(t)
			passwordStep(t, c, site, "alice")
			status, body := post(t, c, site.srv.URL+"/login/verify", fmt.Sprintf(`{"recovery_code":%q}`, strings.ToUpper(recovery[0])))
			if status != want {
				t.Errorf("recovery code, use %d: %d %s, want %d", i+1, status, body, want)
			}
		}
		st, err := site.a.TOTP().Status(context.Background(), "alice")
		if err != nil || !st.Enabled || st.RecoveryCodesLeft != 9 {
			t.Errorf("Status = %+v, %v: want enabled, 9 codes left", st, err)
		}
	})
}

// TestTOTPPendingExpires: a pending login older than five minutes finishes
// nothing, with the right code.
func TestTOTPPendingExpires(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		site := newTOTPSite(t, db, totpConfig(clk, nil))
		secret, _ := enrolTOTP(t, site.a, clk, "alice")
		c := newBrowser(t)
		passwordStep(t, c, site, "alice")
		clk.Advance(5*time.Minute + time.Second)
		status, body := post(t, c, site.srv.URL+"/login/verify", fmt.Sprintf(`{"code":%q}`, codeAt(t, secret, clk.Now())))
		if status != http.StatusUnauthorized || !strings.Contains(body, "invalid or expired code") {
			t.Errorf("an expired pending login: %d %s, want 401", status, body)
		}
	})
}

// TestTOTPPasswordChangeEndsPending: a pending login is bound to the hash
// its password step verified: a password set in between ends it.
func TestTOTPPasswordChangeEndsPending(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		site := newTOTPSite(t, db, totpConfig(clk, nil))
		secret, _ := enrolTOTP(t, site.a, clk, "alice")
		c := newBrowser(t)
		passwordStep(t, c, site, "alice")
		if err := site.a.SetPassword(context.Background(), "alice", goodPassword+"2"); err != nil {
			t.Fatal(err)
		}
		if status, _ := post(t, c, site.srv.URL+"/login/verify", fmt.Sprintf(`{"code":%q}`, codeAt(t, secret, clk.Now()))); status != http.StatusUnauthorized {
			t.Errorf("a pending login after a password change: %d, want 401", status)
		}
		if acc, _ := site.a.Account(context.Background(), "alice"); !acc.SecondFactor() {
			t.Error("SetPassword removed the second factor")
		}
	})
}

// TestTOTPPasswordAlone: Basic auth and Authenticate refuse the password
// alone of an account with TOTP, also when it was cached before the
// enrolment; its app token still works.
func TestTOTPPasswordAlone(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		ctx := context.Background()
		a := db.Open(t, totpConfig(clk, nil))
		api := httptest.NewServer(a.BasicAuth(okHandler()))
		defer api.Close()
		basic := func(user, pw string) int {
			req, _ := http.NewRequest("GET", api.URL, nil)
			req.SetBasicAuth(user, pw)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if err := a.Register(ctx, "alice", goodPassword); err != nil {
			t.Fatal(err)
		}
		token, err := a.CreateToken(ctx, "alice", "ci")
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if s := basic("alice", goodPassword); s != http.StatusOK {
				t.Fatalf("Basic before TOTP: %d", s)
			}
		}
		if readsFromMemory(db) && a.Stats().ReadsSkipped == 0 {
			t.Fatal("the cached Basic credential was never answered from memory: the test would not see the enrolment's commit end it")
		}
		e, err := a.TOTP().Enroll(ctx, "alice", goodPassword)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.TOTP().Confirm(ctx, "alice", codeAt(t, e.Secret, clk.Now())); err != nil {
			t.Fatal(err)
		}
		if s := basic("alice", goodPassword); s != http.StatusUnauthorized {
			t.Errorf("Basic with the password alone (cached before the enrolment): %d, want 401", s)
		}
		if s := basic("alice", goodPassword); s != http.StatusUnauthorized {
			t.Errorf("Basic with the password alone: %d, want 401", s)
		}
		if s := basic("alice", token); s != http.StatusOK {
			t.Errorf("Basic with the app token: %d, want 200", s)
		}
		fwd := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/auth", nil)
		req.SetBasicAuth("alice", goodPassword)
		a.ForwardAuthHandler().ServeHTTP(fwd, req)
		if fwd.Code != http.StatusUnauthorized {
			t.Errorf("forward auth with the password alone: %d, want 401", fwd.Code)
		}
		if st := a.Stats(); st.SecondFactorRequired < 3 {
			t.Errorf("Stats.SecondFactorRequired = %d, want the 3 refusals", st.SecondFactorRequired)
		}
		if err := a.Authenticate(ctx, "alice", goodPassword); !errors.Is(err, authn.ErrSecondFactorRequired) {
			t.Errorf("Authenticate = %v, want ErrSecondFactorRequired", err)
		}
		if err := a.Authenticate(ctx, "alice", "wrong"+goodPassword); !errors.Is(err, authn.ErrInvalidCredentials) {
			t.Errorf("Authenticate with a wrong password = %v, want ErrInvalidCredentials", err)
		}
	})
}

// TestTOTPGuessingLocks: 40 wrong codes sent at once over 8 pending logins
// on two instances lock the account, and at most T of them are checked;
// the right code is refused afterwards. Only codes that were checked report
// ReasonWrongCode.
func TestTOTPGuessingLocks(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		const threshold, pendings, guesses = 5, 8, 40
		clk := newClock()
		var mu sync.Mutex
		checked := 0
		count := func(e authn.Event) {
			if e.Type == authn.EventLoginFailed && (e.Reason == authn.ReasonWrongCode || e.Reason == authn.ReasonUsedCode) {
				mu.Lock()
				checked++
				mu.Unlock()
			}
		}
		cfg := totpConfig(clk, count)
		cfg.LockoutThreshold = threshold
		sites := []*totpSite{newTOTPSite(t, db, cfg), newTOTPSite(t, db, cfg)}
		secret, _ := enrolTOTP(t, sites[0].a, clk, "alice")
		browsers := make([]*http.Client, pendings)
		for i := range browsers {
			browsers[i] = newBrowser(t)
			passwordStep(t, browsers[i], sites[i%2], "alice")
			if i == threshold-2 {
				// The password steps count too: clear them, so that the
				// codes meet a counter at 0.
				if err := sites[0].a.Unlock(context.Background(), "alice"); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := sites[0].a.Unlock(context.Background(), "alice"); err != nil {
			t.Fatal(err)
		}
		right := codeAt(t, secret, clk.Now())
		wrong := fmt.Sprintf("%06d", (atoi(right)+1)%1_000_000)
		var wg sync.WaitGroup
		for i := range guesses {
			wg.Go(func() {
				site := sites[i%2]
				post(t, browsers[i%pendings], site.srv.URL+"/login/verify", fmt.Sprintf(`{"code":%q}`, wrong))
			})
		}
		wg.Wait()
		if checked > threshold {
			t.Errorf("%d wrong codes checked, want at most %d", checked, threshold)
		}
		acc, err := sites[1].a.Account(context.Background(), "alice")
		if err != nil || acc.LockedUntil.IsZero() {
			t.Fatalf("Account = %+v, %v: want locked", acc, err)
		}
		if status, _ := post(t, browsers[0], sites[1].srv.URL+"/login/verify", fmt.Sprintf(`{"code":%q}`, right)); status != http.StatusUnauthorized {
			t.Errorf("the right code on a locked account: %d, want 401", status)
		}
	})
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// TestTOTPCodeOnceInParallel: the same TOTP code, and the same recovery
// code, sent at once to two instances on two pending logins, are accepted
// once.
func TestTOTPCodeOnceInParallel(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		cfg := totpConfig(clk, nil)
		cfg.LockoutThreshold = 50
		sites := []*totpSite{newTOTPSite(t, db, cfg), newTOTPSite(t, db, cfg)}
		secret, recovery := enrolTOTP(t, sites[0].a, clk, "alice")
		for round := range 6 {
			body := fmt.Sprintf(`{"code":%q}`, codeAt(t, secret, clk.Now()))
			if round%2 == 1 {
				body = fmt.Sprintf(`{"recovery_code":%q}`, recovery[round])
			}
			browsers := []*http.Client{newBrowser(t), newBrowser(t)}
			for i, c := range browsers {
				passwordStep(t, c, sites[i], "alice")
			}
			statuses := make([]int, 2)
			var wg sync.WaitGroup
			for i, c := range browsers {
				wg.Go(func() { statuses[i], _ = post(t, c, sites[1-i].srv.URL+"/login/verify", body) })
			}
			wg.Wait()
			ok := 0
			for _, s := range statuses {
				if s == http.StatusOK {
					ok++
				}
			}
			if ok != 1 {
				t.Errorf("round %d (%s): statuses %v, want one 200", round, body, statuses)
			}
			clk.Advance(30 * time.Second)
		}
	})
}
