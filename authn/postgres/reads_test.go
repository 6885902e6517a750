package postgres

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// testSchema makes a schema of its own for the test in the database of
// MINIMOST_TEST_POSTGRES, with a table kv (k, v, n) holding k0…k9 (v "vI",
// n I), and returns a URL that uses it and a pool to write with. (The
// package cannot use internal/testdb, which imports it.)
func testSchema(t *testing.T) (string, *pgxpool.Pool) {
	t.Helper()
	base := os.Getenv("MINIMOST_TEST_POSTGRES")
	if base == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("MINIMOST_TEST_POSTGRES is not set under CI")
		}
		t.Skip("set MINIMOST_TEST_POSTGRES to run the PostgreSQL tests")
	}
	ctx := context.Background()
	admin, err := pgxpool.New(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	schema := "authn_reads_" + strings.ToLower(rand.Text()[:12])
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	w, err := pgxpool.New(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	if _, err := w.Exec(ctx, `CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL, n DOUBLE PRECISION);
INSERT INTO kv SELECT 'k' || i, 'v' || i, i FROM generate_series(0, 9) AS i`); err != nil {
		t.Fatal(err)
	}
	return u.String(), w
}

func openReader(t *testing.T, url string, conns int, timeout time.Duration) *reader {
	t.Helper()
	r, err := newReader(url, conns, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

const kvRead = "SELECT v, n FROM kv WHERE k = $1"

// TestReaderRows: many goroutines reading at once, each its own keys and
// the same ones, some missing, all get their own row or sql.ErrNoRows.
func TestReaderRows(t *testing.T) {
	u, _ := testSchema(t)
	r := openReader(t, u, 2, time.Minute)
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 200 {
				k := (g + i) % 12 // k10, k11 do not exist
				var v string
				var n sql.NullFloat64
				err := r.Read(context.Background(), kvRead, fmt.Sprint("k", k), &v, &n)
				switch {
				case k >= 10 && !errors.Is(err, sql.ErrNoRows):
					t.Errorf("k%d: %v, want sql.ErrNoRows", k, err)
					return
				case k < 10 && (err != nil || v != fmt.Sprint("v", k) || n.Float64 != float64(k)):
					t.Errorf("k%d: %q %v %v", k, v, n, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestReaderSeesEachCommit: a read asked for after a commit sees it, while
// other goroutines read the same row all the time, so that reads share
// round trips: none is answered by a round trip sent before it was asked.
func TestReaderSeesEachCommit(t *testing.T) {
	u, w := testSchema(t)
	r := openReader(t, u, 2, time.Minute)
	ctx := context.Background()
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for !stop.Load() {
				var v string
				var n float64
				if err := r.Read(ctx, kvRead, "k1", &v, &n); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	defer wg.Wait()
	defer stop.Store(true)
	for i := 100; i < 400; i++ {
		if _, err := w.Exec(ctx, "UPDATE kv SET n = $1 WHERE k = 'k1'", i); err != nil {
			t.Fatal(err)
		}
		var v string
		var n float64
		if err := r.Read(ctx, kvRead, "k1", &v, &n); err != nil {
			t.Fatal(err)
		}
		if n != float64(i) {
			t.Fatalf("read after the commit of %d: %v", i, n)
		}
	}
}

// TestReaderCancel: a caller whose context ends while its read is in
// flight returns at once, with the context's error, and its destination
// is not written afterwards (the race detector would see it); the read
// goes on unseen and the connection stays usable.
func TestReaderCancel(t *testing.T) {
	u, _ := testSchema(t)
	r := openReader(t, u, 1, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	var v string
	err := r.Read(ctx, "SELECT $1::text FROM pg_sleep(1)", "slow", &v)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled read: %v", err)
	}
	if d := time.Since(start); d > 700*time.Millisecond {
		t.Fatalf("cancelled read returned after %v", d)
	}
	if v != "" {
		t.Fatalf("cancelled read's destination written: %q", v)
	}
	// The next read waits for the slow one on the one connection, and
	// works; the cancelled read's destination is still untouched after
	// its row came.
	var v2 string
	var n float64
	if err := r.Read(context.Background(), kvRead, "k2", &v2, &n); err != nil || v2 != "v2" {
		t.Fatalf("after a cancelled read: %q %v", v2, err)
	}
	if v != "" {
		t.Fatalf("cancelled read's destination written after it returned: %q", v)
	}
	// A context ended before: no read at all.
	if err := r.Read(ctx, kvRead, "k2", &v2, &n); !errors.Is(err, context.Canceled) {
		t.Fatalf("read with an ended context: %v", err)
	}
}

// TestReaderTimeout: a round trip that takes longer than the reader's
// timeout fails, rather than holding its callers and connection for good;
// the next read works on a new connection.
func TestReaderTimeout(t *testing.T) {
	u, _ := testSchema(t)
	r := openReader(t, u, 1, 200*time.Millisecond)
	var v string
	start := time.Now()
	err := r.Read(context.Background(), "SELECT $1::text FROM pg_sleep(5)", "slow", &v)
	if err == nil || errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("read past the timeout: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("read past the timeout returned after %v", d)
	}
	var n float64
	if err := r.Read(context.Background(), kvRead, "k3", &v, &n); err != nil || v != "v3" {
		t.Fatalf("after a timeout: %q %v", v, err)
	}
}

// TestReaderStatementError: a statement that fails in a round trip shared
// with others fails its caller; no read of that round trip is taken for a
// missing row, and the next round trips work.
func TestReaderStatementError(t *testing.T) {
	u, _ := testSchema(t)
	r := openReader(t, u, 1, time.Minute)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			var v string
			var n float64
			if g%4 == 0 {
				err := r.Read(context.Background(), "SELECT (1 / ($1::int - 1))::text, 0::float8", "1", &v, &n)
				if err == nil || errors.Is(err, sql.ErrNoRows) {
					t.Errorf("division by zero: %v", err)
				}
				return
			}
			err := r.Read(context.Background(), kvRead, "k4", &v, &n)
			if errors.Is(err, sql.ErrNoRows) || (err == nil && v != "v4") {
				t.Errorf("read beside a failing one: %q %v", v, err)
			}
		})
	}
	wg.Wait()
	var v string
	var n float64
	if err := r.Read(context.Background(), kvRead, "k4", &v, &n); err != nil || v != "v4" {
		t.Fatalf("after a failed statement: %q %v", v, err)
	}
}

// TestReaderUnreachable: with nothing listening, reads fail at once with
// an error that is not sql.ErrNoRows.
func TestReaderUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r := openReader(t, "postgres://nobody@"+addr+"/none?sslmode=disable&connect_timeout=2", 2, time.Minute)
	var v string
	err = r.Read(context.Background(), kvRead, "k1", &v)
	if err == nil || errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("read with the database unreachable: %v", err)
	}
}

// TestReaderClose: Close fails the reads that come after it, and a second
// Close does nothing.
func TestReaderClose(t *testing.T) {
	u, _ := testSchema(t)
	r := openReader(t, u, 2, time.Minute)
	var v string
	var n float64
	if err := r.Read(context.Background(), kvRead, "k5", &v, &n); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Read(context.Background(), kvRead, "k5", &v, &n); !errors.Is(err, errClosed) {
		t.Fatalf("read after Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestReaderTableChanged: a statement prepared before its table's columns
// changed fails once, as a failure (never sql.ErrNoRows), and is prepared
// again: the next read has the row.
func TestReaderTableChanged(t *testing.T) {
	u, w := testSchema(t)
	r := openReader(t, u, 1, time.Minute)
	ctx := context.Background()
	var v string
	var n float64
	if err := r.Read(ctx, kvRead, "k1", &v, &n); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Exec(ctx, "ALTER TABLE kv ALTER COLUMN v TYPE varchar(40)"); err != nil {
		t.Fatal(err)
	}
	failed := 0
	for range 3 {
		err := r.Read(ctx, kvRead, "k1", &v, &n)
		if err == nil {
			break
		}
		if errors.Is(err, sql.ErrNoRows) {
			t.Fatalf("read after the change: %v", err)
		}
		failed++
	}
	if failed > 1 || v != "v1" {
		t.Fatalf("after the change: %d reads failed, then %q", failed, v)
	}
}

// backendPID is a read of the PostgreSQL backend serving the reader's
// connection; i makes each its own statement.
func backendPID(t *testing.T, r *reader, i int) string {
	t.Helper()
	var pid, key string
	if err := r.Read(context.Background(), fmt.Sprintf("SELECT pg_backend_pid()::text, $1::text AS s%d", i), "x", &pid, &key); err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestReaderStatementsBounded: a connection prepares at most maxStatements
// statements, then is replaced by a new one, which frees them.
func TestReaderStatementsBounded(t *testing.T) {
	u, _ := testSchema(t)
	r := openReader(t, u, 1, time.Minute)
	first := backendPID(t, r, 0)
	for i := 1; i < maxStatements; i++ {
		if pid := backendPID(t, r, i); pid != first {
			t.Fatalf("statement %d on a new connection (%s, was %s)", i, pid, first)
		}
	}
	if pid := backendPID(t, r, maxStatements); pid == first {
		t.Fatalf("%d statements prepared on one connection", maxStatements+1)
	}
}

// TestReaderReconnects: when the server ends the reader's connection, a
// read fails (never sql.ErrNoRows) or is served on a new one, and the
// reads after it are served on a new connection.
func TestReaderReconnects(t *testing.T) {
	u, w := testSchema(t)
	r := openReader(t, u, 1, time.Minute)
	ctx := context.Background()
	pid := backendPID(t, r, 0)
	if _, err := w.Exec(ctx, "SELECT pg_terminate_backend($1::int)", pid); err != nil {
		t.Fatal(err)
	}
	var v string
	var n float64
	if err := r.Read(ctx, kvRead, "k2", &v, &n); errors.Is(err, sql.ErrNoRows) || (err == nil && v != "v2") {
		t.Fatalf("read on the ended connection: %q %v", v, err)
	}
	if got := backendPID(t, r, 0); got == pid {
		t.Fatalf("still on the ended connection %s", pid)
	}
	if err := r.Read(ctx, kvRead, "k2", &v, &n); err != nil || v != "v2" {
		t.Fatalf("after reconnecting: %q %v", v, err)
	}
}

// TestReaderSpill: while the reads come one at a time, a read that comes
// while another's round trip is out goes at once on the second
// connection, rather than wait for it.
func TestReaderSpill(t *testing.T) {
	u, _ := testSchema(t)
	r := openReader(t, u, 2, time.Minute)
	ctx := context.Background()
	slow := make(chan error, 1)
	go func() {
		var v string
		slow <- r.Read(ctx, "SELECT $1::text FROM pg_sleep(2)", "slow", &v)
	}()
	time.Sleep(200 * time.Millisecond) // the slow read is out
	start := time.Now()
	var v string
	var n float64
	if err := r.Read(ctx, kvRead, "k3", &v, &n); err != nil || v != "v3" {
		t.Fatalf("read beside a slow one: %q %v", v, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("a read beside a slow one took %v: it waited for the slow one", d)
	}
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
}

// TestReaderFailingStatementsBounded: a statement that keeps failing is
// prepared again after each failure, under a new name; the names a
// connection holds on the server stay bounded all the same.
func TestReaderFailingStatementsBounded(t *testing.T) {
	u, _ := testSchema(t)
	r := openReader(t, u, 1, time.Minute)
	ctx := context.Background()
	for range 3 * maxStatements {
		var v string
		var n float64
		err := r.Read(ctx, "SELECT (1 / ($1::int - 1))::text, 0::float8", "1", &v, &n)
		if err == nil || errors.Is(err, sql.ErrNoRows) {
			t.Fatalf("division by zero: %v", err)
		}
	}
	var count, key string
	if err := r.Read(ctx, "SELECT count(*)::text, $1::text FROM pg_prepared_statements", "x", &count, &key); err != nil {
		t.Fatal(err)
	}
	if c, _ := strconv.Atoi(count); c == 0 || c > maxStatements {
		t.Fatalf("%s statements prepared on the reader's connection (at most %d)", count, maxStatements)
	}
}
