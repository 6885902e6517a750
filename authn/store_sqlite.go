package authn

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"
)

// The statements about a SQLite database itself, rather than its rows,
// that the reads from memory (fastpath.go) and the -wal watch (walwatch.go)
// make on pools and connections of their own: which file it is, how its
// connections read, its journal mode, a checkpoint.

// sqliteMainFile returns the path SQLite has open as db's main database
// (symbolic links resolved), or "" for a database in memory.
func sqliteMainFile(ctx context.Context, db bun.IConn) (string, error) {
	var path string
	err := db.QueryRowContext(ctx, "SELECT file FROM pragma_database_list WHERE name = 'main'").Scan(&path)
	if err != nil {
		return "", fmt.Errorf("finding the database file: %w", err)
	}
	return path, nil
}

// readsUncommitted reports whether db's connections read rows that other
// connections have not committed (read_uncommitted, with a shared cache).
func readsUncommitted(ctx context.Context, db bun.IConn) (bool, error) {
	var dirty int
	if err := db.QueryRowContext(ctx, "PRAGMA read_uncommitted").Scan(&dirty); err != nil {
		return false, fmt.Errorf("reading read_uncommitted: %w", err)
	}
	return dirty != 0, nil
}

// setBusyTimeout sets how long conn waits for a lock another connection
// holds.
func setBusyTimeout(ctx context.Context, conn bun.IConn, d time.Duration) error {
	_, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", d.Milliseconds()))
	return err
}

// checkWALConn makes conn, a connection of its own, wait for locks as the
// pool's do (for a checkpoint or a recovery by another process), reads
// once, and makes sure the database is in WAL mode.
func checkWALConn(ctx context.Context, conn bun.IConn) error {
	if err := setBusyTimeout(ctx, conn, busyTimeoutMillis*time.Millisecond); err != nil {
		return fmt.Errorf("setting the busy timeout: %w", err)
	}
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master").Scan(new(int)); err != nil {
		return fmt.Errorf("reading the database: %w", err)
	}
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("reading the journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode %q, not WAL", mode)
	}
	return nil
}

// checkpointTruncate copies every frame of the -wal into the database file
// through conn and empties the -wal; done is false when another connection
// kept it from finishing.
func checkpointTruncate(ctx context.Context, conn bun.IConn) (done bool, err error) {
	var busy, frames, copied int
	err = conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &frames, &copied)
	if err != nil {
		return false, fmt.Errorf("checkpoint: %w", err)
	}
	return busy == 0, nil
}
