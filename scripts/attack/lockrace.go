package main

import (
	"context"
	"flag"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// lockrace is figure 4: while workers that know the password log in over and
// over (JSON login), "authctl lock USER DURATION" runs; after -wait, the
// user's lockout_until is read directly from the database. The lock counts
// as erased when it is NULL or ends within the hour. Logins that started
// after authctl returned and still succeeded are counted too. Each try uses
// its own source address for the workers, so that logins refused by a
// working lock (401) do not make the throttle refuse the next try's.
func lockrace(args []string) error {
	fs := flag.NewFlagSet("lockrace", flag.ContinueOnError)
	url := fs.String("url", "", "server base URL")
	db := fs.String("db", "", "the server's database (SQLite file or postgres:// URL)")
	authctl := fs.String("authctl", "authctl", "the authctl binary")
	user := fs.String("user", "demo", "the account")
	password := fs.String("password", "", "its (correct) password")
	workers := fs.Int("workers", 4, "concurrent logins")
	tries := fs.Int("tries", 10, "how many times to lock")
	lockFor := fs.String("lock", "24h", "the DURATION given to authctl lock")
	wait := fs.Duration("wait", 500*time.Millisecond, "time between the lock and the check")
	net3 := fs.Int("net", 2, "worker source addresses are 127.NET.0.TRY")
	label := fs.String("label", "", "setting label in the results (default: sqlite or postgres)")
	result := fs.String("result", "", "append the figures to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" || *db == "" || *password == "" {
		return fmt.Errorf("-url, -db and -password are required")
	}
	if *label == "" {
		*label = "sqlite"
		if isPostgres(*db) {
			*label = "postgres"
		}
	}
	ctx := context.Background()
	authctlRun := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, *authctl, append([]string{"-db", *db}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("authctl %v: %v: %s", args, err, strings.TrimSpace(string(out)))
		}
		return string(out), nil
	}
	load0 := loadavg()
	erased, refusedAfter := 0, 0
	var inFlightMin = -1
	for try := range *tries {
		if _, err := authctlRun("unlock", *user); err != nil {
			return err
		}
		src := fmt.Sprintf("127.%d.%d.%d", *net3, 1+try/250, 1+try%250)
		c := newClient(src, *workers, 30*time.Second)
		type attempt struct {
			start, end time.Time
			status     int
		}
		var mu sync.Mutex
		var attempts []attempt
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range *workers {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					t0 := time.Now()
					s, _, _ := postJSON(ctx, c, *url+"/login",
						map[string]string{"username": *user, "password": *password})
					mu.Lock()
					attempts = append(attempts, attempt{t0, time.Now(), s})
					mu.Unlock()
				}
			})
		}
		time.Sleep(300 * time.Millisecond) // logins in flight
		lockStart := time.Now()
		if _, err := authctlRun("lock", *user, *lockFor); err != nil {
			close(stop)
			wg.Wait()
			return err
		}
		lockDone := time.Now()
		time.Sleep(*wait)
		raw, err := sqlExec(*db, fmt.Sprintf("SELECT lockout_until FROM users WHERE username = %s", sqlQuote(*user)))
		checked := time.Now()
		close(stop)
		wg.Wait()
		c.CloseIdleConnections()
		if err != nil {
			return err
		}
		show, _ := authctlRun("show", *user)
		lockedUntil, perr := strconv.ParseFloat(strings.TrimSpace(raw), 64)
		// NULL reads as "", which does not parse: not locked.
		stillLocked := perr == nil && lockedUntil > float64(checked.Add(time.Hour).UnixNano())/1e9
		if !stillLocked {
			erased++
		}
		var okBefore, okAfter, otherAfter, inFlight int
		for _, a := range attempts {
			switch {
			case a.end.Before(lockStart):
				if a.status == 200 {
					okBefore++
				}
			case a.start.After(lockDone):
				if a.status == 200 {
					okAfter++
				} else {
					otherAfter++
				}
			}
			if a.start.Before(lockDone) && a.end.After(lockStart) {
				inFlight++
			}
		}
		if okAfter == 0 {
			refusedAfter++
		}
		if inFlightMin < 0 || inFlight < inFlightMin {
			inFlightMin = inFlight
		}
		lockedLine := "?"
		for l := range strings.SplitSeq(show, "\n") {
			if strings.HasPrefix(l, "locked until:") {
				lockedLine = strings.TrimSpace(strings.TrimPrefix(l, "locked until:"))
			}
		}
		fmt.Printf("  try %2d (%s): lockout_until=%q -> %s; authctl show: %q; logins ok before lock %d, in flight at lock %d, started after lock: ok %d, refused %d\n",
			try+1, src, raw, map[bool]string{true: "locked", false: "ERASED"}[stillLocked], lockedLine,
			okBefore, inFlight, okAfter, otherAfter)
	}
	if _, err := authctlRun("unlock", *user); err != nil {
		return err
	}
	fmt.Printf("lockrace (%s): lock erased in %d of %d tries; new logins refused after the lock in %d of %d\n",
		*label, erased, *tries, refusedAfter, *tries)
	setting := fmt.Sprintf("%s, %d workers", *label, *workers)
	note := fmt.Sprintf("new logins all refused after the lock in %d/%d tries; min logins in flight at lock %d; check %v after; load %s",
		refusedAfter, *tries, inFlightMin, *wait, load0)
	return record(*result, "4 lockrace: lock erased", setting, fmt.Sprintf("%d/%d", erased, *tries), note)
}
