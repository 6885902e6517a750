// Package postgres opens an [authn.Authenticator] over a PostgreSQL
// database, through the pgx driver. It is a package of its own so that a
// program that keeps its users in SQLite ([authn.Open]) links no
// PostgreSQL driver: only programs that import this package do.
//
// Several processes or machines may share one database: the lockout and
// the sessions hold across them.
package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"runtime"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/internal/hotread"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// Open connects to the PostgreSQL database at url (a postgres:// or
// postgresql:// URL, or a key=value string, as pgx reads them, e.g.
// "postgres://user@host/db?sslmode=verify-full") and returns an
// Authenticator over it, made by [authn.NewOwned]: its Close closes its
// connections. Open fails when the database cannot be reached.
//
// It opens two sets of connections. The reads made on every authenticated
// request (the user behind a cached Basic credential, a session, an app
// token) run on two pgx connections of their own: the reads that wait
// while one round trip is out go together in the next, prepared
// statements sent in one write, so that a busy server makes one round trip
// for many requests (each read is still sent after its request asked, and
// sees every commit made before); the second connection serves only while
// the reads come a few at a time, so that one never waits for another's
// round trip. Everything else runs through database/sql and bun on a pool
// of at most max(4, 2×GOMAXPROCS) connections, all kept open once opened.
// So Open holds at most max(4, 2×GOMAXPROCS) + 2 connections.
//
// To use a pool of the application's own, give authn.New a *bun.DB on
// pgdialect and a database/sql pool of the "pgx" driver instead; its hot
// reads are then prepared statements on that pool, one round trip each.
func Open(ctx context.Context, url string, cfg authn.Config) (*authn.Authenticator, error) {
	sqldb, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("authn/postgres: open: %w", err)
	}
	conns := max(4, 2*runtime.GOMAXPROCS(0))
	sqldb.SetMaxOpenConns(conns)
	// As many kept open as may be open: database/sql keeps two by default,
	// and closed the others after each burst, only to open them again.
	sqldb.SetMaxIdleConns(conns)
	if err := sqldb.PingContext(ctx); err != nil {
		sqldb.Close()
		return nil, fmt.Errorf("authn/postgres: open: %w", err)
	}
	reads, err := newReader(url, readConns, readTimeout)
	if err != nil {
		sqldb.Close()
		return nil, fmt.Errorf("authn/postgres: open: %w", err)
	}
	a, err := authn.NewOwned(hotread.With(ctx, reads), bun.NewDB(sqldb, pgdialect.New()), cfg)
	if err != nil {
		reads.Close()
		return nil, err
	}
	return a, nil
}
