// Command pgread measures what a bare prepared point read costs the client
// on PostgreSQL: G goroutines read one row by primary key for a while,
// through a pool of C connections, and it prints reads per second and the
// process's CPU time (user + system, from getrusage) per read. It is the
// driver's floor that scripts/bench-postgres.sh compares a cached request
// with (issue 27).
//
//	go run ./scripts/pgread -db postgres://… [-mode sql|sql-nocancel|pgxpool] [-goroutines 16] [-conns 4] [-d 4s]
//
// It creates a table of its own (pgread_users) in that database, and drops
// it at the end.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

const query = "SELECT password_hash, lockout_until FROM pgread_users WHERE username = $1"

func main() {
	db := flag.String("db", "", "PostgreSQL URL")
	mode := flag.String("mode", "sql", "sql (database/sql + pgx stdlib, cancellable context), sql-nocancel (the same, a context that cannot be cancelled), pgxpool")
	goroutines := flag.Int("goroutines", 16, "concurrent readers")
	conns := flag.Int("conns", 4, "pool size")
	d := flag.Duration("d", 4*time.Second, "how long to read")
	flag.Parse()
	if err := run(*db, *mode, *goroutines, *conns, *d); err != nil {
		fmt.Fprintln(os.Stderr, "pgread:", err)
		os.Exit(1)
	}
}

func run(url, mode string, goroutines, conns int, d time.Duration) error {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS pgread_users (username TEXT PRIMARY KEY, password_hash TEXT NOT NULL, lockout_until DOUBLE PRECISION);
INSERT INTO pgread_users VALUES ('demo', 'pbkdf2:sha256:600000$abcdefghijklmnop$0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef', NULL) ON CONFLICT DO NOTHING`); err != nil {
		return err
	}
	defer pool.Exec(ctx, "DROP TABLE pgread_users")
	read, closeRead, err := reader(ctx, url, mode, conns)
	if err != nil {
		return err
	}
	defer closeRead()
	for range conns { // warm every connection up
		if err := read(ctx); err != nil {
			return err
		}
	}
	var reads atomic.Int64
	var failed atomic.Pointer[error]
	stop := time.Now().Add(d)
	start, cpu0 := time.Now(), cpuTime()
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			rctx, cancel := context.WithCancel(ctx) // as net/http's request context
			defer cancel()
			for time.Now().Before(stop) {
				if err := read(rctx); err != nil {
					failed.Store(&err)
					return
				}
				reads.Add(1)
			}
		})
	}
	wg.Wait()
	wall, cpu := time.Since(start), cpuTime()-cpu0
	if err := failed.Load(); err != nil {
		return *err
	}
	n := reads.Load()
	fmt.Printf("%s, %d goroutines, %d connections: %.0f reads/s, %.1f µs CPU per read\n",
		mode, goroutines, conns, float64(n)/wall.Seconds(), float64(cpu.Microseconds())/float64(n))
	return nil
}

// reader returns a function that makes one read in the given mode.
func reader(ctx context.Context, url, mode string, conns int) (func(context.Context) error, func(), error) {
	switch mode {
	case "sql", "sql-nocancel":
		db, err := sql.Open("pgx", url)
		if err != nil {
			return nil, nil, err
		}
		db.SetMaxOpenConns(conns)
		db.SetMaxIdleConns(conns)
		stmt, err := db.PrepareContext(ctx, query)
		if err != nil {
			return nil, nil, errors.Join(err, db.Close())
		}
		return func(ctx context.Context) error {
			if mode == "sql-nocancel" {
				ctx = context.WithoutCancel(ctx)
			}
			var hash string
			var until sql.NullFloat64
			return stmt.QueryRowContext(ctx, "demo").Scan(&hash, &until)
		}, func() { stmt.Close(); db.Close() }, nil
	case "pgxpool":
		cfg, err := pgxpool.ParseConfig(url)
		if err != nil {
			return nil, nil, err
		}
		cfg.MaxConns, cfg.MinConns = int32(conns), int32(conns)
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return nil, nil, err
		}
		return func(ctx context.Context) error {
			var hash string
			var until sql.NullFloat64
			return pool.QueryRow(ctx, query, "demo").Scan(&hash, &until)
		}, pool.Close, nil
	}
	return nil, nil, fmt.Errorf("unknown mode %q", mode)
}

var _ = stdlib.GetDefaultDriver // registers the "pgx" driver

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
