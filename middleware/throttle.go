package middleware

import (
	"cmp"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// ThrottleConfig configures a Throttle. The zero value allows each client a
// burst of 20 failed requests, then one more every 6 seconds (10 a minute),
// counts an IPv6 client by its /64, and tracks at most 65,536 clients.
type ThrottleConfig struct {
	// Burst is how many failures a client may have in a row. 0 means 20.
	Burst int
	// Interval is how long it takes to earn back one failure. 0 means 6s.
	Interval time.Duration
	// IPv6PrefixLen is how many leading bits of an IPv6 address name one
	// client: a host is usually given a whole /64, and could otherwise
	// take a fresh budget with every address of it. 0 means 64; values
	// outside 1..128 are clamped. IPv4 addresses, IPv4-mapped IPv6 ones
	// included, are counted one by one.
	IPv6PrefixLen int
	// MaxClients bounds the clients tracked, and so the memory used.
	// 0 means 65,536.
	MaxClients int
	// Failed says which responses Wrap counts as failures. nil means every
	// 4xx status but 429.
	Failed func(status int) bool
	// Now is the clock. nil means time.Now.
	Now func() time.Time
}

// Throttle limits failed requests per client with a token bucket per
// client: an attempt that may fail reserves a token before it starts and
// gives it back if it succeeds, tokens come back at a steady rate, and a
// client with no token left gets 429 Too Many Requests with Retry-After.
// Successful requests thus cost nothing in the end, while requests in flight
// hold their tokens: however many a client sends at once, it gets at most
// Burst failures in a row and one more per Interval after that. It is safe
// for concurrent use.
//
// A client is an IP address, or an IPv6 network of IPv6PrefixLen bits
// (see [ClientPrefix]).
type Throttle struct {
	burst    float64
	interval time.Duration
	v6bits   int
	max      int
	failed   func(int) bool
	now      func() time.Time

	mu      sync.Mutex
	clients map[netip.Prefix]*bucket
}

type bucket struct {
	tokens float64 // may be fractional: refills are continuous
	last   time.Time
}

// NewThrottle returns a Throttle configured by cfg.
func NewThrottle(cfg ThrottleConfig) *Throttle {
	t := &Throttle{
		burst:    float64(cfg.Burst),
		interval: cfg.Interval,
		v6bits:   cfg.IPv6PrefixLen,
		max:      cfg.MaxClients,
		failed:   cfg.Failed,
		now:      cfg.Now,
		clients:  make(map[netip.Prefix]*bucket),
	}
	if t.burst <= 0 {
		t.burst = 20
	}
	if t.interval <= 0 {
		t.interval = 6 * time.Second
	}
	if t.v6bits == 0 {
		t.v6bits = 64
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

// Config returns the settings of t, with the defaults of NewThrottle
// applied: what a budget kept elsewhere (a database shared by several
// processes) needs to count as t would.
func (t *Throttle) Config() ThrottleConfig {
	return ThrottleConfig{
		Burst: int(t.burst), Interval: t.interval, IPv6PrefixLen: t.v6bits,
		MaxClients: t.max, Failed: t.failed, Now: t.now,
	}
}

// ClientPrefix returns the network that counts as the client of ip: ip
// itself for an IPv4 address (an IPv4-mapped IPv6 address is taken as the
// IPv4 address it holds), and for an IPv6 address its first ipv6Bits bits
// (0 means 64; other values are clamped to 1..128), without a zone. The
// zero Addr gives the zero Prefix. The result is comparable and fit as a
// map key.
func ClientPrefix(ip netip.Addr, ipv6Bits int) netip.Prefix {
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = ipv6Bits
		if bits == 0 {
			bits = 64
		}
		bits = min(max(bits, 1), 128)
	}
	p, _ := ip.Prefix(bits) // cannot fail: bits is in range, and the zero Addr gives the zero Prefix
	return p
}

// ClientPrefix is [ClientPrefix] with this Throttle's IPv6PrefixLen: the
// client that ip's requests are counted against.
func (t *Throttle) ClientPrefix(ip netip.Addr) netip.Prefix { return ClientPrefix(ip, t.v6bits) }

// Allow reports whether the client of ip has a token left, without taking
// it; if not, it returns how long until it has one. It is a cheap look
// for a request that may turn out to need no reservation; a request that
// will make an attempt that may fail must Reserve.
func (t *Throttle) Allow(ip netip.Addr) (ok bool, retryAfter time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, found := t.clients[t.ClientPrefix(ip)]
	if !found {
		return true, 0
	}
	t.refill(b)
	if b.tokens >= 1 {
		return true, 0
	}
	return false, t.wait(b)
}

// Reserve takes a token from the budget of ip's client for an attempt
// that may fail, before the attempt starts. If the client has none left,
// the Reservation is not OK: the attempt must not be made (answer 429 with
// RetryAfter). Otherwise the token stays spent, counting the attempt as a
// failure, unless the caller calls Cancel when the attempt succeeded.
func (t *Throttle) Reserve(ip netip.Addr) *Reservation {
	key := t.ClientPrefix(ip)
	t.mu.Lock()
	defer t.mu.Unlock()
	b, found := t.clients[key]
	if !found {
		t.makeRoom()
		b = &bucket{tokens: t.burst, last: t.now()}
		t.clients[key] = b
	}
	t.refill(b)
	if b.tokens < 1 {
		return &Reservation{retryAfter: t.wait(b)}
	}
	b.tokens--
	return &Reservation{t: t, key: key, b: b}
}

// Reservation is a token that Throttle.Reserve took for one attempt. It
// belongs to the request that made it: its methods are not for concurrent
// use.
type Reservation struct {
	t          *Throttle // nil when not OK, or once cancelled
	key        netip.Prefix
	b          *bucket
	retryAfter time.Duration
}

// OK reports whether a token was taken, that is whether the attempt may be
// made.
func (r *Reservation) OK() bool { return r.t != nil || r.b != nil }

// RetryAfter is, for a Reservation that is not OK, how long until the
// client has a token again; 0 for one that is.
func (r *Reservation) RetryAfter() time.Duration { return r.retryAfter }

// Cancel gives the token back: call it when the attempt succeeded, or was
// not the client's failure. Calls after the first, and calls on a
// Reservation that is not OK, do nothing.
func (r *Reservation) Cancel() {
	t := r.t
	if t == nil {
		return
	}
	r.t = nil
	t.mu.Lock()
	defer t.mu.Unlock()
	// The bucket may have been dropped (refilled, or evicted) meanwhile:
	// then there is nothing to give back to.
	if b := t.clients[r.key]; b == r.b {
		t.refill(b)
		b.tokens = min(t.burst, b.tokens+1)
	}
}

// wait is how long until b has a whole token.
func (t *Throttle) wait(b *bucket) time.Duration {
	return time.Duration((1 - b.tokens) * float64(t.interval))
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
// over its budget. Every other request reserves a token, given back unless
// Failed calls its response a failure. The client is the address ClientIP
// stored in the context, or else the connection's peer.
//
// The writer next sees records the status and implements exactly the
// optional interfaces that w implements (http.Flusher, http.Hijacker,
// io.ReaderFrom, io.StringWriter, http.Pusher and the rest that
// github.com/felixge/httpsnoop knows), so streaming (server-sent events),
// io.Copy's fast path and connection upgrades work through Wrap as without
// it; its Unwrap method gives w to http.ResponseController. A response
// whose first write is a Flush, a ReadFrom or a WriteString has status 200,
// as net/http sends it; a hijacked connection counts as 101 Switching
// Protocols unless a status was written before, and so as no failure.
func (t *Throttle) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip, ok := ClientIPFromContext(r.Context())
		if !ok {
			ip = ResolveClientIP(r, nil)
		}
		res := t.Reserve(ip)
		if !res.OK() {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(res.RetryAfter().Seconds())))))
			http.Error(w, "too many failed requests", http.StatusTooManyRequests)
			return
		}
		sw, wrapped := newStatusWriter(w)
		next.ServeHTTP(wrapped, r)
		if !t.failed(cmp.Or(sw.status, http.StatusOK)) {
			res.Cancel()
		}
	})
}
