package testdb

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/minimost/minimost/authn"
)

// ErrInjected is the error of every fault Faults injects.
var ErrInjected = errors.New("testdb: injected fault: the write could not be committed (as on a full disk)")

// Faults makes chosen writes fail where a full disk or an I/O error fails
// them: at their commit, after they have run and returned their rows.
//
// A chosen statement outside a transaction runs in one of the injector's
// own, which is rolled back when the statement ends: its rows come back as
// they would, and the error is reported where a driver reports the end of
// a statement (the result of an Exec, the Close of a query's rows), so a
// caller that drops that error takes a write that never happened for a
// done one. Inside a transaction, a statement chosen by Fail dooms the
// transaction, whose Commit then rolls back and fails; one chosen by
// FailStatement fails at its own end, rolled back to a savepoint, as SQLite
// rolls back a statement that fails, and the transaction goes on.
//
// A Faults chooses nothing until told; it is safe for concurrent use.
type Faults struct {
	mu       sync.Mutex
	match    func(query string) bool
	atEnd    bool // fail chosen statements in a transaction at their end
	injected int
}

// Fail chooses every statement whose SQL contains substr (case-sensitive;
// "" chooses every INSERT, UPDATE and DELETE), until Clear.
func (f *Faults) Fail(substr string) { f.choose(substr, false) }

// FailStatement is Fail, but a chosen statement in a transaction fails at
// its own end rather than at the transaction's commit.
func (f *Faults) FailStatement(substr string) { f.choose(substr, true) }

func (f *Faults) choose(substr string, atEnd bool) {
	match := func(q string) bool { return strings.Contains(q, substr) }
	if substr == "" {
		match = isWrite
	}
	f.mu.Lock()
	f.match, f.atEnd = match, atEnd
	f.mu.Unlock()
}

// Clear chooses nothing any more.
func (f *Faults) Clear() {
	f.mu.Lock()
	f.match = nil
	f.mu.Unlock()
}

// Injected returns how many faults were injected so far: a test checks it,
// so that a fault that never fired cannot pass for a fault handled.
func (f *Faults) Injected() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.injected
}

// isWrite reports whether query writes rows: an INSERT, UPDATE or DELETE.
func isWrite(query string) bool {
	word, _, _ := strings.Cut(strings.TrimSpace(query), " ")
	switch strings.ToUpper(word) {
	case "INSERT", "UPDATE", "DELETE":
		return true
	}
	return false
}

// chosen reports whether query fails, and how; it counts the fault.
func (f *Faults) chosen(query string) (chosen, atEnd bool) {
	if f == nil {
		return false, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.match == nil || !f.match(query) {
		return false, false
	}
	f.injected++
	return true, f.atEnd
}

// savepoint is the name of the injector's savepoints.
const savepoint = "testdb_fault"

// startFault prepares the failure of query, if it is chosen, before it
// runs, and returns what ends it (nil when it is not chosen): end takes
// the statement's own error and returns the one to report.
func (c *conn) startFault(ctx context.Context, query string) (end func(error) error, err error) {
	chosen, atEnd := c.faults.chosen(query)
	switch {
	case !chosen:
		return nil, nil
	case c.inTx && !atEnd:
		c.doomed = true
		return func(err error) error { return err }, nil
	case c.inTx:
		if err := c.run(ctx, "SAVEPOINT "+savepoint); err != nil {
			return nil, err
		}
		return func(err error) error {
			back := c.run(context.Background(), "ROLLBACK TO SAVEPOINT "+savepoint)
			return errors.Join(cmpOr(err, ErrInjected), back, c.run(context.Background(), "RELEASE SAVEPOINT "+savepoint))
		}, nil
	}
	begin := "BEGIN IMMEDIATE" // SQLite: take the write lock now, waiting for it
	if c.postgres {
		begin = "BEGIN"
	}
	if err := c.run(ctx, begin); err != nil {
		return nil, err
	}
	return func(err error) error {
		return errors.Join(cmpOr(err, ErrInjected), c.run(context.Background(), "ROLLBACK"))
	}, nil
}

// cmpOr returns err, or instead when err is nil.
func cmpOr(err, instead error) error {
	if err != nil {
		return err
	}
	return instead
}

// run runs a statement of the injector's own on the driver connection.
func (c *conn) run(ctx context.Context, query string) error {
	e, ok := c.inner.(driver.ExecerContext)
	if !ok {
		return fmt.Errorf("testdb: the driver connection cannot run %s", query)
	}
	_, err := e.ExecContext(ctx, query, nil)
	return err
}

// faultyRows are the rows of a chosen query: end runs when they close.
type faultyRows struct {
	driver.Rows
	end  func(error) error
	done bool
}

func (r *faultyRows) Close() error {
	err := r.Rows.Close()
	if r.done {
		return err
	}
	r.done = true
	return r.end(err)
}

// OpenFaulty is Open on a connection pool whose driver connections fail
// the statements that the returned Faults chooses (none at first). It uses
// authn.New, so it has no file watch and SQLite's connections have only a
// busy timeout set.
func (db *DB) OpenFaulty(t testing.TB, cfg authn.Config) (*authn.Authenticator, *Faults) {
	t.Helper()
	faults := &Faults{}
	return db.openWrapped(t, cfg, nil, faults), faults
}
