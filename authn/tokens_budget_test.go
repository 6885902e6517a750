package authn_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/minimost/minimost/middleware"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// TestBearerInFlightSpendsNoBudget: good Bearer tokens in flight at once
// from one client, more of them than the client's failure budget, all get
// through. A good token is no failure: it must not need budget while it is
// checked, or an API client making parallel requests (or many behind one
// NAT) gets 429 with a good token. The requests are held in flight by a
// lock on the token's row, which the write of its first use waits for;
// PostgreSQL tells when they all wait.
//
// Each request waiting at the lock holds a connection, so the Authenticator
// has a pool of exactly n, whatever the machine's GOMAXPROCS; and its
// connections carry an application name of this test's own, so that only
// they are counted, not those of the tests beside it on the same database.
func TestBearerInFlightSpendsNoBudget(t *testing.T) {
	t.Parallel()
	const n, budget = 6, 3
	db := testdb.Postgres(t)
	app := "bearer_in_flight_" + strings.ToLower(rand.Text()[:12])
	u, err := url.Parse(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", app) // pgx sends it as a run-time parameter
	u.RawQuery = q.Encode()
	pool, err := sql.Open("pgx", u.String())
	if err != nil {
		t.Fatal(err)
	}
	pool.SetMaxOpenConns(n)
	a, err := authn.NewOwned(context.Background(), bun.NewDB(pool, pgdialect.New()), authn.Config{
		Hasher: fastHasher, Logger: slog.New(slog.DiscardHandler), LockoutThreshold: 3,
		HTTP: authn.HTTPConfig{
			Throttle: middleware.NewThrottle(middleware.ThrottleConfig{Burst: budget, Interval: time.Hour}),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	s := serveTokenSite(t, a)
	token := newToken(t, s.a, "alice", "ci")
	ctx := context.Background()
	tx, err := db.Raw.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SELECT 1 FROM tokens FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	c := clientFrom("127.0.0.2")
	var wg sync.WaitGroup
	got := make(chan answer, n)
	for range n {
		wg.Go(func() { got <- s.get(t, c, bearer(token)) })
	}
	// Wait until every request waits for the lock, or one has answered
	// (it did not wait: a refusal), or a deadline far beyond what it
	// takes, so that a test that cannot hold them all fails instead of
	// hanging.
	waiting := 0
	for deadline := time.Now().Add(30 * time.Second); waiting < n && len(got) == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		if err := db.Raw.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE application_name = ? AND wait_event_type = 'Lock'`, app).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	answered := len(got)
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(got)
	for a := range got {
		wantUser(t, "a good token in flight with others", a, "alice")
	}
	if answered == 0 && waiting < n {
		t.Fatalf("only %d of %d requests waited for the lock at once after 30 s: nothing was tested", waiting, n)
	}
}
