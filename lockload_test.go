package minimost_test

import (
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
)

// TestLockAcrossInstancesUnderLoad: instance two serves alice's cached
// Basic credential, her session and her app token to 24 clients at once,
// without pause; instance one, on another pool over the same database,
// locks her. Every request that starts after Lock returned is refused
// (401) on instance two, whatever round trip or memo its read could have
// shared with requests that started before; none fails with an error.
// On PostgreSQL this is the batched reader of authn/postgres under load.
func TestLockAcrossInstancesUnderLoad(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		one, two := newSite(t, db, authn.Config{}), newSite(t, db, authn.Config{})
		ctx := context.Background()
		token, err := one.a.CreateToken(ctx, "alice", "load")
		if err != nil {
			t.Fatal(err)
		}
		c := one.client()
		if r := one.loginForm(c, "alice", alicePassword, ""); r.status != 303 {
			t.Fatalf("login: %d", r.status)
		}
		cookie := c.Jar.Cookies(mustURL(t, one.srv.URL))[0]
		kinds := []struct {
			name, path, header, value string
		}{
			{"basic", "/basic/x", "Authorization", basic("alice", alicePassword)},
			{"session", "/app/", "Cookie", cookie.Name + "=" + cookie.Value},
			{"token", "/basic/x", "Authorization", "Bearer " + token},
		}
		for _, k := range kinds {
			if r := two.do(nil, "GET", k.path, "", "", k.header, k.value, "Accept", "application/json"); r.status != 200 {
				t.Fatalf("%s on instance two before the lock: %d", k.name, r.status)
			}
		}

		var (
			locked atomic.Bool  // set once Lock has returned
			before atomic.Int64 // requests answered 200 before the lock
			after  [3]atomic.Int64
			stop   atomic.Bool
			wg     sync.WaitGroup
		)
		for g := range 24 {
			k := kinds[g%len(kinds)]
			client := two.srv.Client() // kept-alive connections, as a busy proxy's
			wg.Go(func() {
				for !stop.Load() {
					wasLocked := locked.Load() // before the request starts
					req, err := http.NewRequest("GET", two.srv.URL+k.path, nil)
					if err != nil {
						t.Error(err)
						return
					}
					req.Header.Set(k.header, k.value)
					req.Header.Set("Accept", "application/json")
					resp, err := client.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					switch {
					case wasLocked && resp.StatusCode != 401:
						t.Errorf("%s started after the lock on instance one: %d, want 401", k.name, resp.StatusCode)
						return
					case wasLocked:
						after[g%len(kinds)].Add(1)
					case resp.StatusCode == 200:
						before.Add(1)
					case resp.StatusCode != 401: // 401: the lock, not yet seen to return
						t.Errorf("%s before the lock: %d", k.name, resp.StatusCode)
						return
					}
				}
			})
		}
		// Lock once the load runs, then let it run on.
		deadline := time.Now().Add(20 * time.Second)
		for before.Load() < 200 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if err := one.a.Lock(ctx, "alice", time.Hour); err != nil {
			t.Fatal(err)
		}
		locked.Store(true)
		for time.Now().Before(deadline) && (after[0].Load() < 100 || after[1].Load() < 100 || after[2].Load() < 100) {
			time.Sleep(10 * time.Millisecond)
		}
		stop.Store(true)
		wg.Wait()
		t.Logf("%d requests answered before the lock, %d/%d/%d refused after it", before.Load(), after[0].Load(), after[1].Load(), after[2].Load())
		if before.Load() < 200 {
			t.Errorf("only %d requests answered before the lock: no load", before.Load())
		}
		for i, k := range kinds {
			if n := after[i].Load(); n < 100 {
				t.Errorf("%s: only %d requests after the lock", k.name, n)
			}
		}
	})
}
