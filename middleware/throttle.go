package middleware

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// ThrottleConfig configures a Throttle. The zero value allows each client a
// burst of 20 failed requests, then one more every 6 seconds (10 a minute),
// and tracks at most 65,536 clients.
type ThrottleConfig struct {
	// Burst is how many failures a client may have in a row. 0 means 20.
	Burst int
	// Interval is how long it takes to earn back one failure. 0 means 6s.
	Interval time.Duration
	// MaxClients bounds the clients tracked, and so the memory used.
	// 0 means 65,536.
	MaxClients int
	// Failed says which responses count as failures. nil means every 4xx
	// status but 429.
	Failed func(status int) bool
	// Now is the clock. nil means time.Now.
	Now func() time.Time
}

// Throttle limits failed requests per client with a token bucket per
// client: a failure spends a token, tokens come back at a steady rate, and a
// client with no token left gets 429 Too Many Requests with Retry-After.
// Successful requests cost nothing. It is safe for concurrent use.
//
// Requests in flight are not reserved against the budget, so a client with
// many requests in flight at once may overrun it by that many: the throttle
// slows guessing down; it is not a hard limit (an account lockout is).
type Throttle struct {
	burst    float64
	interval time.Duration
	max      int
	failed   func(int) bool
	now      func() time.Time

	mu      sync.Mutex
	clients map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewThrottle returns a Throttle configured by cfg.
func NewThrottle(cfg ThrottleConfig) *Throttle {
	t := &Throttle{
		burst:    float64(cfg.Burst),
		interval: cfg.Interval,
		max:      cfg.MaxClients,
		failed:   cfg.Failed,
		now:      cfg.Now,
		clients:  make(map[string]*bucket),
	}
	if t.burst <= 0 {
		t.burst = 20
	}
	if t.interval <= 0 {
		t.interval = 6 * time.Second
	}
	if t.max <= 0 {
		t.max = 1 << 16
	}
	if t.failed == nil {
		t.failed = func(s int) bool { return s >= 400 && s < 500 && s != http.StatusTooManyRequests }
	}
	if t.now == nil {
		t.now = time.Now
	}
	return t
}

// Allow reports whether client may make a request that could fail; if not,
// it returns how long until it may.
func (t *Throttle) Allow(client string) (ok bool, retryAfter time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, found := t.clients[client]
	if !found {
		return true, 0
	}
	t.refill(b)
	if b.tokens >= 1 {
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) * float64(t.interval))
}

// Fail spends one of client's tokens.
func (t *Throttle) Fail(client string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, found := t.clients[client]
	if !found {
		t.makeRoom()
		b = &bucket{tokens: t.burst, last: t.now()}
		t.clients[client] = b
	}
	t.refill(b)
	b.tokens = max(b.tokens-1, 0)
}

// refill adds the tokens earned since b.last.
func (t *Throttle) refill(b *bucket) {
	now := t.now()
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(t.burst, b.tokens+float64(elapsed)/float64(t.interval))
	}
	b.last = now
}

// makeRoom keeps the table under its bound before an insertion: it drops
// the clients whose buckets have refilled (they are as good as new) and, if
// that is not enough, an eighth of the table, in Go's random map order. An
// attacker with more addresses than the bound can thus reset some budgets;
// the account lockout still holds.
func (t *Throttle) makeRoom() {
	if len(t.clients) < t.max {
		return
	}
	for k, b := range t.clients {
		if t.refill(b); b.tokens >= t.burst {
			delete(t.clients, k)
		}
	}
	for k := range t.clients {
		if len(t.clients) < t.max-t.max/8 {
			break
		}
		delete(t.clients, k)
	}
}

// Wrap returns middleware that answers 429 with Retry-After to a client
// over its budget, and counts the responses Failed calls failures against
// it. The client is the address ClientIP stored in the context, or else the
// connection's peer.
func (t *Throttle) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip, ok := ClientIPFromContext(r.Context())
		if !ok {
			ip = ResolveClientIP(r, nil)
		}
		client := ip.String()
		if ok, wait := t.Allow(client); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			http.Error(w, "too many failed requests", http.StatusTooManyRequests)
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if t.failed(sw.status) {
			t.Fail(client)
		}
	})
}

// statusWriter records the status of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

// WriteHeader records the first status written.
func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write records 200 when no status was written before.
func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
