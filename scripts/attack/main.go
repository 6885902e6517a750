// Command attack re-runs, from outside, the measurements of issue 11 against
// the example servers: it speaks to them only over HTTP and through the
// authctl binary, sqlite3 and psql, never through the authn package, so the
// same program measures the code before and after a fix.
//
//	go run ./scripts/attack spray    -url URL [-conns 32] [-dur 60s] [-src 127.0.0.10] [-db DB]
//	go run ./scripts/attack timing   -url URL -db DB [-n 25]
//	go run ./scripts/attack flood    -url URL -password PW [-conns 200] [-dur 25s]
//	go run ./scripts/attack lockrace -url URL -db DB -authctl BIN -password PW [-tries 10]
//	go run ./scripts/attack freeport | waitready -url URL | summary FILE
//
// DB is a SQLite file or a postgres:// URL (read and written with the
// sqlite3 and psql commands). Every measurement appends its figures to the
// file named by -result (tab-separated: figure, setting, value, note), and
// "summary FILE" prints them as a table. scripts/attack/run.sh builds the
// examples, starts fresh servers and runs everything.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

type subcommand struct {
	summary string
	run     func(args []string) error
}

func subcommands() map[string]subcommand {
	return map[string]subcommand{
		"spray":     {"one address sprays one password over many accounts (figure 1)", spray},
		"timing":    {"wrong-password time per stored hash kind vs unknown user (figure 2)", timing},
		"flood":     {"another address's login latency under a registration flood (figure 3)", flood},
		"lockrace":  {"does an admin lock survive logins in flight (figure 4)", lockrace},
		"freeport":  {"print a free TCP port on 127.0.0.1", freeport},
		"waitready": {"wait until URL/healthz answers 200", waitready},
		"summary":   {"print a result file as a table", summary},
	}
}

func main() {
	cmds := subcommands()
	if len(os.Args) < 2 || cmds[os.Args[1]].run == nil {
		fmt.Fprintln(os.Stderr, "usage: attack COMMAND [flags]; commands:")
		names := make([]string, 0, len(cmds))
		for n := range cmds {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			fmt.Fprintf(os.Stderr, "  %-10s %s\n", n, cmds[n].summary)
		}
		os.Exit(2)
	}
	if err := cmds[os.Args[1]].run(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "attack %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// newClient returns an HTTP client whose connections come from the
// loopback address src (any 127.0.0.0/8 address works on Linux), so that the
// server sees a client address of our choosing, with up to conns kept-alive
// connections.
func newClient(src string, conns int, timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:         d.DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// postJSON posts v as JSON and returns the status and the wall time from
// sending the request to having read the whole answer. A transport error
// is status 0.
func postJSON(ctx context.Context, c *http.Client, url string, v any) (int, time.Duration, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return 0, 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(string(body)))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, time.Since(start), err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(start), nil
}

// get fetches url and discards the answer; it opens (and warms) a
// kept-alive connection without counting as a failure anywhere.
func get(ctx context.Context, c *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// median and percentile use the nearest rank of a sorted copy.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// record appends one figure to the result file (if any) and prints it.
func record(file, figure, setting, value, note string) error {
	line := strings.Join([]string{figure, setting, value, note}, "\t")
	fmt.Println("RESULT\t" + line)
	if file == "" {
		return nil
	}
	f, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintln(f, line)
	return err
}

// loadavg is /proc/loadavg's first three fields, for the notes.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// isPostgres says whether db is a PostgreSQL URL rather than a SQLite file.
func isPostgres(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}

// sqlExec runs SQL on db with the sqlite3 or psql command and returns its
// output, one row per line, columns separated by '|'.
func sqlExec(db, query string) (string, error) {
	var cmd *exec.Cmd
	if isPostgres(db) {
		cmd = exec.Command("psql", db, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", query)
	} else {
		cmd = exec.Command("sqlite3", "-cmd", ".timeout 10000", db, query)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s: %v: %s", cmd.Args[0], err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// sqlQuote quotes s as an SQL string literal.
func sqlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// insertUsers inserts (or replaces) users with the given stored hashes,
// unlocked and without failures, directly in the users table.
func insertUsers(db string, hashes map[string]string) error {
	var b strings.Builder
	b.WriteString("BEGIN;\n")
	for name, hash := range hashes {
		fmt.Fprintf(&b, "DELETE FROM users WHERE username = %s;\n", sqlQuote(name))
		fmt.Fprintf(&b, "INSERT INTO users (username, password_hash, failed_attempts, lockout_until) VALUES (%s, %s, 0, NULL);\n",
			sqlQuote(name), sqlQuote(hash))
	}
	b.WriteString("COMMIT;\n")
	_, err := sqlExec(db, b.String())
	return err
}

func freeport(args []string) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
	return nil
}

func waitready(args []string) error {
	fs := flag.NewFlagSet("waitready", flag.ContinueOnError)
	url := fs.String("url", "", "server base URL")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c := newClient("", 1, 2*time.Second)
	deadline := time.Now().Add(*timeout)
	for time.Now().Before(deadline) {
		if s, err := get(context.Background(), c, *url+"/healthz"); err == nil && s == http.StatusOK {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s/healthz not ready after %v", *url, *timeout)
}

func summary(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: attack summary RESULTFILE")
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tSETTING\tVALUE\tNOTE")
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fmt.Fprintln(tw, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return tw.Flush()
}
