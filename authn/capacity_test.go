package authn_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/minimost/minimost/middleware"
)

// postJSON posts body as JSON to url and returns the status.
func postJSON(t testing.TB, c *http.Client, url, body string) int {
	t.Helper()
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestThrottleSprayConcurrent: one address spraying a password over many
// accounts with 32 connections at once gets no more password checks than
// its budget (a burst of 20, and a frozen clock: nothing comes back).
// Before reservations, every request in flight passed the budget check
// before any failure was counted.
func TestThrottleSprayConcurrent(t *testing.T) {
	t.Parallel()
	const burst, conns, perConn = 20, 32, 4
	clk := testdb.NewClock()
	hasher := newCountingHasher(nil)
	a, _ := openTest(t, authn.Config{
		LockoutThreshold: -1,
		Hasher:           hasher,
		HashConcurrency:  conns,
		HTTP: authn.HTTPConfig{
			InsecureCookies: true,
			Throttle:        middleware.NewThrottle(middleware.ThrottleConfig{Burst: burst, Interval: time.Hour, Now: clk.Now}),
		},
	})
	ctx := context.Background()
	for i := range conns * perConn {
		if err := a.Register(ctx, fmt.Sprintf("user%d", i), goodPassword); err != nil {
			t.Fatal(err)
		}
	}
	// Hold every verification open a little, so that the requests overlap.
	hasher.SetOnVerify(func(string) { time.Sleep(20 * time.Millisecond) })
	before := hasher.TotalVerifies()
	srv := httptest.NewServer(a.LoginHandler())
	defer srv.Close()

	var checked, throttled atomic.Int64
	var wg sync.WaitGroup
	for c := range conns {
		wg.Go(func() {
			client := &http.Client{Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			for i := range perConn {
				body := fmt.Sprintf(`{"username":"user%d","password":"Winter2026!Winter2026"}`, c*perConn+i)
				switch st := postJSON(t, client, srv.URL, body); st {
				case http.StatusUnauthorized:
					checked.Add(1)
				case http.StatusTooManyRequests:
					throttled.Add(1)
				default:
					t.Errorf("status %d", st)
				}
			}
		})
	}
	wg.Wait()
	verifies := hasher.TotalVerifies() - before
	t.Logf("%d checked, %d throttled, %d verifications", checked.Load(), throttled.Load(), verifies)
	if checked.Load() > burst || verifies > burst {
		t.Fatalf("%d passwords checked (%d verifications) from one address, budget %d", checked.Load(), verifies, burst)
	}
}
