package testdb

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/minimost/minimost/authn/password"
)

// CountingHasher wraps a Hasher and counts its calls, so that a test can
// tell real password checks (against a user's hash) from dummy ones.
type CountingHasher struct {
	password.Hasher
	hashes atomic.Int64

	mu       sync.Mutex
	verifies map[string]int // by encoded hash
	// OnVerify, when set, runs inside Verify before it returns. Set it
	// before the Hasher is in use.
	OnVerify func(encoded string)
}

// NewCountingHasher wraps h (nil: FastHasher).
func NewCountingHasher(h password.Hasher) *CountingHasher {
	if h == nil {
		h = FastHasher
	}
	return &CountingHasher{Hasher: h, verifies: map[string]int{}}
}

// Verify counts the call, runs OnVerify, and verifies.
func (c *CountingHasher) Verify(encoded, pw string) (bool, error) {
	c.mu.Lock()
	c.verifies[encoded]++
	onVerify := c.OnVerify
	c.mu.Unlock()
	if onVerify != nil {
		onVerify(encoded)
	}
	return c.Hasher.Verify(encoded, pw)
}

// Hash counts the call and hashes.
func (c *CountingHasher) Hash(pw string) (string, error) {
	c.hashes.Add(1)
	return c.Hasher.Hash(pw)
}

// SetOnVerify replaces OnVerify while the Hasher is in use.
func (c *CountingHasher) SetOnVerify(f func(encoded string)) {
	c.mu.Lock()
	c.OnVerify = f
	c.mu.Unlock()
}

// Verifies returns how often encoded was verified.
func (c *CountingHasher) Verifies(encoded string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.verifies[encoded]
}

// TotalVerifies returns how many verifications ran, dummy ones included.
func (c *CountingHasher) TotalVerifies() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.verifies {
		n += v
	}
	return n
}

// Hashes returns how many hashes were computed.
func (c *CountingHasher) Hashes() int { return int(c.hashes.Load()) }

// Clock is a settable clock for Config.Now, safe for concurrent use.
type Clock struct{ t atomic.Int64 }

// NewClock returns a Clock at a fixed time.
func NewClock() *Clock {
	c := &Clock{}
	c.t.Store(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time { return time.Unix(0, c.t.Load()) }

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.t.Add(int64(d)) }
