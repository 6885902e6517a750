package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// flood is figure 3: conns concurrent connections from one address register
// new accounts for dur, while another address logs in sequentially with a
// correct password (JSON). It reports that login's latency without the flood
// (the baseline) and under it, and how many accounts the flood created.
func flood(args []string) error {
	fs := flag.NewFlagSet("flood", flag.ContinueOnError)
	url := fs.String("url", "", "server base URL")
	conns := fs.Int("conns", 200, "concurrent registration connections")
	dur := fs.Duration("dur", 25*time.Second, "how long the flood lasts")
	floodSrc := fs.String("flood-src", "127.0.0.2", "the flood's source address")
	loginSrc := fs.String("login-src", "127.0.0.3", "the other client's source address")
	user := fs.String("user", "demo", "the other client's account")
	password := fs.String("password", "", "its (correct) password")
	baseline := fs.Int("baseline", 20, "logins measured before the flood")
	result := fs.String("result", "", "append the figures to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" || *password == "" {
		return fmt.Errorf("-url and -password are required")
	}
	ctx := context.Background()
	login := newClient(*loginSrc, 1, 60*time.Second)
	creds := map[string]string{"username": *user, "password": *password}
	doLogin := func() (int, time.Duration) {
		s, d, err := postJSON(ctx, login, *url+"/login", creds)
		if err != nil {
			fmt.Printf("  login error: %v\n", err)
		}
		return s, d
	}
	get(ctx, login, *url+"/healthz")

	load0 := loadavg()
	var base []time.Duration
	baseStatus := map[int]int{}
	for range *baseline {
		s, d := doLogin()
		baseStatus[s]++
		base = append(base, d)
	}
	fmt.Printf("flood: baseline login from %s: median %s, p90 %s, statuses %v (load %s)\n",
		*loginSrc, ms(median(base)), ms(percentile(base, 90)), baseStatus, load0)

	// The flood.
	fc := newClient(*floodSrc, *conns, 60*time.Second)
	prefix := rand.Text()[:6]
	var seq atomic.Int64
	var mu sync.Mutex
	regStatus := map[int]int{}
	start := time.Now()
	deadline := start.Add(*dur)
	var wg sync.WaitGroup
	for range *conns {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				name := fmt.Sprintf("f%s%06d", prefix, seq.Add(1))
				s, _, _ := postJSON(ctx, fc, *url+"/register",
					map[string]string{"username": name, "password": rand.Text()})
				mu.Lock()
				regStatus[s]++
				mu.Unlock()
			}
		})
	}
	// The other address logs in, one request after another, while the
	// flood runs (after a second for it to ramp up).
	time.Sleep(time.Second)
	var under []time.Duration
	underStatus := map[int]int{}
	for time.Now().Before(deadline) {
		s, d := doLogin()
		underStatus[s]++
		under = append(under, d)
	}
	loadFlood := loadavg()
	wg.Wait()
	elapsed := time.Since(start)
	created := regStatus[201]
	fmt.Printf("  flood from %s over %d connections for %v: registrations by status %v (%d created)\n",
		*floodSrc, *conns, elapsed.Round(time.Millisecond), regStatus, created)
	fmt.Printf("  login under the flood: %d logins, median %s, p90 %s, max %s, statuses %v\n",
		len(under), ms(median(under)), ms(percentile(under, 90)), ms(slices.Max(append(under, 0))), underStatus)
	statusList := func(m map[int]int) string {
		s := ""
		for _, k := range slices.Sorted(maps.Keys(m)) {
			s += fmt.Sprintf("%d:%d ", k, m[k])
		}
		return s
	}
	setting := fmt.Sprintf("%d conns, %v", *conns, *dur)
	if err := record(*result, "3 flood: other address's login median", "baseline (no flood)", ms(median(base)),
		fmt.Sprintf("p90 %s, n=%d, statuses %s; load %s", ms(percentile(base, 90)), len(base), statusList(baseStatus), load0)); err != nil {
		return err
	}
	if err := record(*result, "3 flood: other address's login median", setting, ms(median(under)),
		fmt.Sprintf("p90 %s, max %s, n=%d, statuses %s; load %s", ms(percentile(under, 90)),
			ms(slices.Max(append(under, 0))), len(under), statusList(underStatus), loadFlood)); err != nil {
		return err
	}
	return record(*result, "3 flood: accounts created", setting, fmt.Sprint(created),
		fmt.Sprintf("registrations by status %s", statusList(regStatus)))
}
