package middleware

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
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

func TestThrottle(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{time.Unix(1e9, 0)}
	th := NewThrottle(ThrottleConfig{Burst: 3, Interval: 10 * time.Second, Now: clk.now})
	for i := range 3 {
		if ok, _ := th.Allow("a"); !ok {
			t.Fatalf("failure %d refused", i)
		}
		th.Fail("a")
	}
	ok, wait := th.Allow("a")
	if ok || wait != 10*time.Second {
		t.Fatalf("over budget: %v %v, want refused for 10s", ok, wait)
	}
	if ok, _ := th.Allow("b"); !ok {
		t.Fatal("another client refused")
	}
	clk.t = clk.t.Add(4 * time.Second)
	if _, wait := th.Allow("a"); wait != 6*time.Second {
		t.Fatalf("wait after 4s = %v, want 6s", wait)
	}
	clk.t = clk.t.Add(6 * time.Second)
	if ok, _ := th.Allow("a"); !ok {
		t.Fatal("a token did not come back")
	}
}

// TestThrottleBounded: however many clients fail, the table stays bounded.
func TestThrottleBounded(t *testing.T) {
	t.Parallel()
	th := NewThrottle(ThrottleConfig{MaxClients: 100})
	for i := range 10_000 {
		th.Fail(fmt.Sprint(i))
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
