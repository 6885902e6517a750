package authn

import (
	"context"
	"fmt"
	"strings"

	"github.com/minimost/minimost/model"
	"github.com/uptrace/bun"
)

// createSchema creates the tables that are missing, in one transaction, and
// checks that an existing users table has the columns this package reads.
// It never alters or drops anything, so it is safe on the Python
// application's auth.db and on every start.
func (s *store) createSchema(ctx context.Context) error {
	db := s.db
	if s.sqlite() {
		if err := enableWAL(ctx, db); err != nil {
			return err
		}
	}
	err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		for _, m := range []any{(*model.User)(nil), (*model.Session)(nil)} {
			if _, err := tx.NewCreateTable().Model(m).IfNotExists().Exec(ctx); err != nil {
				return err
			}
		}
		for _, column := range []string{"username", "expires_at"} {
			_, err := tx.NewCreateIndex().Model((*model.Session)(nil)).IfNotExists().
				Index("sessions_" + column + "_idx").Column(column).Exec(ctx)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("authn: creating tables: %w", err)
	}
	var users []model.User
	err = db.NewSelect().Model(&users).Column("username", "password_hash", "failed_attempts", "lockout_until").
		Limit(1).Scan(ctx)
	if err != nil {
		return fmt.Errorf("authn: the users table is not the one this package expects: %w", err)
	}
	return nil
}

// enableWAL switches a SQLite database to write-ahead logging, which lets
// readers go on while one connection writes. The mode is stored in the file,
// so one switch serves every later connection. An in-memory database cannot
// use WAL and keeps its "memory" mode.
func enableWAL(ctx context.Context, db *bun.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return fmt.Errorf("authn: switching SQLite to WAL: %w", err)
	}
	switch strings.ToLower(mode) {
	case "wal", "memory":
		return nil
	}
	return fmt.Errorf("authn: SQLite stayed in journal mode %q instead of WAL (read-only file or directory?)", mode)
}
