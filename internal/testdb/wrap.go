package testdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"testing"

	"github.com/minimost/minimost/authn"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/sqliteshim"
)

// openWrapped opens an Authenticator with authn.New over a pool of its own
// whose connections record statements in log and fail those faults chooses
// (either may be nil).
func (db *DB) openWrapped(t testing.TB, cfg authn.Config, log *StatementLog, faults *Faults) *authn.Authenticator {
	t.Helper()
	fill(&cfg)
	var bdb *bun.DB
	if db.Name == "postgres" {
		bdb = bun.NewDB(sql.OpenDB(wrapConnector(t, "pgx", db.URL, log, faults)), pgdialect.New())
	} else {
		dsn := "file:" + db.URL + "?_pragma=busy_timeout(5000)"
		bdb = bun.NewDB(sql.OpenDB(wrapConnector(t, sqliteshim.ShimName, dsn, log, faults)), sqlitedialect.New())
	}
	t.Cleanup(func() { bdb.Close() })
	a, err := authn.New(context.Background(), bdb, cfg)
	if err != nil {
		t.Fatalf("opening %s: %v", db.Name, err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// wrapConnector wraps the named driver's connector for dsn in connections
// that record every statement in log and fail the statements faults
// chooses; either may be nil.
func wrapConnector(t testing.TB, driverName, dsn string, log *StatementLog, faults *Faults) driver.Connector {
	t.Helper()
	probe, err := sql.Open(driverName, dsn)
	if err != nil {
		t.Fatal(err)
	}
	d := probe.Driver()
	probe.Close()
	var inner driver.Connector = dsnConnector{d, dsn}
	if dc, ok := d.(driver.DriverContext); ok {
		if inner, err = dc.OpenConnector(dsn); err != nil {
			t.Fatal(err)
		}
	}
	return &connector{inner: inner, log: log, faults: faults, postgres: driverName == "pgx"}
}

// dsnConnector is a Connector for a driver without one of its own.
type dsnConnector struct {
	d   driver.Driver
	dsn string
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.d.Open(c.dsn) }
func (c dsnConnector) Driver() driver.Driver                        { return c.d }

type connector struct {
	inner    driver.Connector
	log      *StatementLog
	faults   *Faults
	postgres bool
}

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	cn, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &conn{inner: cn, log: c.log, faults: c.faults, postgres: c.postgres}, nil
}

func (c *connector) Driver() driver.Driver { return c.inner.Driver() }

// conn records what runs on a driver connection and injects the faults
// chosen. Both drivers the tests use implement the context interfaces;
// without them it answers ErrSkip or an error, never running anything
// unrecorded. database/sql uses a connection from one goroutine at a time,
// so its fields need no lock.
type conn struct {
	inner    driver.Conn
	log      *StatementLog
	faults   *Faults
	postgres bool
	// inTx is set while a transaction begun through this conn is open;
	// doomed when a statement in it was chosen to fail at the commit.
	inTx, doomed bool
}

func (c *conn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	p, ok := c.inner.(driver.ConnPrepareContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	s, err := p.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	return &stmt{inner: s, query: query, conn: c}, nil
}

func (c *conn) Close() error { return c.inner.Close() }

func (c *conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	b, ok := c.inner.(driver.ConnBeginTx)
	if !ok {
		return nil, driver.ErrSkip
	}
	c.log.add("BEGIN", true)
	inner, err := b.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	c.inTx, c.doomed = true, false
	return &tx{inner: inner, conn: c}, nil
}

func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := c.inner.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	return c.query(ctx, query, func() (driver.Rows, error) { return q.QueryContext(ctx, query, args) })
}

func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := c.inner.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	return c.exec(ctx, query, func() (driver.Result, error) { return e.ExecContext(ctx, query, args) })
}

// query runs a query, through the fault injector and the log.
func (c *conn) query(ctx context.Context, query string, run func() (driver.Rows, error)) (driver.Rows, error) {
	end, err := c.startFault(ctx, query)
	if err != nil {
		return nil, err
	}
	r, err := run()
	if end != nil {
		if err != nil {
			return nil, end(err)
		}
		r = &faultyRows{Rows: r, end: end}
	}
	return c.log.rows(query, r, err)
}

// exec runs a statement, through the fault injector and the log.
func (c *conn) exec(ctx context.Context, query string, run func() (driver.Result, error)) (driver.Result, error) {
	end, err := c.startFault(ctx, query)
	if err != nil {
		return nil, err
	}
	res, err := run()
	if end != nil {
		if err = end(err); err != nil {
			res = nil
		}
	}
	return c.log.result(query, res, err)
}

func (c *conn) ResetSession(ctx context.Context) error {
	if r, ok := c.inner.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *conn) IsValid() bool {
	v, ok := c.inner.(driver.Validator)
	return !ok || v.IsValid()
}

func (c *conn) CheckNamedValue(nv *driver.NamedValue) error {
	if n, ok := c.inner.(driver.NamedValueChecker); ok {
		return n.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

// tx is a transaction of a conn, which the fault injector may fail at its
// commit.
type tx struct {
	inner driver.Tx
	conn  *conn
}

func (t *tx) Commit() error {
	doomed := t.conn.doomed
	t.conn.inTx, t.conn.doomed = false, false
	if doomed {
		return errors.Join(ErrInjected, t.inner.Rollback())
	}
	return t.inner.Commit()
}

func (t *tx) Rollback() error {
	t.conn.inTx, t.conn.doomed = false, false
	return t.inner.Rollback()
}

type stmt struct {
	inner driver.Stmt
	query string
	conn  *conn
}

func (s *stmt) Close() error  { return s.inner.Close() }
func (s *stmt) NumInput() int { return s.inner.NumInput() }

// Exec and Query are the pre-context methods, which database/sql does not
// call on a statement with the context ones.
func (s *stmt) Exec([]driver.Value) (driver.Result, error) { return nil, errLegacy }
func (s *stmt) Query([]driver.Value) (driver.Rows, error)  { return nil, errLegacy }

var errLegacy = errors.New("testdb: a statement without context")

func (s *stmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	e, ok := s.inner.(driver.StmtExecContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	return s.conn.exec(ctx, s.query, func() (driver.Result, error) { return e.ExecContext(ctx, args) })
}

func (s *stmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := s.inner.(driver.StmtQueryContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	return s.conn.query(ctx, s.query, func() (driver.Rows, error) { return q.QueryContext(ctx, args) })
}
