package authn

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Logging of throttled requests. A client over its budget may send
// thousands of requests a second, each answered 429 at almost no cost, and a
// log line each would cost more than the answer. So the first refusal of a
// client in a window of throttleLogWindow is logged as any other event (a
// WARN line with the client address, as fail2ban reads it), the others in
// that window are only counted, and the count is logged as suppressed=N in
// the client's next throttled line, or, when the client stops, by a sweep
// at most a window after its window ended. OnEvent still sees every one:
// it is the application's to aggregate. Refused cross-origin requests,
// which an attacker can send as fast, are logged the same way, in a
// throttleLog of their own (see crossOriginDenied).
const (
	throttleLogWindow = time.Minute
	// throttleLogClients bounds the clients whose windows are tracked.
	// Past it, after a sweep of the ended windows, refusals are logged one
	// line each, as before: that takes more addresses than anyone
	// hammering from a few of them has.
	throttleLogClients = 10_000
)

// throttleLog is the bookkeeping of the windows of throttled clients.
type throttleLog struct {
	mu      sync.Mutex
	clients map[netip.Prefix]*throttleWindow
	// firstEnd is, as of the last sweep, when the earliest window of
	// clients ends: no sweep before it can free anything (windows added
	// or restarted since end later), so a full bookkeeping is not scanned
	// again for each new client, which anyone with many addresses could
	// make the server do at no cost.
	firstEnd time.Time
	scans    int // full scans of clients, counted for the tests
}

type throttleWindow struct {
	start      time.Time
	client     string // the address of the window's first line
	suppressed int    // refusals in the window not logged
}

func newThrottleLog() *throttleLog {
	return &throttleLog{clients: make(map[netip.Prefix]*throttleWindow)}
}

// note counts a refusal of key's client at now. It reports whether to log
// it, with how many refusals of the client's previous window went
// unlogged, and returns the windows that had to be swept to make room.
func (l *throttleLog) note(key netip.Prefix, client string, now time.Time) (logIt bool, suppressed int, swept []throttleWindow) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.clients[key]
	if w != nil && now.Sub(w.start) < throttleLogWindow {
		w.suppressed++
		return false, 0, nil
	}
	if w != nil {
		suppressed = w.suppressed
		*w = throttleWindow{start: now, client: client}
		return true, suppressed, nil
	}
	if len(l.clients) >= throttleLogClients {
		if !now.Before(l.firstEnd) {
			swept = l.sweepLocked(now)
		}
		if len(l.clients) >= throttleLogClients {
			return true, 0, swept // untracked: logged
		}
	}
	l.clients[key] = &throttleWindow{start: now, client: client}
	return true, 0, swept
}

// sweep drops the windows that ended before now and returns those with
// refusals not logged.
func (l *throttleLog) sweep(now time.Time) []throttleWindow {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sweepLocked(now)
}

func (l *throttleLog) sweepLocked(now time.Time) []throttleWindow {
	var out []throttleWindow
	l.scans++
	l.firstEnd = time.Time{}
	for k, w := range l.clients {
		end := w.start.Add(throttleLogWindow)
		if !now.Before(end) {
			if w.suppressed > 0 {
				out = append(out, *w)
			}
			delete(l.clients, k)
		} else if l.firstEnd.IsZero() || end.Before(l.firstEnd) {
			l.firstEnd = end
		}
	}
	return out
}

// emitThrottled reports a request refused for its client's budget: to
// OnEvent always, to the log as throttleLog decides.
func (h *handlers) emitThrottled(ctx context.Context, e Event) {
	var key netip.Prefix
	if ip := clientAddr(ctx); ip.IsValid() {
		key = h.failures.clientPrefix(ip)
	}
	logIt, suppressed, swept := h.throttleLog.note(key, clientIP(ctx), h.a.now())
	h.logSuppressedThrottled(ctx, swept)
	var extra []slog.Attr
	if suppressed > 0 {
		extra = append(extra, slog.Int("suppressed", suppressed))
	}
	h.a.record(ctx, e, logIt, extra...)
}

// flushThrottleLog logs the counts of the windows that ended, of throttled
// and of cross-origin requests.
func (h *handlers) flushThrottleLog(ctx context.Context) {
	now := h.a.now()
	h.logSuppressedThrottled(ctx, h.throttleLog.sweep(now))
	h.logSuppressedCrossOrigin(ctx, h.crossOriginLog.sweep(now))
}

func (h *handlers) logSuppressedThrottled(ctx context.Context, windows []throttleWindow) {
	for _, w := range windows {
		h.a.logger.LogAttrs(ctx, slog.LevelWarn, "authn: throttled requests not logged",
			slog.String("event", string(EventLoginFailed)), slog.String("reason", string(ReasonThrottled)),
			slog.String("client", w.client), slog.Int("suppressed", w.suppressed))
	}
}

func (h *handlers) logSuppressedCrossOrigin(ctx context.Context, windows []throttleWindow) {
	for _, w := range windows {
		h.a.logger.LogAttrs(ctx, slog.LevelWarn, "authn: cross-origin requests refused, not logged",
			slog.String("client", w.client), slog.Int("suppressed", w.suppressed))
	}
}

// crossOriginDenied answers a POST that http.CrossOriginProtection refused
// (a CSRF attempt, or a proxy that rewrites Host): 403, as JSON for an API
// client, and a WARN line with the client's address, method and path, so
// that an operator sees both. The lines are bounded per client as the
// throttled ones are: the first of a window is logged, with the count of
// the previous window's others.
func (h *handlers) crossOriginDenied(w http.ResponseWriter, r *http.Request) {
	h.a.stats.crossOriginRefused.Add(1)
	ctx := r.Context()
	var key netip.Prefix
	if ip := clientAddr(ctx); ip.IsValid() {
		key = h.failures.clientPrefix(ip)
	}
	logIt, suppressed, swept := h.crossOriginLog.note(key, clientIP(ctx), h.a.now())
	h.logSuppressedCrossOrigin(ctx, swept)
	if logIt {
		attrs := []slog.Attr{
			slog.String("client", clientIP(ctx)), slog.String("method", truncate(r.Method, 16)),
			slog.String("path", truncate(r.URL.Path, 256)), slog.String("origin", truncate(r.Header.Get("Origin"), 256)),
		}
		if suppressed > 0 {
			attrs = append(attrs, slog.Int("suppressed", suppressed))
		}
		h.a.logger.LogAttrs(ctx, slog.LevelWarn, "authn: cross-origin request refused", attrs...)
	}
	if wantsJSON(r) {
		writeJSON(w, http.StatusForbidden, codedError{"cross-origin request refused", CodeCrossOrigin})
		return
	}
	http.Error(w, "cross-origin request refused", http.StatusForbidden)
}

// truncate cuts s to at most n bytes: what a client sends is logged within
// a bound.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
