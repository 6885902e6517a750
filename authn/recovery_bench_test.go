package authn_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
)

// countingMailer counts the mails it is given and sends none.
type countingMailer struct{ n atomic.Int64 }

func (m *countingMailer) Send(context.Context, authn.MailMessage) error {
	m.n.Add(1)
	return nil
}

// BenchmarkResetRequestTiming measures what a client can time of a reset
// request: the answer of POST /reset for a name with an account and a
// verified address (which gets a mail) against one that names nobody,
// interleaved, one pair per iteration. It reports the median of each and
// their ratio (known/unknown), which should be near 1: the answer comes
// before the search for the account, which runs in the mail queue. It is
// a measurement, not a test: run it with
//
//	go test -run '^$' -bench BenchmarkResetRequestTiming -benchtime 400x ./authn
//
// With drained, each request waits (untimed) for the queue to finish the
// previous one, so that only the request is timed; without, requests come
// back to back, and the background work of a known name's request may
// overlap the next request.
func BenchmarkResetRequestTiming(b *testing.B) {
	benchBackends(b, func(b *testing.B, db *testdb.DB) {
		for _, drained := range []bool{true, false} {
			name := "back-to-back"
			if drained {
				name = "drained"
			}
			b.Run(name, func(b *testing.B) { benchResetTiming(b, db, drained) })
		}
	})
}

func benchResetTiming(b *testing.B, db *testdb.DB, drained bool) {
	mailer := &countingMailer{}
	a := db.Open(b, authn.Config{
		Mailer: mailer,
		HTTP:   authn.HTTPConfig{BaseURL: "https://example.com", Throttle: bigThrottle()},
		// Both bounds counted (in the database), never reached.
		Recovery: authn.RecoveryConfig{RequestsPerAccount: 1 << 30, RequestsPerClient: 1 << 30,
			MailQueueSize: 10000},
	})
	ctx := context.Background()
	if err := a.Register(ctx, "alice", goodPassword); err != nil && !strings.Contains(err.Error(), "taken") {
		b.Fatal(err)
	}
	if err := a.Recovery().SetEmail(ctx, "alice", "alice@example.com"); err != nil {
		b.Fatal(err)
	}
	h := a.Routes()
	request := func(name string) time.Duration {
		r := httptest.NewRequest("POST", "/reset", strings.NewReader(`{"username":"`+name+`"}`))
		r.Header.Set("Content-Type", "application/json")
		r.RemoteAddr = "192.0.2.1:1234"
		w := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(w, r)
		d := time.Since(start)
		if w.Code != http.StatusAccepted {
			b.Fatalf("POST /reset: %d %s", w.Code, w.Body)
		}
		return d
	}
	drain := func(requests int64) {
		for a.Stats().ResetRequests < requests {
			time.Sleep(50 * time.Microsecond)
		}
	}
	var known, unknown []time.Duration
	var sent int64
	b.ResetTimer()
	for i := range b.N {
		// Alternate which goes first, so that neither always follows the
		// other's background work.
		names := [2]string{"alice", "nobody"}
		if i%2 == 1 {
			names = [2]string{"nobody", "alice"}
		}
		for _, name := range names {
			d := request(name)
			sent++
			if name == "alice" {
				known = append(known, d)
			} else {
				unknown = append(unknown, d)
			}
			if drained {
				b.StopTimer()
				drain(sent)
				b.StartTimer()
			}
		}
	}
	b.StopTimer()
	drain(sent)
	k, u := median(known), median(unknown)
	b.ReportMetric(float64(k)/1e3, "known-µs")
	b.ReportMetric(float64(u)/1e3, "unknown-µs")
	b.ReportMetric(float64(k)/float64(u), "ratio")
	b.ReportMetric(0, "ns/op")
}
