package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// spray is figure 1: one client address sends one password to many
// account names (existing and unknown) through the JSON login, over conns
// concurrent connections, for dur. Every 401 is a password check the
// address got (or the dummy check of an unknown name, which the attacker
// cannot tell apart); 429 is the throttle, 503 the hashing capacity. The
// documented budget is burst + dur/interval (20 + 10 a minute).
func spray(args []string) error {
	fs := flag.NewFlagSet("spray", flag.ContinueOnError)
	url := fs.String("url", "", "server base URL, e.g. http://127.0.0.1:8080; several, comma-separated, are sprayed in turn (instances on one database)")
	conns := fs.Int("conns", 32, "concurrent connections")
	dur := fs.Duration("dur", 60*time.Second, "how long to spray")
	src := fs.String("src", "127.0.0.10", "client (source) address, any 127.0.0.0/8 address")
	db := fs.String("db", "", "if set, insert -existing accounts named spray000... into this database first (SQLite file or postgres:// URL)")
	existing := fs.Int("existing", 50, "accounts to create with -db (stored hash: pbkdf2:sha256:600000)")
	unknown := fs.Int("unknown", 50, "unknown account names to spray too")
	names := fs.String("names", "demo", "comma-separated account names that exist already")
	password := fs.String("password", "Spring2025!Spring2025", "the sprayed password")
	burst := fs.Int("burst", 20, "documented burst, for the budget")
	interval := fs.Duration("interval", 6*time.Second, "documented refill interval, for the budget")
	result := fs.String("result", "", "append the figures to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" {
		return fmt.Errorf("-url is required")
	}
	urls := strings.Split(*url, ",")
	var targets []string
	for n := range strings.SplitSeq(*names, ",") {
		if n = strings.TrimSpace(n); n != "" {
			targets = append(targets, n)
		}
	}
	if *db != "" && *existing > 0 {
		users := make(map[string]string, *existing)
		for i := range *existing {
			users[fmt.Sprintf("spray%03d", i)] = vectorPBKDF2600000
		}
		if err := insertUsers(*db, users); err != nil {
			return err
		}
		targets = append(targets, slices.Sorted(maps.Keys(users))...)
	}
	// Interleave unknown names with the existing ones.
	var all []string
	for i := range max(len(targets), *unknown) {
		if i < len(targets) {
			all = append(all, targets[i])
		}
		if i < *unknown {
			all = append(all, fmt.Sprintf("nobody%03d", i))
		}
	}

	c := newClient(*src, *conns, 30*time.Second)
	// Open the connections first (GET /healthz counts nowhere).
	var warm sync.WaitGroup
	for i := range *conns {
		warm.Go(func() { get(context.Background(), c, urls[i%len(urls)]+"/healthz") })
	}
	warm.Wait()

	load0 := loadavg()
	var next atomic.Int64
	var mu sync.Mutex
	counts := map[int]int{}
	checksAt := make([]int, len(urls)) // the 401s of each server
	var checkTimes []time.Duration     // when each 401 came, since the start
	start := time.Now()
	deadline := start.Add(*dur)
	var wg sync.WaitGroup
	for range *conns {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				n := int(next.Add(1) - 1)
				name := all[n%len(all)]
				server := n % len(urls)
				status, _, _ := postJSON(context.Background(), c, urls[server]+"/login",
					map[string]string{"username": name, "password": *password})
				mu.Lock()
				counts[status]++
				if status == 401 {
					checkTimes = append(checkTimes, time.Since(start))
					checksAt[server]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	budget := *burst + int(*dur / *interval)
	checks := counts[401]
	total := 0
	var others []string
	for _, s := range slices.Sorted(maps.Keys(counts)) {
		total += counts[s]
		if s != 401 && s != 429 && s != 503 {
			others = append(others, fmt.Sprintf("%d:%d", s, counts[s]))
		}
	}
	// How the checks spread over time: the first second (the burst) and
	// each later 10 s window.
	var first int
	windows := make([]int, int(*dur/(10*time.Second))+1)
	for _, t := range checkTimes {
		if t < time.Second {
			first++
		}
		windows[min(int(t/(10*time.Second)), len(windows)-1)]++
	}
	fmt.Printf("spray: %d requests in %v from %s over %d connections, %d names (%d existing)\n",
		total, elapsed.Round(time.Millisecond), *src, *conns, len(all), len(targets))
	fmt.Printf("  401 (password checks): %d   429 (throttled): %d   503 (busy): %d   other: %v\n",
		checks, counts[429], counts[503], others)
	fmt.Printf("  checks in the first second: %d; per 10 s window: %v\n", first, windows)
	if len(urls) > 1 {
		fmt.Printf("  checks per server (%d servers sprayed in turn): %v\n", len(urls), checksAt)
	}
	fmt.Printf("  documented budget for %v: %d (burst %d + one per %v); got %.1fx\n",
		*dur, budget, *burst, *interval, float64(checks)/float64(budget))
	setting := fmt.Sprintf("%d conns, %v", *conns, *dur)
	if len(urls) > 1 {
		setting += fmt.Sprintf(", %d servers", len(urls))
	}
	note := fmt.Sprintf("budget %d (%.1fx); 429=%d 503=%d other=%v; per 10s %v; load %s", budget,
		float64(checks)/float64(budget), counts[429], counts[503], others, windows, load0)
	return record(*result, "1 spray: checks (401) per address", setting, fmt.Sprint(checks), note)
}
