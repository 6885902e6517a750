package testdb

import (
	"database/sql/driver"
	"strings"
	"sync"
	"testing"

	"github.com/minimost/minimost/authn"
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
	if l == nil {
		return
	}
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
	log := &StatementLog{}
	a := db.openWrapped(t, cfg, log, nil)
	log.Take() // New's own statements
	return a, log
}

// result records an Exec once its rows affected are known.
func (l *StatementLog) result(query string, res driver.Result, err error) (driver.Result, error) {
	if l == nil {
		return res, err
	}
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
	if l == nil {
		return r, err
	}
	if err != nil {
		l.add(query, false)
		return nil, err
	}
	return &rows{Rows: r, query: query, log: l}, nil
}

// rows records its statement when closed.
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
