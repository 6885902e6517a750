package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// stepTimeout bounds each browser step, so that a hang fails the test
// instead of stalling CI.
const stepTimeout = 20 * time.Second

// startTimeout bounds the start of Chromium.
const startTimeout = 30 * time.Second

// screenshotsEnv names a directory to keep the screenshots in; by default
// they go to a temporary directory removed after the test.
const screenshotsEnv = "MINIMOST_E2E_SCREENSHOTS"

// browser is one tab of a headless Chromium of its own (own process, own
// empty profile), and where its screenshots go.
type browser struct {
	t    *testing.T
	ctx  context.Context // the chromedp context of the tab
	dir  string          // screenshots
	name string          // prefix of the screenshot files
	n    int             // screenshots taken
	out  *output         // Chromium's own output, for failures
}

// newBrowser starts headless Chromium with the flags this kind of machine
// needs, plus extra, and opens a tab. ctx bounds the browser's life. When
// Chromium cannot start, the test is skipped, or fails under CI.
func newBrowser(ctx context.Context, t *testing.T, name, shots string, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	out := &output{}
	// chromedp's defaults hold some of these flags already; they are
	// named here because this kind of machine needs each of them.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.Headless,
		chromedp.NoSandbox, // as root (CI), Chromium starts only without its sandbox
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		// No connection of Chromium's own: the network is closed, and
		// the connections it refuses would slow or fail the start.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()), // a new, empty profile
		chromedp.WindowSize(800, 700),
		chromedp.CombinedOutput(out),
	)
	opts = append(opts, extra...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tabCtx, cancelTab := chromedp.NewContext(allocCtx)
	// Registered after t.TempDir, so it runs first: Chromium has exited
	// before its profile directory is removed.
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	// The first action starts the browser and opens the tab. The browser
	// lives as long as the context of that action, so the start is
	// bounded by a timer that stops the browser, not by a deadline.
	timer := time.AfterFunc(startTimeout, cancelAlloc)
	err := chromedp.Do(tabCtx)
	if !timer.Stop() {
		err = fmt.Errorf("not started within %v (%v)", startTimeout, err)
	}
	if err != nil {
		msg := fmt.Sprintf("headless Chromium cannot start: %v\n%s", err, tail(out.String(), 2000))
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg + "\nInstall Chromium (apt-get install chromium) to run the browser tests; under CI (CI set) this is a failure.")
	}
	return &browser{t: t, ctx: tabCtx, dir: shots, name: name, out: out}
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// run runs one action within stepTimeout and returns its value; an error
// fails the test.
func run[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.screenshot("failed")
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// do runs actions that return no value, within one stepTimeout.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	run(b, what, chromedp.Steps(steps...))
}

// submit runs trigger (a click, or Enter in a field) and waits until the
// page it leads to has loaded.
func (b *browser) submit(what string, trigger chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	run(b, what, chromedp.WaitEvent(page.LoadEventFired, nil, trigger))
}

// screenshot saves what the tab shows as NN-name-label.png. A failure to
// take it is logged, not fatal: it is a record, not a check.
func (b *browser) screenshot(label string) {
	b.t.Helper()
	b.n++
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Logf("screenshot %s: %v", label, err)
		return
	}
	file := filepath.Join(b.dir, fmt.Sprintf("%s-%02d-%s.png", b.name, b.n, label))
	if err := os.WriteFile(file, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", label, err)
	}
}

// location returns the URL the tab shows.
func (b *browser) location() string {
	b.t.Helper()
	return run(b, "reading the location", chromedp.Location())
}

// text returns the rendered text of the first element sel matches.
func (b *browser) text(sel string) string {
	b.t.Helper()
	return run(b, "reading "+sel, chromedp.Text(chromedp.CSS(sel)))
}

// value returns the value of the form field sel.
func (b *browser) value(sel string) string {
	b.t.Helper()
	return run(b, "reading the value of "+sel, chromedp.Value(chromedp.CSS(sel)))
}

// clear empties the form field sel. (chromedp.SetValue cannot set "": it
// sends the empty string as an absent argument.)
func (b *browser) clear(sel string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		js := fmt.Sprintf(`document.querySelector(%s).value = ""`, strconv.Quote(sel))
		_, err := chromedp.Evaluate[string](js)(ctx, t)
		return chromedp.Void{}, err
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	return run(b, "evaluating "+expr, chromedp.Evaluate[T](expr))
}

// cookies returns the cookies the browser holds for url, through the
// DevTools protocol (HttpOnly ones included, which the page cannot read).
func (b *browser) cookies(url string) []*network.Cookie {
	b.t.Helper()
	return run(b, "reading the cookies", func(ctx context.Context, t *chromedp.Target) ([]*network.Cookie, error) {
		res, err := cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
		return res.Cookies, err
	})
}

// expectPage checks that the tab shows url with a heading h1.
func (b *browser) expectPage(url, h1 string) {
	b.t.Helper()
	if got := b.location(); got != url {
		b.t.Errorf("location = %q, want %q", got, url)
	}
	if got := strings.TrimSpace(b.text("h1")); got != h1 {
		b.t.Errorf("heading = %q, want %q", got, h1)
	}
}
