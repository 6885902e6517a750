package authn

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/minimost/minimost/authn/password"
)

// defaultHashMemory is the memory per hashing slot of the default
// HashMemory: what password.Argon2id{} needs, the most of the default
// parameters of package password's Hashers.
const defaultHashMemory = 64 << 20

// weighted is a semaphore of a number of units (bytes of memory) taken in
// varying amounts, first come first served: a large request is not
// starved by smaller ones that arrive after it.
type weighted struct {
	size int64

	mu      sync.Mutex
	used    int64
	waiters list.List // of *memWaiter, in arrival order
}

type memWaiter struct {
	n     int64
	ready chan struct{} // closed when the units are granted
}

// clamp bounds a request to the size: a hash that needs more than the
// whole budget runs alone.
func (s *weighted) clamp(n int64) int64 { return min(max(n, 0), s.size) }

// acquire takes n units (clamped), waiting until they are free, ctx ends
// or timeout fires (nil: no timeout).
func (s *weighted) acquire(ctx context.Context, n int64, timeout <-chan time.Time) error {
	n = s.clamp(n)
	s.mu.Lock()
	if s.waiters.Len() == 0 && s.used+n <= s.size {
		s.used += n
		s.mu.Unlock()
		return nil
	}
	w := &memWaiter{n: n, ready: make(chan struct{})}
	elem := s.waiters.PushBack(w)
	s.mu.Unlock()

	var err error
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		err = context.Cause(ctx)
	case <-timeout:
		err = errNoMemory
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-w.ready: // granted meanwhile: take it after all
		return nil
	default:
	}
	front := s.waiters.Front() == elem
	s.waiters.Remove(elem)
	if front {
		s.grant() // those behind may fit now
	}
	return err
}

var errNoMemory = fmt.Errorf("no hashing memory free within HashWait")

// release gives back n units (clamped as acquire did).
func (s *weighted) release(n int64) {
	n = s.clamp(n)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used -= n
	if s.used < 0 {
		panic("authn: hashing memory released more than taken")
	}
	s.grant()
}

// grant wakes the waiters at the front whose requests fit, in order.
func (s *weighted) grant() {
	for e := s.waiters.Front(); e != nil; e = s.waiters.Front() {
		w := e.Value.(*memWaiter)
		if s.used+w.n > s.size {
			return
		}
		s.used += w.n
		s.waiters.Remove(e)
		close(w.ready)
	}
}

// verify runs the Hasher's Verify holding the memory that encoded's
// parameters need. It waits for that memory with no other bound than the
// verifications ahead of it (at most HashConcurrency-1 of them, since it
// runs within a hashing slot): by then the attempt is claimed and counted,
// and failing it now would answer 503 to a login the lockout already
// charged, or be read as an unusable hash.
func (a *Authenticator) verify(encoded, pw string) (bool, error) {
	if a.memory == nil {
		return a.hasher.Verify(encoded, pw)
	}
	n := password.Memory(encoded)
	_ = a.memory.acquire(context.Background(), n, nil) // cannot fail: no end, no timeout
	defer a.memory.release(n)
	return a.hasher.Verify(encoded, pw)
}

// hashWithin runs the Hasher's Hash holding the memory its hashes need,
// waiting for it within ctx and wait as acquire does: a new password is
// hashed before anything is written, so running out answers ErrBusy.
func (a *Authenticator) hashWithin(ctx context.Context, pw string, wait hashWait) (string, error) {
	if a.memory != nil {
		var timeout <-chan time.Time
		if t := wait.timer(); t != nil {
			defer t.Stop()
			timeout = t.C
		}
		if err := a.memory.acquire(ctx, a.hashMemory, timeout); err != nil {
			return "", fmt.Errorf("%w: %w", ErrBusy, err)
		}
		defer a.memory.release(a.hashMemory)
	}
	return a.hasher.Hash(pw)
}
