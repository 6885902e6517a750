package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"
)

// TestTOTPInBrowser walks through two-step sign-in in examples/login in
// headless Chromium: the signed-in demo user turns it on from the page
// (reading the key the page shows, its QR code drawn under the page's
// CSP), confirms with a code, gets recovery codes; then signs in with the
// password and a code, and again with the password and a recovery code.
func TestTOTPInBrowser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	shots := os.Getenv(screenshotsEnv)
	if shots == "" {
		shots = t.TempDir()
	}
	b := newBrowser(ctx, t, "totp", shots)
	bin := buildLogin(ctx, t, t.TempDir())
	const pw = "demo's passphrase for two steps"
	s := startLogin(ctx, t, bin, pw)
	base := "http://" + s.addr

	signIn := func(label string) {
		t.Helper()
		b.do("opening the login form", chromedp.Navigate(base+"/login"))
		b.do("typing the password "+label,
			chromedp.SendKeys(chromedp.CSS("#username"), "demo"),
			chromedp.SendKeys(chromedp.CSS("#password"), pw))
		b.submit("signing in "+label, chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	}
	signOut := func() {
		t.Helper()
		b.submit("signing out", chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)))
		b.expectPage(base+"/login?notice=signed_out", "Sign in")
	}

	// 1. Signed in with the password alone, the user opens the page.
	signIn("before two-step sign-in")
	b.expectPage(base+"/", "Hello, demo")
	b.submit("opening two-step sign-in", chromedp.Click(chromedp.CSS(`a[href="/totp"]`)))
	b.screenshot("totp-page")
	b.expectPage(base+"/totp", "Two-step sign-in")

	// 2. The password again: the key and its QR code.
	b.do("typing the password", chromedp.SendKeys(chromedp.CSS("#password"), pw))
	b.submit("setting up", chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	b.screenshot("totp-secret")
	secret := strings.TrimSpace(b.text("#secret"))
	if len(secret) != 32 {
		t.Fatalf("the key shown is %q, want 32 base32 characters", secret)
	}
	if w := eval[int](b, `document.querySelector("#qr").naturalWidth`); w == 0 {
		t.Error("the QR code was not drawn (blocked by the CSP?)")
	}

	// 3. A code from it turns it on; the recovery codes are shown once.
	code, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b.do("typing the code", chromedp.SendKeys(chromedp.CSS("#code"), code))
	b.submit("turning it on", chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	b.screenshot("totp-recovery-codes")
	recovery := eval[[]string](b, `Array.from(document.querySelectorAll("#recovery-codes code")).map(e => e.textContent)`)
	if len(recovery) != 10 {
		t.Fatalf("%d recovery codes shown, want 10", len(recovery))
	}
	b.do("going home", chromedp.Navigate(base+"/"))
	signOut()

	// 4. The password leads to the code page; a code (of the next time
	// step: the one that turned it on is used) signs in.
	signIn("with two-step sign-in")
	b.screenshot("code-page")
	b.expectPage(base+"/login", "Enter your code")
	code, err = totp.GenerateCode(secret, time.Now().Add(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	b.do("typing the code", chromedp.SendKeys(chromedp.CSS("#code"), code))
	b.submit("verifying the code", chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	b.screenshot("signed-in-with-code")
	b.expectPage(base+"/", "Hello, demo")
	signOut()

	// 5. A recovery code instead of the device.
	signIn("for a recovery code")
	b.expectPage(base+"/login", "Enter your code")
	b.do("typing a recovery code", chromedp.SendKeys(chromedp.CSS("#recovery_code"), recovery[0]))
	b.submit("verifying the recovery code", chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	b.screenshot("signed-in-with-recovery-code")
	b.expectPage(base+"/", "Hello, demo")
}
