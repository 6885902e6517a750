package minimost_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/minimost/minimost/internal/testdb"
)

// TestLoginFloodStaysBounded: 1,000 concurrent logins against the running
// examples/login server (default hasher) leave it under a bounded peak
// memory, and /healthz, which needs no authentication, keeps answering
// while they queue for hashing slots (for up to -hash-wait, 2 s here: the
// 1,000 requests are all in the server at once either way, and the 20
// probes take about 1 s). Not parallel: it measures latency, and the other
// floods of this package would be part of it.
func TestLoginFloodStaysBounded(t *testing.T) {
	s := startExample(t, "login", "-demo-password", "the demo account's passphrase", "-lockout", "-1", "-hash-wait", "2s")
	pid := s.pid

	var wg sync.WaitGroup
	start := make(chan struct{})
	statuses := make(chan int, 1000)
	for i := range 1000 {
		c := clientFrom(fmt.Sprintf("127.0.%d.%d", 1+i/200, 1+i%200))
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			st, err := tryForm(c, s.base, "demo", fmt.Sprintf("guess %d", i))
			if err != nil {
				t.Error(err)
			}
			statuses <- st
		}()
	}
	floodStart := time.Now()
	close(start)

	// Meanwhile, an unauthenticated route.
	var slowest time.Duration
	for range 20 {
		time.Sleep(50 * time.Millisecond)
		begin := time.Now()
		resp, err := http.Get(s.base + "/healthz")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("/healthz during the flood: %v %v", resp, err)
		}
		resp.Body.Close()
		slowest = max(slowest, time.Since(begin))
	}
	probed := time.Since(floodStart)
	wg.Wait()
	flood := time.Since(floodStart)
	close(statuses)
	counts := map[int]int{}
	for st := range statuses {
		counts[st]++
	}
	peak, err := testdb.PeakRSSMiB(pid)
	if err != nil {
		t.Skip("cannot read the server's peak RSS:", err)
	}
	t.Logf("1,000 logins: %v in %v; /healthz slowest of 20 during the flood's first %v: %v; server peak RSS %.1f MiB", counts, flood, probed, slowest, peak)
	if counts[401]+counts[503] != 1000 {
		t.Errorf("answers: %v, want only 401 and 503", counts)
	}
	// Generous bounds: they catch starvation (all 1,000 hashes would take
	// about 50 s) or unbounded growth, not noise.
	if slowest > 5*time.Second {
		t.Errorf("/healthz took %v during the flood", slowest)
	}
	if peak > 256 {
		t.Errorf("server peak RSS %.1f MiB, want under 256", peak)
	}
}
