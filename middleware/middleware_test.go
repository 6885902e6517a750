package middleware

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestResolveClientIP(t *testing.T) {
	t.Parallel()
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	for _, tc := range []struct {
		remote  string
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		{"203.0.113.7:5555", nil, nil, "203.0.113.7"},
		{"203.0.113.7:5555", []string{"1.2.3.4"}, nil, "203.0.113.7"},               // no proxies trusted: header ignored
		{"203.0.113.7:5555", []string{"1.2.3.4"}, proxies, "203.0.113.7"},           // the peer is no proxy: header ignored
		{"10.0.0.2:80", []string{"1.2.3.4"}, proxies, "1.2.3.4"},                    // one trusted proxy
		{"10.0.0.2:80", []string{"6.6.6.6, 1.2.3.4, 10.0.0.9"}, proxies, "1.2.3.4"}, // spoofed left entry is not believed
		{"10.0.0.2:80", []string{"6.6.6.6", "1.2.3.4"}, proxies, "1.2.3.4"},         // several header lines
		{"10.0.0.2:80", []string{"garbage, 1.2.3.4"}, proxies, "1.2.3.4"},
		{"10.0.0.2:80", []string{"1.2.3.4, garbage"}, proxies, "10.0.0.2"}, // an unreadable hop stops the walk
		{"10.0.0.2:80", []string{"10.0.0.3"}, proxies, "10.0.0.3"},         // all trusted: the farthest
		{"[::1]:80", []string{"2001:db8::1"}, proxies, "2001:db8::1"},
		{"[::ffff:203.0.113.7]:80", nil, nil, "203.0.113.7"},
		{"not an address", nil, nil, "invalid IP"},
		{"10.0.0.2:80", []string{strings.Repeat("1.1.1.1, ", 1000) + "2.2.2.2"}, proxies, "2.2.2.2"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := ResolveClientIP(r, tc.trusted); got.String() != tc.want {
			t.Errorf("remote %s, XFF %q: %s, want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
}

func TestClientIPMiddleware(t *testing.T) {
	t.Parallel()
	var got netip.Addr
	h := ClientIP(nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = ClientIPFromContext(r.Context())
	}))
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "192.0.2.1:1234"
	h.ServeHTTP(httptest.NewRecorder(), r)
	if got.String() != "192.0.2.1" {
		t.Fatalf("ClientIPFromContext = %s", got)
	}
	if _, ok := ClientIPFromContext(r.Context()); ok {
		t.Fatal("an address in a context ClientIP did not make")
	}
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

var (
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("192.0.2.2")
)

func TestThrottle(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{time.Unix(1e9, 0)}
	th := NewThrottle(ThrottleConfig{Burst: 3, Interval: 10 * time.Second, Now: clk.now})
	for i := range 3 {
		if ok, _ := th.Allow(addrA); !ok {
			t.Fatalf("failure %d refused", i)
		}
		if !th.Reserve(addrA).OK() {
			t.Fatalf("reservation %d refused", i)
		}
	}
	ok, wait := th.Allow(addrA)
	if ok || wait != 10*time.Second {
		t.Fatalf("over budget: %v %v, want refused for 10s", ok, wait)
	}
	if r := th.Reserve(addrA); r.OK() || r.RetryAfter() != 10*time.Second {
		t.Fatalf("reservation over budget: %v %v, want refused for 10s", r.OK(), r.RetryAfter())
	}
	if ok, _ := th.Allow(addrB); !ok {
		t.Fatal("another client refused")
	}
	clk.t = clk.t.Add(4 * time.Second)
	if _, wait := th.Allow(addrA); wait != 6*time.Second {
		t.Fatalf("wait after 4s = %v, want 6s", wait)
	}
	clk.t = clk.t.Add(6 * time.Second)
	if ok, _ := th.Allow(addrA); !ok {
		t.Fatal("a token did not come back")
	}
}

// TestThrottleCancel: a cancelled reservation (a success) costs nothing,
// however often; cancelling twice gives back one token only.
func TestThrottleCancel(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{time.Unix(1e9, 0)}
	th := NewThrottle(ThrottleConfig{Burst: 2, Interval: time.Hour, Now: clk.now})
	for range 100 {
		r := th.Reserve(addrA)
		if !r.OK() {
			t.Fatal("a success was refused")
		}
		r.Cancel()
	}
	th.Reserve(addrA) // a failure
	r := th.Reserve(addrA)
	r.Cancel()
	r.Cancel()
	th.Reserve(addrA) // the second failure
	if th.Reserve(addrA).OK() {
		t.Fatal("a third failure in a row was allowed with a burst of 2")
	}
}

// TestThrottleConcurrentReservations: however many attempts a client has
// in flight at once, no more than the budget start (frozen clock: nothing
// comes back). Before reservations, every attempt in flight passed Allow
// before any of them was counted by Fail.
func TestThrottleConcurrentReservations(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{time.Unix(1e9, 0)}
	const burst, n = 20, 200
	th := NewThrottle(ThrottleConfig{Burst: burst, Interval: time.Minute, Now: clk.now})
	var started atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			if r := th.Reserve(addrA); r.OK() {
				started.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if started.Load() != burst {
		t.Fatalf("%d of %d parallel failing attempts started, budget %d", started.Load(), n, burst)
	}
}

// TestClientPrefix: IPv6 clients are counted by their /64 (configurable),
// IPv4 ones by address, IPv4-mapped IPv6 as IPv4.
func TestClientPrefix(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ip   string
		bits int
		want string
	}{
		{"192.0.2.7", 0, "192.0.2.7/32"},
		{"::ffff:192.0.2.7", 0, "192.0.2.7/32"},
		{"2001:db8:1:2:3:4:5:6", 0, "2001:db8:1:2::/64"},
		{"2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"},
		{"2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6/128"},
		{"2001:db8:1:2:3:4:5:6", 500, "2001:db8:1:2:3:4:5:6/128"},
		{"fe80::1%eth0", 0, "fe80::/64"},
	} {
		if got := ClientPrefix(netip.MustParseAddr(tc.ip), tc.bits); got.String() != tc.want {
			t.Errorf("ClientPrefix(%s, %d) = %s, want %s", tc.ip, tc.bits, got, tc.want)
		}
	}
	if p := ClientPrefix(netip.Addr{}, 0); p.IsValid() {
		t.Errorf("ClientPrefix of the zero Addr = %s", p)
	}
}

// TestThrottleIPv6: addresses in one /64 share a budget; another /64 has
// its own; a shorter configured prefix joins them.
func TestThrottleIPv6(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{time.Unix(1e9, 0)}
	th := NewThrottle(ThrottleConfig{Burst: 2, Interval: time.Hour, Now: clk.now})
	th.Reserve(netip.MustParseAddr("2001:db8:0:1::1"))
	th.Reserve(netip.MustParseAddr("2001:db8:0:1:ffff::2"))
	if th.Reserve(netip.MustParseAddr("2001:db8:0:1:1234:5678:9abc:def0")).OK() {
		t.Error("a third address of the same /64 got a budget of its own")
	}
	if !th.Reserve(netip.MustParseAddr("2001:db8:0:2::1")).OK() {
		t.Error("another /64 shares the budget")
	}
	th48 := NewThrottle(ThrottleConfig{Burst: 1, Interval: time.Hour, IPv6PrefixLen: 48, Now: clk.now})
	th48.Reserve(netip.MustParseAddr("2001:db8:0:1::1"))
	if th48.Reserve(netip.MustParseAddr("2001:db8:0:2::1")).OK() {
		t.Error("with IPv6PrefixLen 48, another /64 of the /48 has a budget of its own")
	}
	// IPv4 stays per address, mapped or not.
	th.Reserve(netip.MustParseAddr("192.0.2.1"))
	th.Reserve(netip.MustParseAddr("::ffff:192.0.2.1"))
	if th.Reserve(netip.MustParseAddr("192.0.2.1")).OK() {
		t.Error("an IPv4-mapped address has a budget apart from its IPv4 address")
	}
	if !th.Reserve(netip.MustParseAddr("192.0.2.2")).OK() {
		t.Error("the next IPv4 address shares the budget")
	}
}

// TestThrottleBounded: however many clients fail, the table stays bounded.
func TestThrottleBounded(t *testing.T) {
	t.Parallel()
	th := NewThrottle(ThrottleConfig{MaxClients: 100})
	for i := range 10_000 {
		th.Reserve(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
		if n := len(th.clients); n > 100 {
			t.Fatalf("%d clients tracked, bound 100", n)
		}
	}
}

func TestThrottleWrap(t *testing.T) {
	t.Parallel()
	th := NewThrottle(ThrottleConfig{Burst: 2, Interval: time.Hour})
	status := http.StatusUnauthorized
	h := th.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
	get := func() *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/", nil)
		h.ServeHTTP(w, r)
		return w
	}
	get()
	get()
	w := get()
	if w.Code != 429 || w.Header().Get("Retry-After") != "3600" {
		t.Fatalf("third failure: %d Retry-After=%q", w.Code, w.Header().Get("Retry-After"))
	}
	// Successes cost nothing.
	th2 := NewThrottle(ThrottleConfig{Burst: 1})
	status = http.StatusOK
	h = th2.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
	for range 10 {
		if w := get(); w.Code != 200 {
			t.Fatalf("success throttled: %d", w.Code)
		}
	}
}

func TestChainOrderAndNoStore(t *testing.T) {
	t.Parallel()
	var order []string
	mark := func(name string) func(http.Handler) http.Handler {
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				order = append(order, name)
				next.ServeHTTP(w, r)
			})
		}
	}
	h := Chain(mark("a"), mark("b"), NoStore)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if strings.Join(order, "") != "ab" || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("order %v, Cache-Control %q", order, w.Header().Get("Cache-Control"))
	}
}

func TestMaxBytes(t *testing.T) {
	t.Parallel()
	h := MaxBytes(10)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		}
	}))
	for _, tc := range []struct {
		body        string
		chunked     bool
		wantTooMuch bool
	}{{"a=1", false, false}, {strings.Repeat("a", 100), false, true}, {strings.Repeat("a", 100), true, true}} {
		r := httptest.NewRequest("POST", "/", strings.NewReader(tc.body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if tc.chunked {
			r.ContentLength = -1
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if (w.Code == 413) != tc.wantTooMuch {
			t.Errorf("body of %d bytes (chunked %v): %d", len(tc.body), tc.chunked, w.Code)
		}
	}
}

// TestThrottleConfig: Config gives the settings a Throttle counts with,
// the defaults of NewThrottle applied, so that a budget kept elsewhere
// counts the same.
func TestThrottleConfig(t *testing.T) {
	c := NewThrottle(ThrottleConfig{}).Config()
	if c.Burst != 20 || c.Interval != 6*time.Second || c.IPv6PrefixLen != 64 || c.MaxClients != 1<<16 || c.Now == nil || c.Failed == nil {
		t.Errorf("defaults: %+v", c)
	}
	if !c.Failed(401) || c.Failed(429) || c.Failed(200) {
		t.Error("default Failed: want every 4xx but 429")
	}
	c = NewThrottle(ThrottleConfig{Burst: 3, Interval: time.Hour, IPv6PrefixLen: 48, MaxClients: 9}).Config()
	if c.Burst != 3 || c.Interval != time.Hour || c.IPv6PrefixLen != 48 || c.MaxClients != 9 {
		t.Errorf("set: %+v", c)
	}
}
