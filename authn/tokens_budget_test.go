package authn_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/minimost/minimost/middleware"
)

// TestBearerInFlightSpendsNoBudget: good Bearer tokens in flight at once
// from one client, more of them than the client's failure budget, all get
// through. A good token is no failure: it must not need budget while it is
// checked, or an API client making parallel requests (or many behind one
// NAT) gets 429 with a good token. The requests are held in flight by a
// lock on the token's row, which the write of its first use waits for;
// PostgreSQL tells when they all wait.
func TestBearerInFlightSpendsNoBudget(t *testing.T) {
	t.Parallel()
	db := testdb.Postgres(t)
	s := newTokenSite(t, db, authn.Config{HTTP: authn.HTTPConfig{
		Throttle: middleware.NewThrottle(middleware.ThrottleConfig{Burst: 3, Interval: time.Hour}),
	}})
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
	const n = 6
	c := clientFrom("127.0.0.2")
	var wg sync.WaitGroup
	got := make(chan answer, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got <- s.get(t, c, bearer(token))
		}()
	}
	// Wait until every request waits for the lock, or until one answered.
	for waiting := 0; waiting < n && len(got) == 0; {
		time.Sleep(10 * time.Millisecond)
		if err := db.Raw.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(got)
	for a := range got {
		wantUser(t, "a good token in flight with others", a, "alice")
	}
}
