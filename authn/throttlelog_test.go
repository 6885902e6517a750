package authn

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/minimost/minimost/middleware"
)

// TestThrottleLogBounded: the bookkeeping stays within its bound however
// many clients are throttled, a client past the bound is still logged, and
// a sweep reports the counts of the windows that ended.
func TestThrottleLogBounded(t *testing.T) {
	t.Parallel()
	l := newThrottleLog()
	now := time.Unix(1e9, 0)
	for i := range throttleLogClients + 100 {
		key := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		if logIt, _, _ := l.note(key, key.Addr().String(), now); !logIt {
			t.Fatalf("the first refusal of client %d was not logged", i)
		}
		l.note(key, key.Addr().String(), now) // suppressed, if tracked
	}
	if n := len(l.clients); n > throttleLogClients {
		t.Fatalf("%d clients tracked, bound %d", n, throttleLogClients)
	}
	swept := l.sweep(now.Add(throttleLogWindow))
	if len(swept) != throttleLogClients || swept[0].suppressed != 1 || len(l.clients) != 0 {
		t.Fatalf("sweep: %d windows with counts, %d left", len(swept), len(l.clients))
	}
}

// TestCrossOriginLogFlushed: refused cross-origin requests share the
// bookkeeping of throttled ones: one line per client a window, and when the
// client stops, the sweep logs how many were not.
func TestCrossOriginLogFlushed(t *testing.T) {
	t.Parallel()
	var buf strings.Builder
	now := time.Unix(1e9, 0)
	h := newHandlers(&Authenticator{logger: slog.New(slog.NewTextHandler(&buf, nil)), now: func() time.Time { return now }}, HTTPConfig{})
	deny := h.crossOriginDenied
	for i := range 7 {
		r := httptest.NewRequest("POST", "/login", nil)
		r.Header.Set("Accept", "application/json")
		w := httptest.NewRecorder()
		middleware.ClientIP(nil)(http.HandlerFunc(deny)).ServeHTTP(w, r)
		if w.Code != 403 || !strings.Contains(w.Body.String(), `"code":"cross_origin"`) {
			t.Fatalf("refusal %d: %d %s", i, w.Code, w.Body)
		}
	}
	if n := strings.Count(buf.String(), "authn: cross-origin request refused"); n != 1 {
		t.Fatalf("%d lines for 7 refusals in a window, want 1:\n%s", n, buf.String())
	}
	h.flushThrottleLog(context.Background())
	if strings.Contains(buf.String(), "not logged") {
		t.Fatalf("a window still open was flushed:\n%s", buf.String())
	}
	now = now.Add(throttleLogWindow)
	h.flushThrottleLog(context.Background())
	if !strings.Contains(buf.String(), `msg="authn: cross-origin requests refused, not logged" client=192.0.2.1 suppressed=6`) {
		t.Fatalf("the sweep did not log the count:\n%s", buf.String())
	}
}
