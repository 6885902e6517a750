package authn

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minimost/minimost/middleware"
)

// budget is a per-client budget of the HTTP handlers (the failure budget,
// or the registration budget), counted in the database so that N instances
// on one database give a client the budget of one. Its settings are a
// middleware.Throttle's (HTTPConfig.Throttle, RegisterThrottle): a token
// bucket of Burst tokens per client network, one earned back every
// Interval; the Throttle's own in-memory counts are not used.
//
// What a request costs:
//   - a login: nothing more than its claim's commit, in which the claim
//     takes the token (the ticket in its context: see store.claim); a
//     success gives it back, one UPDATE (budgetTicket.cancel).
//   - another attempt that may fail (a wrong app token, a malformed
//     request, a registration): one atomic statement of its own
//     (budgetTicket.spend, store.reserveBudget).
//   - allow, and any attempt of a client this process saw spend its last
//     token: nothing but a look at memory (over), until the time its next
//     token is due. The database is the truth; the memo only refuses, so it
//     can never let a client through that the database would refuse.
type budget struct {
	limits   budgetLimits
	v6bits   int
	maxRows  int
	now      func() time.Time
	store    *store
	turns    *claimTurns // SQLite's: a statement of its own waits in turn with the claims; nil on PostgreSQL
	logger   *slog.Logger
	over     overMemo
	reserved atomic.Int64  // reservations since the last sweep
	sweepNow chan struct{} // asks the sweeper to run before its tick
}

// Names of the budgets in the client_budgets table.
const (
	budgetFailures      = "failures"
	budgetRegistrations = "registrations"
	budgetPasskeyStarts = "passkey_starts"
)

// budgetSweepInterval is how often each instance deletes the refilled rows
// of its budgets; a sweep runs sooner once an instance has made MaxClients/8
// reservations since the last.
const budgetSweepInterval = time.Minute

// errOverBudget is the error of an attempt refused for the client's
// budget, by its claim or a statement of its own: the caller answers 429
// with Retry-After (see handlers.reserve and handlers.settle).
var errOverBudget = errors.New("authn: client over its budget")

func newBudget(name string, th *middleware.Throttle, a *Authenticator) *budget {
	c := th.Config()
	b := &budget{
		limits: budgetLimits{name: name, burst: float64(c.Burst), interval: c.Interval.Seconds()},
		v6bits: c.IPv6PrefixLen, maxRows: c.MaxClients, now: c.Now,
		store: a.store, logger: a.logger, sweepNow: make(chan struct{}, 1),
	}
	if a.store != nil && a.store.sqlite() {
		b.turns = &a.claimTurns
	}
	b.over.max = c.MaxClients
	return b
}

// clientPrefix is the network ip's requests are counted against.
func (b *budget) clientPrefix(ip netip.Addr) netip.Prefix {
	return middleware.ClientPrefix(ip, b.v6bits)
}

// allow reports whether ip's client may go on as far as this process
// knows, without a statement: false, with how long until it has a token,
// only for a client a reservation here found over budget. It is the look
// of a request that may need no reservation (a remembered Basic
// credential).
func (b *budget) allow(ip netip.Addr) (bool, time.Duration) {
	wait, over := b.over.lookup(b.clientPrefix(ip), b.now())
	return !over, wait
}

// budgetTicket is one attempt's account with its client's budget: the
// token it took, if any. An attempt that will be claimed (a login) carries
// its ticket in its context (withBudgetTicket), and the claim takes the
// token in its own transaction; any other attempt takes it with spend. It
// belongs to one request.
type budgetTicket struct {
	b     *budget
	key   netip.Prefix
	spent bool // a token was taken, and not given back

	claim *budgetSpend // the spending of the login's claim, if it made one
}

// ticket starts the account of an attempt by ip's client; nothing is
// taken yet.
func (b *budget) ticket(ip netip.Addr) *budgetTicket {
	return &budgetTicket{b: b, key: b.clientPrefix(ip)}
}

// spend takes a token for t, in a statement of its own, before an attempt
// that may fail and has no claim to take it in. It fails with
// errOverBudget, with how long until the client has a token, when it has
// none, and with the database's error (the caller fails closed: 503, and
// nothing was counted) when the count could not be made. On SQLite it
// waits for the write lock as a claim does: in turn with the claims, and
// within HashWait (then ErrBusy).
func (t *budgetTicket) spend(ctx context.Context, hashWait time.Duration) (time.Duration, error) {
	b := t.b
	now := b.now()
	if wait, over := b.over.lookup(t.key, now); over {
		return wait, errOverBudget
	}
	if b.turns != nil {
		if hashWait > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeoutCause(ctx, hashWait, fmt.Errorf("HashWait (%v) passed", hashWait))
			defer cancel()
		}
		release, err := b.turns.take(ctx, "", func(time.Time) {})
		if err != nil {
			return 0, claimWaitError{err}
		}
		defer release()
	}
	left, err := b.store.reserveBudget(ctx, b.limits, t.key.String(), now)
	if errors.Is(err, errBudgetEmpty) {
		return b.refused(ctx, t.key, now), errOverBudget
	}
	if err != nil {
		return 0, err
	}
	b.spent(t, left, now)
	return 0, nil
}

// spent records that t took a token, leaving left at now: a client left
// with less than one is over budget until it has earned one back, which
// the memo answers without a statement (overBudget looks there).
func (b *budget) spent(t *budgetTicket, left float64, now time.Time) {
	t.spent = true
	if left < 1 {
		b.over.note(t.key, now.Add(time.Duration((1-left)*b.limits.interval*float64(time.Second))), now)
	}
	b.countReservation()
}

// refused notes that the database found no token for key at now, and
// returns how long until it has one.
func (b *budget) refused(ctx context.Context, key netip.Prefix, now time.Time) time.Duration {
	wait, err := b.store.budgetWait(ctx, b.limits, key.String(), now)
	if err != nil || wait <= 0 {
		// Refused all the same: the statement found no token. The next
		// one is at most an interval away.
		wait = time.Duration(b.limits.interval * float64(time.Second))
	}
	b.over.note(key, now.Add(wait), now)
	return wait
}

// cancel gives t's token back, if it took one, once: the attempt
// succeeded, or failed through no fault of the client's. It runs to its
// end when the request's context ends (a client that hangs up after a
// success keeps its token). A refund that cannot be written leaves the
// token spent, which errs on the side of the budget; it is logged.
func (t *budgetTicket) cancel(ctx context.Context) {
	if t == nil || !t.spent {
		return
	}
	t.spent = false
	t.b.over.forget(t.key) // it has a token again
	ctx, stop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer stop()
	if err := t.b.store.refundBudget(ctx, t.b.limits, t.key.String()); err != nil {
		t.b.logger.WarnContext(ctx, "authn: a client's budget was not given back", "client", t.key.String(), "error", err)
	}
}

type budgetTicketKey struct{}

// withBudgetTicket gives the claim of a login made within ctx the ticket
// whose token it takes.
func withBudgetTicket(ctx context.Context, t *budgetTicket) context.Context {
	return context.WithValue(ctx, budgetTicketKey{}, t)
}

// budgetTicketFrom is the ticket of withBudgetTicket; nil for a login of
// the Go API, which spends no client's budget.
func budgetTicketFrom(ctx context.Context) *budgetTicket {
	t, _ := ctx.Value(budgetTicketKey{}).(*budgetTicket)
	return t
}

// budgetSpend is what a claim needs to take t's token: nil for no ticket,
// or for one whose token is taken already (a request that checks a
// password and then a code claims twice, and spends one token).
func (t *budgetTicket) budgetSpend() *budgetSpend {
	if t == nil || t.spent {
		if t != nil {
			t.claim = nil
		}
		return nil
	}
	t.claim = &budgetSpend{limits: t.b.limits, client: t.key.String(), now: t.b.now()}
	return t.claim
}

// claimed settles t after its claim ran with err: a claim that ran (a row
// counted, or none found) took the token; one that found none for the
// client is errOverBudget, remembered here.
func (t *budgetTicket) claimed(ctx context.Context, err error) error {
	switch {
	case t == nil || t.claim == nil:
		return err
	case errors.Is(err, errBudgetEmpty):
		t.b.refused(ctx, t.key, t.b.now())
		return errOverBudget
	case err == nil || errors.Is(err, sql.ErrNoRows):
		t.b.spent(t, t.claim.left, t.claim.now)
	}
	return err
}

// countReservation asks for a sweep once an eighth of MaxClients rows may
// have been added since the last, so that a spray from many addresses
// cannot grow the table much beyond MaxClients between two ticks.
func (b *budget) countReservation() {
	if b.reserved.Add(1) < int64(max(1, b.maxRows/8)) {
		return
	}
	select {
	case b.sweepNow <- struct{}{}:
	default:
	}
}

// sweep deletes the refilled rows of the budget, and evicts the fullest
// rows down to 7/8 of MaxClients when more are left.
func (b *budget) sweep(ctx context.Context) {
	b.reserved.Store(0)
	now := b.now()
	b.over.expire(now)
	if _, err := b.store.sweepBudgets(ctx, b.limits, now, b.maxRows, b.maxRows-b.maxRows/8); err != nil && ctx.Err() == nil {
		b.logger.WarnContext(ctx, "authn: sweeping client budgets", "budget", b.limits.name, "error", err)
	}
}

// runSweeper sweeps every budgetSweepInterval, and when asked, until ctx
// ends.
func (b *budget) runSweeper(ctx context.Context) {
	tick := time.NewTicker(budgetSweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-b.sweepNow:
		}
		b.sweep(ctx)
	}
}

// overMemo remembers the clients a reservation found over budget, until
// the time the database gave for their next token. It holds at most max
// entries: one more is not remembered, which costs its client's requests a
// statement each, never a wrong answer. When full, it drops the entries
// that have expired, at most once a second, so that a flood of new
// clients cannot make each refusal scan the whole map.
type overMemo struct {
	max   int
	mu    sync.Mutex
	until map[netip.Prefix]time.Time
	swept time.Time // when a full memo last dropped its expired entries
}

func (m *overMemo) lookup(key netip.Prefix, now time.Time) (time.Duration, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	until, ok := m.until[key]
	if !ok {
		return 0, false
	}
	if !now.Before(until) {
		delete(m.until, key)
		return 0, false
	}
	return until.Sub(now), true
}

func (m *overMemo) note(key netip.Prefix, until, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.until == nil {
		m.until = make(map[netip.Prefix]time.Time)
	}
	if len(m.until) >= m.max {
		if now.Sub(m.swept) < time.Second && !now.Before(m.swept) {
			return
		}
		m.swept = now
		m.expireLocked(now)
		if len(m.until) >= m.max {
			return
		}
	}
	m.until[key] = until
}

func (m *overMemo) forget(key netip.Prefix) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.until, key)
}

func (m *overMemo) expire(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked(now)
}

func (m *overMemo) expireLocked(now time.Time) {
	for k, until := range m.until {
		if !now.Before(until) {
			delete(m.until, k)
		}
	}
}
