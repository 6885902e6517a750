package authn

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// The statements of the per-client budgets (see budget): a token bucket per
// client and budget in the client_budgets table, taken from in one atomic
// statement, so that the requests of one client on every instance sharing
// the database spend one budget.

// budgetLimits are the numbers of a budget as its statements need them.
type budgetLimits struct {
	name     string  // the budget column: "failures" or "registrations"
	burst    float64 // a full bucket
	interval float64 // seconds to earn back one token
}

// leastGreatest are the two-argument minimum and maximum of the dialect.
func (s *store) leastGreatest() (least, greatest string) {
	if s.postgres() {
		return "LEAST", "GREATEST"
	}
	return "min", "max" // SQLite's scalar min and max of several arguments
}

// budgetSpend is a token a claim takes in its own transaction (see
// store.claim): of which budget, for which client.
type budgetSpend struct {
	limits budgetLimits
	client string
	now    time.Time // the budget's clock, which may not be the claim's
	left   float64   // set by the claim: the tokens its spending left
}

// errBudgetEmpty is a claim's or a reservation's: the client had no token
// left, and nothing was written.
var errBudgetEmpty = errors.New("authn: no token left in the client's budget")

// reserveQuery is the statement that takes one token of client's bucket
// at now, atomically: a client without a row gets a full bucket less one;
// one with at least one token (earned back since its last update
// included) gets it less one; one with less gets nothing, and the
// statement returns no row. Parallel requests cannot each pass a stale
// "under budget" check: the database runs the statements one after
// another on the row (PostgreSQL's upsert locks it; SQLite has one
// writer).
func (s *store) reserveQuery(l budgetLimits, client string, now time.Time) *bun.RawQuery {
	least, greatest := s.leastGreatest()
	t := unixSeconds(now)
	// The tokens the row holds now: what it had, plus what it earned since
	// (never less, should another instance's clock be behind), at most a
	// full bucket. Every expression reads the row as it was.
	avail := fmt.Sprintf("%s(?, client_budgets.tokens + %s(0, ? - client_budgets.updated_at) / ?)", least, greatest)
	return s.db.NewRaw("INSERT INTO client_budgets (budget, client, tokens, updated_at) VALUES (?, ?, ?, ?)"+
		" ON CONFLICT (budget, client) DO UPDATE SET tokens = "+avail+" - 1,"+
		" updated_at = "+greatest+"(client_budgets.updated_at, excluded.updated_at)"+
		" WHERE "+avail+" >= 1 RETURNING tokens",
		l.name, client, l.burst-1, t,
		l.burst, t, l.interval,
		l.burst, t, l.interval)
}

// reserveBudget takes one token of client's bucket at now, in a statement
// of its own (see reserveQuery), and returns the tokens left;
// errBudgetEmpty when there is none.
func (s *store) reserveBudget(ctx context.Context, l budgetLimits, client string, now time.Time) (left float64, err error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	err = scanWritten(ctx, s.db.DB, s.db.QueryGen(), s.reserveQuery(l, client, now), &left)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, errBudgetEmpty
	case err != nil:
		return 0, notWritten("spending a client's budget", err)
	}
	return left, nil
}

// budgetWait reads how long until client has a whole token again, for the
// Retry-After of a refusal. A client with no row has a full bucket: 0.
func (s *store) budgetWait(ctx context.Context, l budgetLimits, client string, now time.Time) (time.Duration, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	var tokens, updated float64
	err := s.db.QueryRowContext(ctx, "SELECT tokens, updated_at FROM client_budgets WHERE budget = ? AND client = ?", l.name, client).
		Scan(&tokens, &updated)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("authn: reading a client's budget: %w", err)
	}
	avail := min(l.burst, tokens+max(0, unixSeconds(now)-updated)/l.interval)
	if avail >= 1 {
		return 0, nil
	}
	return time.Duration((1 - avail) * l.interval * float64(time.Second)), nil
}

// refundBudget gives client's token back, up to a full bucket: the attempt
// it was taken for succeeded, or failed through no fault of the client's.
// A row deleted meanwhile (refilled and swept) has nothing to give back to.
func (s *store) refundBudget(ctx context.Context, l budgetLimits, client string) error {
	if err := s.check(); err != nil {
		return err
	}
	least, _ := s.leastGreatest()
	_, err := s.db.ExecContext(ctx, "UPDATE client_budgets SET tokens = "+least+"(?, tokens + 1) WHERE budget = ? AND client = ?",
		l.burst, l.name, client)
	if err != nil {
		return notWritten("giving back a client's budget", err)
	}
	return nil
}

// sweepBudgets keeps the budget's rows bounded: it deletes those whose
// bucket has refilled at now (as good as none), and then, if more than
// maxRows are left, the fullest ones down to keep rows. The fullest
// are the clients that failed least of late: evicting one gives it back
// the little it spent, while the clients spending fast keep their rows.
// It returns how many rows it deleted.
func (s *store) sweepBudgets(ctx context.Context, l budgetLimits, now time.Time, maxRows, keep int) (int64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	t := unixSeconds(now)
	deleted, err := rowsAffected(s.db.ExecContext(ctx,
		"DELETE FROM client_budgets WHERE budget = ? AND tokens + (? - updated_at) / ? >= ?", l.name, t, l.interval, l.burst))
	if err != nil {
		return 0, notWritten("deleting refilled client budgets", err)
	}
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM client_budgets WHERE budget = ?", l.name).Scan(&n); err != nil {
		return deleted, fmt.Errorf("authn: counting client budgets: %w", err)
	}
	if n <= maxRows {
		return deleted, nil
	}
	evicted, err := rowsAffected(s.db.ExecContext(ctx,
		"DELETE FROM client_budgets WHERE budget = ? AND client IN (SELECT client FROM client_budgets WHERE budget = ?"+
			" ORDER BY tokens + (? - updated_at) / ? DESC LIMIT ?)", l.name, l.name, t, l.interval, n-keep))
	if err != nil {
		return deleted, notWritten("evicting client budgets", err)
	}
	return deleted + evicted, nil
}
