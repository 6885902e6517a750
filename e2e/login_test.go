package e2e

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// testTimeout bounds the whole test (it takes a few seconds): a hang
// fails it rather than stalling CI.
const testTimeout = 2 * time.Minute

// insecureWarn is the line examples/login logs when it sets a Secure
// cookie on a request that came over plain HTTP.
const insecureWarn = "authn: Secure session cookie set over plain HTTP; browsers drop it and the login loops"

// TestLoginInBrowser walks through examples/login in headless Chromium, as
// README.md describes it: the login form, a wrong and a right password,
// sign-out, registration with the browser's own length check, a login with
// Enter, and a Secure cookie over plain HTTP, which the browser drops. Each
// step saves a screenshot.
func TestLoginInBrowser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	shots := os.Getenv(screenshotsEnv)
	if shots == "" {
		shots = t.TempDir()
	}
	t.Logf("screenshots in %s (set %s to keep them)", shots, screenshotsEnv)

	// Chromium first: without it the test skips before building anything.
	b := newBrowser(ctx, t, "walkthrough", shots)
	bin := buildLogin(ctx, t, t.TempDir())

	t.Run("walkthrough", func(t *testing.T) {
		b.t = t // its checks fail the subtest
		walkthrough(ctx, t, b, bin)
	})
	t.Run("secure cookie over plain HTTP", func(t *testing.T) {
		secureCookieOverHTTP(ctx, t, bin, shots)
	})
}

// walkthrough is steps 1 to 6 of TestLoginInBrowser, in one browser.
func walkthrough(ctx context.Context, t *testing.T, b *browser, bin string) {
	const pw = "demo's passphrase for the browser"
	s := startLogin(ctx, t, bin, pw)
	base := "http://" + s.addr
	loginForm := base + "/login?next=%2F"

	// 1. A visitor without a session is sent to the login form, which
	// will take them back to /.
	b.do("opening /", chromedp.Navigate(base+"/"))
	b.screenshot("login-form")
	b.expectPage(loginForm, "Sign in")
	if got := run(b, "reading next", chromedp.Value(chromedp.CSS(`input[name="next"]`))); got != "/" {
		t.Errorf("the form's next = %q, want /", got)
	}

	// 2. A wrong password: the error is shown, and the name typed stays
	// in its field so that only the password needs typing again.
	b.do("typing a wrong password",
		chromedp.SendKeys(chromedp.CSS("#username"), "demo"),
		chromedp.SendKeys(chromedp.CSS("#password"), "not the password"))
	b.submit("signing in with a wrong password", chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	b.screenshot("wrong-password")
	b.expectPage(base+"/login", "Sign in")
	if got := b.text(`[role="alert"]`); got != "Invalid username or password." {
		t.Errorf("error shown = %q, want %q", got, "Invalid username or password.")
	}
	if got := b.value("#username"); got != "demo" {
		t.Errorf("after a wrong password, the username field holds %q, want %q", got, "demo")
	}
	if got := b.value("#password"); got != "" {
		t.Errorf("after a wrong password, the password field holds %q, want it empty", got)
	}
	if c := sessionCookie(b.cookies(base + "/")); c != nil {
		t.Errorf("a wrong password left a session cookie: %+v", c)
	}

	// 3. The right password: the home page greets the user, and a
	// reload keeps the session.
	b.do("typing the right password",
		b.clear("#username"),
		chromedp.SendKeys(chromedp.CSS("#username"), "demo"),
		chromedp.SendKeys(chromedp.CSS("#password"), pw))
	b.submit("signing in", chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	b.screenshot("signed-in")
	b.expectPage(base+"/", "Hello, demo")
	c := sessionCookie(b.cookies(base + "/"))
	switch {
	case c == nil:
		t.Fatal("signed in, but the browser holds no session cookie")
	case !c.HTTPOnly || c.SameSite != network.CookieSameSiteLax || c.Path != "/" || !c.Session:
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Lax, Path=/, no expiry", c)
	}
	b.do("reloading", chromedp.Reload())
	b.screenshot("reloaded")
	b.expectPage(base+"/", "Hello, demo")

	// 4. Sign out: back on the login form, which says so, the cookie
	// gone, and / sends the visitor to the form again.
	b.submit("signing out", chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)))
	b.screenshot("signed-out")
	b.expectPage(base+"/login?notice=signed_out", "Sign in")
	if got := b.text(`[role="status"]`); got != "You are signed out." {
		t.Errorf("notice after signing out = %q, want %q", got, "You are signed out.")
	}
	if c := sessionCookie(b.cookies(base + "/")); c != nil {
		t.Errorf("signed out, but the browser still holds %+v", c)
	}
	b.do("opening / signed out", chromedp.Navigate(base+"/"))
	b.screenshot("home-signed-out")
	b.expectPage(loginForm, "Sign in")

	// 5. Registration: a password shorter than the minimum is refused by
	// the browser itself (the form is not sent), a passphrase is taken.
	const user, userPW = "browser-user", "a passphrase typed in a browser"
	b.do("opening /register", chromedp.Navigate(base+"/register"))
	b.screenshot("register-form")
	b.expectPage(base+"/register", "Create an account")
	minLength, err := strconv.Atoi(run(b, "reading minlength", chromedp.AttributeValue(chromedp.CSS("#password"), "minlength")).Value)
	if err != nil || minLength < 2 {
		t.Fatalf("the password field's minlength is %d (%v), want a minimum", minLength, err)
	}
	short := strings.Repeat("x", minLength-1)
	// Marks of this document: the invalid and submit events it sees. A
	// page the server sent back would have neither the marks nor the
	// typed password.
	eval[bool](b, `(() => {
		window.e2eEvents = [];
		const f = document.querySelector("form");
		f.addEventListener("submit", () => window.e2eEvents.push("submit"));
		document.querySelector("#password").addEventListener("invalid", () => window.e2eEvents.push("invalid"));
		return true;
	})()`)
	b.do("typing a short password",
		chromedp.SendKeys(chromedp.CSS("#username"), user),
		chromedp.SendKeys(chromedp.CSS("#password"), short),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		// The browser's validation fires "invalid" instead of sending.
		chromedp.Poll[chromedp.Void](`window.e2eEvents && window.e2eEvents.includes("invalid")`,
			chromedp.WithPollingTimeout(stepTimeout)))
	b.screenshot("password-too-short")
	b.expectPage(base+"/register", "Create an account")
	if got := eval[[]string](b, `window.e2eEvents`); !slices.Equal(got, []string{"invalid"}) {
		t.Errorf("events after submitting a short password: %q, want only invalid (no submit)", got)
	}
	if !eval[bool](b, `document.querySelector("#password").validity.tooShort`) {
		t.Error("a password shorter than minlength: validity.tooShort is false")
	}
	if got := b.value("#password"); got != short {
		t.Errorf("the password field holds %q, want the typed %q (the page was not reloaded)", got, short)
	}
	b.do("typing a passphrase",
		b.clear("#password"),
		chromedp.SendKeys(chromedp.CSS("#password"), userPW))
	b.submit("registering", chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	b.screenshot("registered")
	b.expectPage(base+"/register", "Account created")
	if got := b.text(`[role="status"]`); !strings.Contains(got, user) {
		t.Errorf("registration status %q does not name %q", got, user)
	}

	// 6. The new user signs in, pressing Enter in the password field.
	b.submit("following the sign-in link", chromedp.Click(chromedp.CSS(`a[href="/login"]`)))
	b.expectPage(base+"/login", "Sign in")
	b.do("typing the new user's name", chromedp.SendKeys(chromedp.CSS("#username"), user))
	b.submit("signing in with Enter", chromedp.SendKeys(chromedp.CSS("#password"), userPW+kb.Enter))
	b.screenshot("new-user-signed-in")
	b.expectPage(base+"/", "Hello, "+user)
	if sessionCookie(b.cookies(base+"/")) == nil {
		t.Error("the new user signed in, but the browser holds no session cookie")
	}
}

// secureCookieOverHTTP is step 7 of TestLoginInBrowser: examples/login
// with -insecure=false (a Secure __Host- cookie) reached over plain HTTP
// on a host name that is not loopback (Chromium trusts http://localhost
// and 127.0.0.1 with Secure cookies). The login succeeds, but the browser
// drops the cookie: the user is back on the login form, and the server
// logs why.
func secureCookieOverHTTP(ctx context.Context, t *testing.T, bin, shots string) {
	const pw = "demo's passphrase behind no HTTPS"
	s := startLogin(ctx, t, bin, pw, "-insecure=false")
	b := newBrowser(ctx, t, "secure-cookie", shots,
		chromedp.Flag("host-resolver-rules", "MAP login.test 127.0.0.1"))
	_, port, _ := strings.Cut(s.addr, ":")
	base := "http://login.test:" + port
	loginForm := base + "/login?next=%2F"

	b.do("opening / on login.test", chromedp.Navigate(base+"/"))
	b.screenshot("login-form")
	b.expectPage(loginForm, "Sign in")
	b.do("typing the password",
		chromedp.SendKeys(chromedp.CSS("#username"), "demo"),
		chromedp.SendKeys(chromedp.CSS("#password"), pw))
	// The server sets the cookie (the password was right); the browser
	// reports it blocked, and lands on the form again.
	blocked := run(b, "signing in over plain HTTP", chromedp.WaitEvent(network.ResponseReceivedExtraInfo,
		func(ev network.EventResponseReceivedExtraInfo) bool {
			return slices.ContainsFunc(ev.BlockedCookies, isSessionCookie)
		},
		chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.CSS(`button[type="submit"]`)))))
	for _, bc := range blocked.BlockedCookies {
		if isSessionCookie(bc) {
			t.Logf("Chromium blocked %q: %v", bc.CookieLine, bc.BlockedReasons)
		}
	}
	b.screenshot("cookie-dropped")
	b.expectPage(loginForm, "Sign in")
	if got := b.cookies(base + "/"); len(got) != 0 {
		t.Errorf("the browser kept cookies over plain HTTP: %+v", got)
	}
	wctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	s.waitOutput(wctx, t, insecureWarn)
	t.Logf("server output:\n%s", s.out)
}

// isSessionCookie reports whether a cookie the browser blocked is the
// session cookie, by the name in its Set-Cookie line.
func isSessionCookie(bc *network.BlockedSetCookieWithReason) bool {
	return strings.HasPrefix(bc.CookieLine, "__Host-session=")
}

// sessionCookie returns the session cookie among cookies (the example's
// is "session"; the library's default "__Host-session"), or nil.
func sessionCookie(cookies []*network.Cookie) *network.Cookie {
	for _, c := range cookies {
		if c.Name == "session" || c.Name == "__Host-session" {
			return c
		}
	}
	return nil
}
