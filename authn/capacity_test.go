package authn_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/password"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/minimost/minimost/middleware"
)

// postJSON posts body as JSON to url and returns the status.
func postJSON(t testing.TB, c *http.Client, url, body string) int {
	t.Helper()
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestThrottleSprayConcurrent: one address spraying a password over many
// accounts with 32 connections at once gets no more password checks than
// its budget (a burst of 20, and a frozen clock: nothing comes back).
// Before reservations, every request in flight passed the budget check
// before any failure was counted.
func TestThrottleSprayConcurrent(t *testing.T) {
	t.Parallel()
	const burst, conns, perConn = 20, 32, 4
	clk := testdb.NewClock()
	hasher := newCountingHasher(nil)
	a, _ := openTest(t, authn.Config{
		LockoutThreshold: -1,
		Hasher:           hasher,
		HashConcurrency:  conns,
		HTTP: authn.HTTPConfig{
			InsecureCookies: true,
			Throttle:        middleware.NewThrottle(middleware.ThrottleConfig{Burst: burst, Interval: time.Hour, Now: clk.Now}),
		},
	})
	ctx := context.Background()
	for i := range conns * perConn {
		if err := a.Register(ctx, fmt.Sprintf("user%d", i), goodPassword); err != nil {
			t.Fatal(err)
		}
	}
	// Hold every verification open a little, so that the requests overlap.
	hasher.SetOnVerify(func(string) { time.Sleep(20 * time.Millisecond) })
	before := hasher.TotalVerifies()
	srv := httptest.NewServer(a.LoginHandler())
	defer srv.Close()

	var checked, throttled atomic.Int64
	var wg sync.WaitGroup
	for c := range conns {
		wg.Go(func() {
			client := &http.Client{Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			for i := range perConn {
				body := fmt.Sprintf(`{"username":"user%d","password":"Winter2026!Winter2026"}`, c*perConn+i)
				switch st := postJSON(t, client, srv.URL, body); st {
				case http.StatusUnauthorized:
					checked.Add(1)
				case http.StatusTooManyRequests:
					throttled.Add(1)
				default:
					t.Errorf("status %d", st)
				}
			}
		})
	}
	wg.Wait()
	verifies := hasher.TotalVerifies() - before
	t.Logf("%d checked, %d throttled, %d verifications", checked.Load(), throttled.Load(), verifies)
	if checked.Load() > burst || verifies > burst {
		t.Fatalf("%d passwords checked (%d verifications) from one address, budget %d", checked.Load(), verifies, burst)
	}
}

// perClientHasher is FastHasher, slowed down, that counts the hashes and
// verifications in flight per client. Hasher calls carry no client, so the
// client is told by its password's prefix (up to the first '-').
type perClientHasher struct {
	password.Hasher
	delay time.Duration

	mu                sync.Mutex
	inFlight, maxSeen map[string]int
}

func newPerClientHasher(delay time.Duration) *perClientHasher {
	return &perClientHasher{Hasher: testdb.FastHasher, delay: delay, inFlight: map[string]int{}, maxSeen: map[string]int{}}
}

func (h *perClientHasher) enter(pw string) func() {
	client, _, _ := strings.Cut(pw, "-")
	h.mu.Lock()
	h.inFlight[client]++
	h.maxSeen[client] = max(h.maxSeen[client], h.inFlight[client])
	h.mu.Unlock()
	time.Sleep(h.delay)
	return func() {
		h.mu.Lock()
		h.inFlight[client]--
		h.mu.Unlock()
	}
}

func (h *perClientHasher) Hash(pw string) (string, error) {
	defer h.enter(pw)()
	return h.Hasher.Hash(pw)
}

func (h *perClientHasher) Verify(encoded, pw string) (bool, error) {
	defer h.enter(pw)()
	return h.Hasher.Verify(encoded, pw)
}

func (h *perClientHasher) max(client string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.maxSeen[client]
}

// clientFrom returns an HTTP client whose connections come from the
// loopback address ip (any of 127.0.0.0/8 is local on Linux), so that the
// server sees distinct client addresses without a proxy.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 100}}
}

// TestRegistrationFloodHoldsOneSlot: one address registering over 64
// connections at once holds at most one hashing slot at a time (of 4), so
// another address's logins go through meanwhile. Before the per-client
// bound, the flood held every slot it could get.
func TestRegistrationFloodHoldsOneSlot(t *testing.T) {
	t.Parallel()
	const flooders = 64
	hasher := newPerClientHasher(20 * time.Millisecond)
	a, _ := openTest(t, authn.Config{
		Hasher:          hasher,
		HashConcurrency: 4,
		PasswordPolicy:  authn.PasswordPolicy{MinLength: 1, AllowCommon: true},
		HTTP: authn.HTTPConfig{
			InsecureCookies:  true,
			Throttle:         middleware.NewThrottle(middleware.ThrottleConfig{Burst: 1 << 20}),
			RegisterThrottle: middleware.NewThrottle(middleware.ThrottleConfig{Burst: 1 << 20}),
		},
	})
	if err := a.Register(context.Background(), "alice", "other-alice's passphrase"); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/login", a.LoginHandler())
	mux.Handle("/register", a.RegisterHandler())
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var registered atomic.Int64
	flood := clientFrom("127.0.0.2")
	defer flood.CloseIdleConnections()
	for c := range flooders {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				body := fmt.Sprintf(`{"username":"f%d_%d","password":"flood-passphrase %d %d"}`, c, i, c, i)
				req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/register", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := flood.Do(req)
				if err != nil {
					return // the flood is over
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusCreated {
					registered.Add(1)
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond) // let the flood fill the queue
	other := clientFrom("127.0.0.3")
	defer other.CloseIdleConnections()
	var took []time.Duration
	for range 5 {
		start := time.Now()
		if st := postJSON(t, other, srv.URL+"/login", `{"username":"alice","password":"other-alice's passphrase"}`); st != http.StatusOK {
			t.Errorf("another address's login during the flood: %d", st)
		}
		took = append(took, time.Since(start))
	}
	stop()
	wg.Wait()
	slices.Sort(took)
	t.Logf("flood: %d registrations; other address's logins took %v (median %v)", registered.Load(), took, took[len(took)/2])
	if n := hasher.max("flood"); n > 1 {
		t.Errorf("the flooding address held %d hashing slots at once, want at most 1", n)
	}
	if hasher.max("other") < 1 {
		t.Error("the other address's logins were never hashed")
	}
}

// TestRegisterThrottle: registrations from one address spend a budget of
// their own, successes included; another address has its own.
func TestRegisterThrottle(t *testing.T) {
	t.Parallel()
	clk := testdb.NewClock()
	a, _ := openTest(t, authn.Config{
		PasswordPolicy: authn.PasswordPolicy{MinLength: 1, AllowCommon: true},
		HTTP: authn.HTTPConfig{
			InsecureCookies:  true,
			RegisterThrottle: middleware.NewThrottle(middleware.ThrottleConfig{Burst: 3, Interval: time.Minute, Now: clk.Now}),
		},
	})
	srv := httptest.NewServer(a.RegisterHandler())
	defer srv.Close()
	register := func(c *http.Client, name string) int {
		return postJSON(t, c, srv.URL, fmt.Sprintf(`{"username":%q,"password":"a passphrase for %s"}`, name, name))
	}
	one, two := clientFrom("127.0.0.4"), clientFrom("127.0.0.5")
	defer one.CloseIdleConnections()
	defer two.CloseIdleConnections()
	for i := range 3 {
		if st := register(one, fmt.Sprint("u", i)); st != http.StatusCreated {
			t.Fatalf("registration %d: %d", i, st)
		}
	}
	if st := register(one, "u3"); st != http.StatusTooManyRequests {
		t.Fatalf("a fourth registration from one address in a burst of 3: %d, want 429", st)
	}
	if st := register(two, "v0"); st != http.StatusCreated {
		t.Fatalf("another address: %d", st)
	}
	clk.Advance(time.Minute)
	if st := register(one, "u3"); st != http.StatusCreated {
		t.Fatalf("a minute later: %d", st)
	}
}

// TestThrottledLogging: a client hammering over its budget gets one log
// line per minute, the first with its address, and the next one says how
// many were left out; OnEvent still sees every refusal.
func TestThrottledLogging(t *testing.T) {
	t.Parallel()
	var logged strings.Builder
	var events atomic.Int64
	clk := testdb.NewClock()
	a, _ := openTest(t, authn.Config{
		Now:    clk.Now,
		Logger: newTextLogger(&logged),
		OnEvent: func(_ context.Context, e authn.Event) {
			if e.Reason == authn.ReasonThrottled {
				events.Add(1)
			}
		},
		HTTP: authn.HTTPConfig{
			InsecureCookies: true,
			Throttle:        middleware.NewThrottle(middleware.ThrottleConfig{Burst: 1, Interval: time.Hour, Now: clk.Now}),
		},
	})
	h := a.LoginHandler()
	login := func() int {
		r := httptest.NewRequest("POST", "/login", strings.NewReader(`{"username":"alice","password":"wrong password"}`))
		r.Header.Set("Content-Type", "application/json")
		r.RemoteAddr = "192.0.2.9:4321"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	login() // the one failure of the budget
	for range 1000 {
		if st := login(); st != http.StatusTooManyRequests {
			t.Fatalf("over budget: %d", st)
		}
	}
	clk.Advance(61 * time.Second)
	login()
	var lines []string
	for line := range strings.Lines(logged.String()) {
		if strings.Contains(line, "reason=throttled") {
			lines = append(lines, line)
		}
	}
	t.Logf("%d lines:\n%s", len(lines), strings.Join(lines, ""))
	if len(lines) > 3 {
		t.Fatalf("%d log lines for 1001 throttled requests of one client", len(lines))
	}
	if !strings.Contains(lines[0], "client=192.0.2.9") {
		t.Errorf("the first line does not name the client: %s", lines[0])
	}
	if !strings.Contains(lines[len(lines)-1], "suppressed=999") {
		t.Errorf("the line after the window does not count the 999 left out: %s", lines[len(lines)-1])
	}
	if n := events.Load(); n != 1001 {
		t.Errorf("OnEvent saw %d throttled requests, want 1001", n)
	}
}

// memoryHasher is a cheap argon2id Hasher that records the memory of the
// verifications in flight, as password.Memory counts it.
type memoryHasher struct {
	password.Hasher
	mu                sync.Mutex
	inFlight, maxSeen int64
}

func (h *memoryHasher) Verify(encoded, pw string) (bool, error) {
	m := password.Memory(encoded)
	h.mu.Lock()
	h.inFlight += m
	h.maxSeen = max(h.maxSeen, h.inFlight)
	h.mu.Unlock()
	time.Sleep(20 * time.Millisecond) // so that verifications overlap
	defer func() {
		h.mu.Lock()
		h.inFlight -= m
		h.mu.Unlock()
	}()
	return h.Hasher.Verify(encoded, pw)
}

// TestHashMemoryBudget: with a memory budget of two hashes, 8 parallel
// wrong logins (8 hashing slots) never have more than two hashes' memory
// in flight. Before the budget, only the slots bounded them.
func TestHashMemoryBudget(t *testing.T) {
	t.Parallel()
	hasher := &memoryHasher{Hasher: password.Argon2id{Memory: 1 << 10, Time: 1, Threads: 1}}
	one, err := hasher.Hash("x")
	if err != nil {
		t.Fatal(err)
	}
	budget := 2 * password.Memory(one)
	a, _ := openTest(t, authn.Config{
		Hasher:           hasher,
		HashConcurrency:  8,
		HashMemory:       budget,
		LockoutThreshold: -1,
		PasswordPolicy:   authn.PasswordPolicy{MinLength: 1, AllowCommon: true},
	})
	ctx := context.Background()
	for i := range 8 {
		if err := a.Register(ctx, fmt.Sprint("user", i), "right"); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for round := range 3 {
		for i := range 8 {
			user := fmt.Sprint("user", i)
			if round == 2 && i%2 == 1 {
				user = fmt.Sprint("nobody", i) // the dummy verification counts too
			}
			wg.Go(func() {
				if err := a.Authenticate(ctx, user, "wrong"); !errors.Is(err, authn.ErrInvalidCredentials) {
					t.Errorf("wrong login of %s: %v", user, err)
				}
			})
		}
		wg.Wait()
	}
	t.Logf("most memory in flight: %d bytes, budget %d", hasher.maxSeen, budget)
	if hasher.maxSeen > budget {
		t.Fatalf("%d bytes of hashes in flight, budget %d", hasher.maxSeen, budget)
	}
}
