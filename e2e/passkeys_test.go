package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
)

// TestPasskeysInBrowser drives examples/login with passkeys on, in headless
// Chromium with a virtual authenticator (the DevTools protocol's WebAuthn
// domain: CTAP2, resident keys, user verification): the site is opened at
// http://localhost:PORT, a secure context where WebAuthn works. A passkey
// is registered on the passkeys page (with the password again); after
// signing out, "Sign in with a passkey" signs in with no password, and so
// does the browser's autofill; the password then asks for the passkey as
// a second factor, which finishes the login; while
// wrong passwords have locked the account it still does; after
// "authctl lock" it does not; once removed on the passkeys page it does
// not either.
func TestPasskeysInBrowser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	shots := os.Getenv(screenshotsEnv)
	if shots == "" {
		shots = t.TempDir()
	}
	b := newBrowser(ctx, t, "passkeys", shots)
	dir := t.TempDir()
	bin := buildLogin(ctx, t, dir)
	authctl := buildExample(ctx, t, dir, "authctl")

	const pw = "demo's passphrase for passkeys"
	addr := freeAddr(t)
	port := addr[strings.LastIndex(addr, ":")+1:]
	base := "http://localhost:" + port
	db := filepath.Join(t.TempDir(), "auth.db")
	startLoginAt(ctx, t, bin, pw, addr, db, "-passkeys", base, "-lockout", "3")
	admin := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, authctl, append([]string{"-db", db}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("authctl %v: %v\n%s", args, err, out)
		}
	}

	// The virtual authenticator: a platform authenticator with resident
	// keys (passkeys) and user verification, whose user is present and
	// verified whenever asked.
	run(b, "adding a virtual authenticator", func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		if _, err := cdp.Call(ctx, tg, webauthn.Enable, webauthn.EnableParams{}); err != nil {
			return chromedp.Void{}, err
		}
		_, err := cdp.Call(ctx, tg, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
			Options: &webauthn.VirtualAuthenticatorOptions{
				Protocol: webauthn.AuthenticatorProtocolCtap2, Ctap2version: webauthn.Ctap2versionCtap21,
				Transport: webauthn.AuthenticatorTransportInternal, HasResidentKey: true,
				HasUserVerification: true, IsUserVerified: true, AutomaticPresenceSimulation: true,
			},
		})
		return chromedp.Void{}, err
	})

	// The virtual authenticator answers the autofill request (conditional
	// mediation) that the login page makes as it loads at once, which
	// signs in before any button is clicked. The pages are therefore shown
	// as a browser without autofill of passkeys would show them, but for
	// the one step that tests the autofill.
	const noAutofill = `if (window.PublicKeyCredential) PublicKeyCredential.isConditionalMediationAvailable = () => Promise.resolve(false);`
	var noAutofillID page.ScriptIdentifier
	autofill := func(on bool) {
		t.Helper()
		run(b, "turning autofill", func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			if on {
				_, err := cdp.Call(ctx, tg, page.RemoveScriptToEvaluateOnNewDocument, page.RemoveScriptToEvaluateOnNewDocumentParams{Identifier: noAutofillID})
				return chromedp.Void{}, err
			}
			res, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: noAutofill})
			noAutofillID = res.Identifier
			return chromedp.Void{}, err
		})
	}
	autofill(false)

	signInWithPassword := func(password string) {
		t.Helper()
		b.do("opening the login form", chromedp.Navigate(base+"/login"))
		b.do("typing the password",
			b.clear("#username"), chromedp.SendKeys(chromedp.CSS("#username"), "demo"),
			chromedp.SendKeys(chromedp.CSS("#password"), password))
		b.submit("signing in with a password", chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	}
	signOut := func() {
		t.Helper()
		b.do("opening /", chromedp.Navigate(base+"/"))
		b.submit("signing out", chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)))
		b.expectPage(base+"/login?notice=signed_out", "Sign in")
	}
	// passkeySignIn clicks "Sign in with a passkey" on the login form and
	// reports whether it led to the home page.
	passkeySignIn := func(label string) bool {
		t.Helper()
		b.do("opening the login form", chromedp.Navigate(base+"/login"), chromedp.WaitVisible(chromedp.CSS("#passkey-button")))
		if got := run(b, "reading autocomplete", chromedp.AttributeValue(chromedp.CSS("#username"), "autocomplete")).Value; got != "username webauthn" {
			t.Errorf("the username field's autocomplete = %q, want %q", got, "username webauthn")
		}
		// Wait for either outcome: the home page, or the error on the form.
		b.do("clicking Sign in with a passkey", chromedp.Click(chromedp.CSS("#passkey-button")))
		outcome := waitOutcome(b, `location.pathname === "/" ? "signed in" :
			(document.querySelector("#passkey-error") && !document.querySelector("#passkey-error").hidden ? "refused" : "")`)
		b.screenshot(label)
		if outcome == "signed in" {
			b.do("waiting for the heading", chromedp.WaitVisible(chromedp.CSS("h1")))
			b.expectPage(base+"/", "Hello, demo")
			return true
		}
		return false
	}

	// 1. Sign in with the password and add a passkey on /passkeys.
	signInWithPassword(pw)
	b.expectPage(base+"/", "Hello, demo")
	b.do("opening /passkeys", chromedp.Navigate(base+"/passkeys"), chromedp.WaitVisible(chromedp.CSS("#passkey-add")))
	b.screenshot("passkeys-empty")
	b.do("naming the passkey",
		b.clear("#passkey-name"), chromedp.SendKeys(chromedp.CSS("#passkey-name"), "virtual"),
		chromedp.SendKeys(chromedp.CSS("#passkey-password"), pw))
	b.submit("adding a passkey", chromedp.Click(chromedp.CSS(`#passkey-add button[type="submit"]`)))
	b.screenshot("passkey-added")
	b.expectPage(base+"/passkeys?notice=passkey_added", "Your passkeys")
	if got := b.text("main ul"); !strings.Contains(got, "virtual") {
		t.Fatalf("the passkeys page lists %q, want the passkey \"virtual\"", got)
	}

	// 2. Sign out, then sign in with the passkey and no password.
	signOut()
	if !passkeySignIn("passkey-signed-in") {
		t.Fatalf("signing in with the passkey failed: %q", b.text("#passkey-error"))
	}

	// 2b. The browser's autofill: the login page, as it loads, asks for a
	// passkey (conditional mediation), which the virtual authenticator
	// gives at once: signed in with no click.
	signOut()
	autofill(true)
	run(b, "opening the login form with autofill", func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, page.Navigate, page.NavigateParams{URL: base + "/login"})
		return chromedp.Void{}, err
	})
	deadline := time.Now().Add(stepTimeout)
	for b.location() != base+"/" {
		if time.Now().After(deadline) {
			t.Fatalf("the autofill of a passkey did not sign in: at %s", b.location())
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.do("waiting for the home page", chromedp.WaitVisible(chromedp.CSS("h1")))
	b.screenshot("passkey-autofill")
	b.expectPage(base+"/", "Hello, demo")
	autofill(false)

	// 2c. The password, then the passkey as a second factor: the password
	// alone leads to the second step, which the passkey finishes.
	signOut()
	passwordThenPasskey := func() {
		t.Helper()
		signInWithPassword(pw)
		b.screenshot("second-step")
		if got := strings.TrimSpace(b.text("h1")); got != "Use your passkey" {
			t.Fatalf("after the password, the page is %q, want the second step", got)
		}
		b.do("waiting for the passkey button", chromedp.WaitVisible(chromedp.CSS("#passkey-button")))
		b.do("clicking Use your passkey", chromedp.Click(chromedp.CSS("#passkey-button")))
		outcome := waitOutcome(b, `location.pathname === "/" ? "signed in" :
			(document.querySelector("#passkey-error") && !document.querySelector("#passkey-error").hidden ? document.querySelector("#passkey-error").textContent : "")`)
		if outcome != "signed in" {
			t.Fatalf("password + passkey: %q", outcome)
		}
		b.do("waiting for the heading", chromedp.WaitVisible(chromedp.CSS("h1")))
		b.screenshot("password-and-passkey")
		b.expectPage(base+"/", "Hello, demo")
	}
	passwordThenPasskey()

	// 3. Wrong passwords lock the account; the passkey still signs in.
	signOut()
	for i := 0; i < 3; i++ {
		signInWithPassword("not demo's password")
	}
	signInWithPassword(pw) // refused: locked
	b.expectPage(base+"/login", "Sign in")
	if !passkeySignIn("passkey-while-locked-out") {
		t.Fatalf("a lockout by failed passwords stopped the passkey: %q", b.text("#passkey-error"))
	}

	// 4. An administrator's lock stops it (and ends the session).
	admin("lock", "demo")
	if passkeySignIn("passkey-after-authctl-lock") {
		t.Fatal("after authctl lock, the passkey still signed in")
	}
	admin("unlock", "demo")

	// 5. Removed on the passkeys page, it signs in no more.
	passwordThenPasskey()
	b.do("opening /passkeys", chromedp.Navigate(base+"/passkeys"))
	b.submit("removing the passkey", chromedp.Click(chromedp.CSS(`input[name="action"][value="delete"] ~ button`)))
	b.screenshot("passkey-removed")
	b.expectPage(base+"/passkeys?notice=passkey_removed", "Your passkeys")
	signOut()
	if passkeySignIn("passkey-after-removal") {
		t.Fatal("a removed passkey still signed in")
	}
	// With no passkey left, the password alone signs in again.
	signInWithPassword(pw)
	b.expectPage(base+"/", "Hello, demo")
}

// waitOutcome evaluates expr in the page until it gives a string other
// than "", within stepTimeout, across the navigations it may see (an
// evaluation during one fails, and is tried again).
func waitOutcome(b *browser, expr string) string {
	b.t.Helper()
	deadline := time.Now().Add(stepTimeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(b.ctx, time.Second)
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		cancel()
		if err == nil && v != "" {
			return v
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("no outcome of %s within %v", expr, stepTimeout)
	return ""
}
