package authn

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// A login's claim (step 2 of Authenticate) is one UPDATE, which waits when
// another transaction holds a lock on the account's row (PostgreSQL: a long
// admin transaction's SELECT … FOR UPDATE) or on the database (SQLite, which
// has one writer). This file keeps such a wait from holding what every
// other login needs: the claim gives its hashing slot back while it waits
// (loginSlot), and only one claim per lock waits in the database, with a
// pooled connection, at a time (claimTurns). So a held row delays the
// logins of its own account, and no others.

// maxLoanAfter is how long a login's claim may keep its hashing slot idle
// at most: a claim that takes longer (it waits for a lock, for its turn or
// for a pooled connection) gives the slot back until it is done. A claim
// that does not wait takes about a millisecond; this leaves room for a
// machine so loaded that the claim waits for a CPU.
const maxLoanAfter = 500 * time.Millisecond

// loanAfter is how long a claim waiting within w keeps its slot: a quarter
// of HashWait at most, so that a claim that waits all its HashWait has
// lent its slot for most of it.
func (w hashWait) loanAfter() time.Duration {
	if w.d > 0 {
		return min(maxLoanAfter, w.d/4)
	}
	return maxLoanAfter
}

// loginSlot is the hashing slot a login took (acquire) before its claim:
// taken first, so that a login that finds no hashing capacity is refused
// before anything is counted. It is lent back while the claim waits.
type loginSlot struct {
	a     *Authenticator
	ctx   context.Context // the login's: the client whose slot it is
	state atomic.Int32
}

// The states of a loginSlot.
const (
	slotHeld     int32 = iota // held; lent back if the claim takes long
	slotLent                  // given back while the claim waited
	slotKept                  // held to the end of the login
	slotReleased              // given back at the end
)

// newLoginSlot returns the slot that acquire took for ctx.
func (a *Authenticator) newLoginSlot(ctx context.Context) *loginSlot {
	return &loginSlot{a: a, ctx: ctx}
}

// slotLoan gives a login's slot back when its claim takes long. Its methods
// are called by the goroutine of the login; the lending itself happens on
// a timer's.
type slotLoan struct {
	slot  *loginSlot
	timer *time.Timer
	at    time.Time // when the timer lends
}

// lendAfter gives the slot back once d has passed, unless the loan's stop
// is called before.
func (s *loginSlot) lendAfter(d time.Duration) *slotLoan {
	return &slotLoan{
		slot: s,
		at:   time.Now().Add(d),
		timer: time.AfterFunc(d, func() {
			if s.state.CompareAndSwap(slotHeld, slotLent) {
				s.a.release(s.ctx)
			}
		}),
	}
}

// lendBy makes the loan start by t at the latest: a claim waiting for its
// turn behind one that has waited long already will wait as long.
func (l *slotLoan) lendBy(t time.Time) {
	if t.Before(l.at) {
		l.at = t
		l.timer.Reset(max(time.Until(t), 0)) // if it fired already, it lends nothing more
	}
}

// stop ends the loan, and reports whether the slot was given back.
func (l *slotLoan) stop() (lent bool) {
	l.timer.Stop()
	// If the timer fired, its CompareAndSwap came first, or this one does.
	return !l.slot.state.CompareAndSwap(slotHeld, slotKept)
}

// retake takes a slot again after the claim that lent it, within wait and
// ctx (ErrBusy).
func (s *loginSlot) retake(wait hashWait) error {
	if err := s.a.acquire(s.ctx, wait); err != nil {
		return err
	}
	s.state.Store(slotKept)
	return nil
}

// release gives the slot back, if the login holds it: at its end, also
// after a panic.
func (s *loginSlot) release() {
	if s.state.CompareAndSwap(slotKept, slotReleased) || s.state.CompareAndSwap(slotHeld, slotReleased) {
		s.a.release(s.ctx)
	}
}

// again returns a HashWait that starts now, for a login's claim: a login
// that got its slot at the end of its HashWait still has the time of an
// ordinary claim, which a deadline in the past would cut short into a
// 503. noWait stays noWait.
func (w hashWait) again() hashWait {
	if w.until.IsZero() {
		return w
	}
	return hashWait{d: w.d, until: time.Now().Add(w.d)}
}

// retakeWait is the wait of a login taking a slot again after its claim
// lent it: twice HashWait. Its attempt is counted, and failing it now would
// charge the lockout with no password checked. The slots are handed out
// in the order asked (a channel's queue of senders): those who asked
// earlier get theirs or give up within their own HashWait, after which
// this login is first; the second HashWait leaves room for the hashes
// running then.
func (w hashWait) retakeWait() hashWait {
	if w.until.IsZero() {
		return w
	}
	return hashWait{d: 2 * w.d, until: time.Now().Add(2 * w.d)}
}

// claimTurns gives the claims that would wait on the same lock one turn at
// a time: the claims of one account on PostgreSQL, every claim on SQLite.
// The database would run them one at a time anyway; here the others wait
// without a pooled connection, so that a held lock ties up one connection
// of the pool, not all of them, and the other accounts' logins and the
// reads of sessions, tokens and remembered credentials keep the rest.
// Entries live while a claim holds or waits for its turn: the memory is
// bounded by the requests in flight.
type claimTurns struct {
	mu    sync.Mutex
	turns map[string]*claimTurn
}

type claimTurn struct {
	held  chan struct{} // one token while a claim has the turn
	refs  int           // claims that have or wait for the turn
	since time.Time     // when the claim that has it took it; zero: none
}

// take waits for key's turn until ctx ends, and returns the function that
// gives it back; or the cause of ctx's end. A claim that has to wait first
// calls waiting with the time the claim ahead of it took the turn.
func (c *claimTurns) take(ctx context.Context, key string, waiting func(since time.Time)) (release func(), err error) {
	c.mu.Lock()
	if c.turns == nil {
		c.turns = make(map[string]*claimTurn)
	}
	t := c.turns[key]
	if t == nil {
		t = &claimTurn{held: make(chan struct{}, 1)}
		c.turns[key] = t
	}
	t.refs++
	c.mu.Unlock()
	select {
	case t.held <- struct{}{}:
	default:
		c.mu.Lock()
		since := t.since
		c.mu.Unlock()
		if !since.IsZero() {
			waiting(since)
		}
		select {
		case t.held <- struct{}{}:
		case <-ctx.Done():
			c.unref(key, t)
			return nil, context.Cause(ctx)
		}
	}
	c.mu.Lock()
	t.since = time.Now()
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		t.since = time.Time{}
		c.mu.Unlock()
		<-t.held
		c.unref(key, t)
	}, nil
}

func (c *claimTurns) unref(key string, t *claimTurn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.refs--; t.refs == 0 {
		delete(c.turns, key)
	}
}

// claimTurnKey is the turn username's claim waits for: its account's on
// PostgreSQL, the database's on SQLite.
func (a *Authenticator) claimTurnKey(username string) string {
	if a.store.sqlite() {
		return ""
	}
	return username
}
