package authn

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// TestOverMemoBounded: the memory of over-budget clients holds at most its
// bound, answers until the time noted and not after, and makes room from
// expired entries (at most once a second), never by forgetting a live one.
func TestOverMemoBounded(t *testing.T) {
	m := overMemo{max: 4}
	now := time.Unix(1e9, 0)
	key := func(i int) netip.Prefix { return netip.MustParsePrefix(fmt.Sprintf("192.0.2.%d/32", i)) }
	for i := range 10 {
		m.note(key(i), now.Add(time.Minute), now)
	}
	if len(m.until) != 4 {
		t.Fatalf("%d entries, bound 4", len(m.until))
	}
	if wait, over := m.lookup(key(0), now.Add(time.Second)); !over || wait != 59*time.Second {
		t.Errorf("a noted client: over %v, wait %v; want true, 59s", over, wait)
	}
	if _, over := m.lookup(key(9), now); over {
		t.Error("a client noted while the memo was full is remembered")
	}
	if _, over := m.lookup(key(0), now.Add(time.Minute)); over {
		t.Error("a client still over budget once its next token is due")
	}
	m.note(key(10), now.Add(time.Minute), now) // full again
	later := now.Add(2 * time.Minute)          // every entry has expired
	m.note(key(9), later.Add(time.Minute), later)
	if _, over := m.lookup(key(9), later); !over || len(m.until) != 1 {
		t.Errorf("after the entries expired: over %v, %d entries; want true, 1", over, len(m.until))
	}
}
