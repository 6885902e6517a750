package authn

import (
	"net/netip"
	"testing"
	"time"
)

// TestThrottleLogBounded: the bookkeeping stays within its bound however
// many clients are throttled, a client past the bound is still logged, and
// a sweep reports the counts of the windows that ended.
func TestThrottleLogBounded(t *testing.T) {
	t.Parallel()
	l := newThrottleLog()
	now := time.Unix(1e9, 0)
	for i := range throttleLogClients + 100 {
		key := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		if logIt, _, _ := l.note(key, key.Addr().String(), now); !logIt {
			t.Fatalf("the first refusal of client %d was not logged", i)
		}
		l.note(key, key.Addr().String(), now) // suppressed, if tracked
	}
	if n := len(l.clients); n > throttleLogClients {
		t.Fatalf("%d clients tracked, bound %d", n, throttleLogClients)
	}
	swept := l.sweep(now.Add(throttleLogWindow))
	if len(swept) != throttleLogClients || swept[0].suppressed != 1 || len(l.clients) != 0 {
		t.Fatalf("sweep: %d windows with counts, %d left", len(swept), len(l.clients))
	}
}
