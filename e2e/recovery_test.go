package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/minimost/minimost/internal/testsmtp"
)

// TestForgotPasswordInBrowser walks through account recovery in
// examples/login, run with -smtp and -base-url against a real SMTP server
// started here: the signed-in user sets an email address and follows the
// link mailed; signed out, "Forgot your password?" on the login page mails
// a reset link; its page sets a new password, and the user signs in with
// it. Each step saves a screenshot.
func TestForgotPasswordInBrowser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	shots := os.Getenv(screenshotsEnv)
	if shots == "" {
		shots = t.TempDir()
	}
	b := newBrowser(ctx, t, "recovery", shots)
	bin := buildLogin(ctx, t, t.TempDir())
	mail := testsmtp.Start(t, testsmtp.Config{})

	const pw = "demo's passphrase for the browser"
	const newPW = "demo's brand new passphrase here"
	addr := freeAddr(t)
	base := "http://" + addr
	s := startLoginAt(ctx, t, bin, pw, addr, filepath.Join(t.TempDir(), "auth.db"), "-smtp", mail.Addr, "-smtp-security", "none", "-base-url", base, "-mail-from", "no-reply@example.com")

	// 1. Sign in, and set an address on the email page.
	b.do("opening the login form", chromedp.Navigate(base+"/login"))
	b.do("typing the password",
		chromedp.SendKeys(chromedp.CSS("#username"), "demo"),
		chromedp.SendKeys(chromedp.CSS("#password"), pw))
	b.submit("signing in", chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	b.expectPage(base+"/", "Hello, demo")
	b.submit("opening the email page", chromedp.Click(chromedp.CSS(`a[href="/email"]`)))
	b.screenshot("email-page")
	b.expectPage(base+"/email", "Email address")
	b.do("typing the address",
		chromedp.SendKeys(chromedp.CSS("#email"), "demo@example.com"),
		chromedp.SendKeys(chromedp.CSS("#password"), pw))
	b.submit("asking for the link", chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	b.screenshot("email-sent")
	if got := b.text(`[role="status"]`); !strings.Contains(got, "on its way") {
		t.Errorf("after asking for the link: %q", got)
	}

	// 2. The link in the mail verifies the address.
	msgs := waitMail(ctx, t, mail, 1)
	link, err := msgs[0].Link()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(link, base+"/email/verify?token=") {
		t.Fatalf("verification link %q, want it under %s", link, base)
	}
	b.do("following the verification link", chromedp.Navigate(link))
	b.screenshot("email-verified")
	if got := b.text(`[role="status"]`); !strings.Contains(got, "verified") {
		t.Errorf("verification page says %q", got)
	}

	// 3. Signed out, "Forgot your password?" from the login page.
	b.do("opening /", chromedp.Navigate(base+"/"))
	b.submit("signing out", chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)))
	b.submit("following Forgot your password?", chromedp.Click(chromedp.CSS(`a[href="/reset"]`)))
	b.screenshot("forgot-form")
	b.expectPage(base+"/reset", "Forgot your password?")
	b.do("typing the name", chromedp.SendKeys(chromedp.CSS("#username"), "demo"))
	b.submit("asking for a reset link", chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	b.screenshot("forgot-sent")
	if got := b.text(`[role="status"]`); !strings.Contains(got, "on its way") {
		t.Errorf("after asking for a reset link: %q", got)
	}

	// 4. The reset link's page sets the new password, and the login form
	// says so.
	msgs = waitMail(ctx, t, mail, 2)
	link, err = msgs[1].Link()
	if err != nil {
		t.Fatal(err)
	}
	if msgs[1].To[0] != "demo@example.com" || !strings.HasPrefix(link, base+"/reset/confirm?token=") {
		t.Fatalf("reset mail to %v with link %q", msgs[1].To, link)
	}
	b.do("following the reset link", chromedp.Navigate(link))
	b.screenshot("new-password-form")
	b.expectPage(link, "Choose a new password")
	b.do("typing the new password", chromedp.SendKeys(chromedp.CSS("#new_password"), newPW))
	b.submit("setting the new password", chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	b.screenshot("password-reset")
	b.expectPage(base+"/login?notice=password_reset", "Sign in")

	// 5. The old password fails, the new one signs in.
	b.do("typing the old password",
		chromedp.SendKeys(chromedp.CSS("#username"), "demo"),
		chromedp.SendKeys(chromedp.CSS("#password"), pw))
	b.submit("signing in with the old password", chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	if got := b.text(`[role="alert"]`); got != "Invalid username or password." {
		t.Errorf("the old password: %q", got)
	}
	b.do("typing the new password",
		b.clear("#username"),
		chromedp.SendKeys(chromedp.CSS("#username"), "demo"),
		chromedp.SendKeys(chromedp.CSS("#password"), newPW))
	b.submit("signing in with the new password", chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	b.screenshot("signed-in-again")
	b.expectPage(base+"/", "Hello, demo")

	// The link works once.
	b.do("following the reset link again", chromedp.Navigate(link))
	if got := b.text(`[role="alert"]`); !strings.Contains(got, "invalid or has expired") {
		t.Errorf("the used link's page says %q", got)
	}
	if strings.Contains(s.out.String(), "token=") {
		t.Errorf("the server's output holds a link:\n%s", s.out)
	}
}

// waitMail waits until the SMTP server holds n messages.
func waitMail(ctx context.Context, t *testing.T, mail *testsmtp.Server, n int) []testsmtp.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	msgs, err := mail.WaitContext(ctx, n)
	if err != nil {
		t.Fatalf("%d mails, want %d: %v", len(msgs), n, err)
	}
	return msgs
}
