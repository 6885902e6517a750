package authn

import (
	"context"
	"testing"
	"time"
)

// TestWeighted: the semaphore grants in order, a request larger than the
// whole runs alone, and a waiter that gives up leaves nothing behind.
func TestWeighted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := &weighted{size: 10}
	if err := s.acquire(ctx, 6, nil); err != nil {
		t.Fatal(err)
	}
	// 6 taken: a request of 5 waits; give up after a while.
	timeout := time.After(10 * time.Millisecond)
	if err := s.acquire(ctx, 5, timeout); err == nil {
		t.Fatal("got 5 of 10 with 6 taken")
	}
	// A large request waits at the front; a small one behind it waits too,
	// though it would fit (first come, first served).
	big := make(chan error)
	go func() { big <- s.acquire(ctx, 100, nil) }() // clamped to 10: alone
	for waiting := 0; waiting == 0; {
		s.mu.Lock()
		waiting = s.waiters.Len()
		s.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	if err := s.acquire(ctx, 1, time.After(10*time.Millisecond)); err == nil {
		t.Fatal("a small request overtook a large one")
	}
	s.release(6)
	if err := <-big; err != nil {
		t.Fatal(err)
	}
	s.release(100)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used != 0 || s.waiters.Len() != 0 {
		t.Fatalf("left over: %d used, %d waiting", s.used, s.waiters.Len())
	}
}
