package authn

import (
	"context"
	"database/sql"
	"fmt"
	"runtime"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// IsPostgresURL reports whether dsn is a PostgreSQL URL (postgres:// or
// postgresql://) rather than a SQLite file path.
func IsPostgresURL(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// OpenPostgres connects to the PostgreSQL database at url (a postgres://
// URL as pgx reads it, e.g. "postgres://user@host/db?sslmode=verify-full")
// and returns an Authenticator over it; Close closes the pool. Several
// processes may share one database: the lockout and the sessions hold
// across them.
func OpenPostgres(ctx context.Context, url string, cfg Config) (*Authenticator, error) {
	sqldb, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("authn: open PostgreSQL: %w", err)
	}
	sqldb.SetMaxOpenConns(max(4, 2*runtime.GOMAXPROCS(0)))
	if err := sqldb.PingContext(ctx); err != nil {
		sqldb.Close()
		return nil, fmt.Errorf("authn: open PostgreSQL: %w", err)
	}
	a, err := New(ctx, bun.NewDB(sqldb, pgdialect.New()), cfg)
	if err != nil {
		sqldb.Close()
		return nil, err
	}
	a.ownsDB = true
	return a, nil
}
