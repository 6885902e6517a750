package testdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/minimost/minimost/authn"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/sqliteshim"
)

// StatementLog records the statements that reach the database driver, from
// whatever ran them: bun's query builder, bun.DB's raw methods, prepared
// statements or database/sql directly. A bun query hook would miss the last
// two. Each entry is the statement's first word in upper case, with
// "(0 rows)" added to a write that changed no row (for a write with
// RETURNING: that returned no row).
type StatementLog struct {
	mu    sync.Mutex
	stmts []string
}

// Take returns the statements since the last Take, separated by spaces.
func (l *StatementLog) Take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.Join(l.stmts, " ")
	l.stmts = nil
	return s
}

func (l *StatementLog) add(query string, changed bool) {
	kind := "?"
	if f := strings.Fields(query); len(f) > 0 {
		kind = strings.ToUpper(f[0])
	}
	if kind != "SELECT" && !changed {
		kind += "(0 rows)"
	}
	l.mu.Lock()
	l.stmts = append(l.stmts, kind)
	l.mu.Unlock()
}

// OpenCounting is Open on a connection pool whose driver connections record
// every statement in the returned log. It uses authn.New, so it has no file
// watch and SQLite's connections have only a busy timeout set.
func (db *DB) OpenCounting(t testing.TB, cfg authn.Config) (*authn.Authenticator, *StatementLog) {
	t.Helper()
	fill(&cfg)
	log := &StatementLog{}
	var bdb *bun.DB
	if db.Name == "postgres" {
		bdb = bun.NewDB(sql.OpenDB(countingConnector(t, "pgx", db.URL, log)), pgdialect.New())
	} else {
		dsn := "file:" + db.URL + "?_pragma=busy_timeout(5000)"
		bdb = bun.NewDB(sql.OpenDB(countingConnector(t, sqliteshim.ShimName, dsn, log)), sqlitedialect.New())
	}
	t.Cleanup(func() { bdb.Close() })
	a, err := authn.New(context.Background(), bdb, cfg)
	if err != nil {
		t.Fatalf("opening %s: %v", db.Name, err)
	}
	t.Cleanup(func() { a.Close() })
	log.Take() // New's own statements
	return a, log
}

// countingConnector wraps the named driver's connector for dsn.
func countingConnector(t testing.TB, driverName, dsn string, log *StatementLog) driver.Connector {
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
	return &connector{inner: inner, log: log}
}

// dsnConnector is a Connector for a driver without one of its own.
type dsnConnector struct {
	d   driver.Driver
	dsn string
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.d.Open(c.dsn) }
func (c dsnConnector) Driver() driver.Driver                        { return c.d }

type connector struct {
	inner driver.Connector
	log   *StatementLog
}

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	cn, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &conn{inner: cn, log: c.log}, nil
}

func (c *connector) Driver() driver.Driver { return c.inner.Driver() }

// conn records what runs on a driver connection. Both drivers the tests
// use implement the context interfaces; without them it answers ErrSkip
// or an error, never running anything unrecorded.
type conn struct {
	inner driver.Conn
	log   *StatementLog
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
	return &stmt{inner: s, query: query, log: c.log}, nil
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
	return b.BeginTx(ctx, opts)
}

func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := c.inner.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	rows, err := q.QueryContext(ctx, query, args)
	return c.log.rows(query, rows, err)
}

func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := c.inner.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	res, err := e.ExecContext(ctx, query, args)
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

type stmt struct {
	inner driver.Stmt
	query string
	log   *StatementLog
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
	res, err := e.ExecContext(ctx, args)
	return s.log.result(s.query, res, err)
}

func (s *stmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := s.inner.(driver.StmtQueryContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	rows, err := q.QueryContext(ctx, args)
	return s.log.rows(s.query, rows, err)
}

// result records an Exec once its rows affected are known.
func (l *StatementLog) result(query string, res driver.Result, err error) (driver.Result, error) {
	if err != nil {
		l.add(query, false)
		return nil, err
	}
	n, nerr := res.RowsAffected()
	l.add(query, nerr != nil || n > 0)
	return res, nil
}

// rows records a Query when its rows are closed, knowing whether any came.
func (l *StatementLog) rows(query string, r driver.Rows, err error) (driver.Rows, error) {
	if err != nil {
		l.add(query, false)
		return nil, err
	}
	return &rows{Rows: r, query: query, log: l}, nil
}

type rows struct {
	driver.Rows
	query string
	log   *StatementLog
	some  bool
}

func (r *rows) Next(dest []driver.Value) error {
	err := r.Rows.Next(dest)
	if err == nil {
		r.some = true
	}
	return err
}

func (r *rows) Close() error {
	r.log.add(r.query, r.some)
	return r.Rows.Close()
}
