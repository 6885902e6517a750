package minimost_test

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
)

// TestFullDiskLockout is the full-disk hole, end to end: a server over a
// SQLite file on a full tmpfs gets wrong passwords for bob, over Basic auth
// and the JSON login, well past the lockout threshold. A claim that cannot
// be committed must not check the password: bob's hash is checked at most
// threshold times (the claims SQLite could still write, in space its WAL
// already has), never a 2xx, 503 for the claims that were not written, and
// a log line that says the database could not write. When space comes
// back, the file is whole and serves, and bob's count is what was written.
//
// Before the claim read its RETURNING through database/sql, every claim
// here "succeeded" uncounted and bob's hash was checked for each request.
func TestFullDiskLockout(t *testing.T) {
	t.Parallel()
	dir := mountTmpfs(t, "3m")
	path := filepath.Join(dir, "auth.db")
	logs := &syncBuffer{}
	const threshold = 5
	s := newSite(t, &testdb.DB{Name: "sqlite", URL: path}, authn.Config{
		LockoutThreshold: threshold,
		Logger:           slog.New(slog.NewTextHandler(logs, nil)),
		HTTP:             authn.HTTPConfig{BasicAuthCacheTTL: -1}, // every request claims
	})
	if st := s.basicGet("alice", alicePassword).status; st != 200 {
		t.Fatalf("Basic auth before the disk is full: %d", st)
	}
	checkpoint(t, path) // an empty WAL: every commit must grow it
	var bobHash string
	if err := testdb.RawSQLite(t, path).QueryRow("SELECT password_hash FROM users WHERE username = 'bob'").Scan(&bobHash); err != nil {
		t.Fatal(err)
	}
	fillDisk(t, dir)
	logs.take()

	statuses := map[int]int{}
	for i := range 30 {
		pw := fmt.Sprintf("wrong password %d", i)
		statuses[s.basicGet("bob", pw).status]++
		statuses[s.loginJSON(nil, "bob", pw).status]++
	}
	checks := s.hasher.Verifies(bobHash)
	t.Logf("60 wrong passwords on a full disk: answers %v, bob's hash checked %d times", statuses, checks)
	if checks > threshold {
		t.Errorf("bob's hash was checked %d times on a full disk, threshold %d", checks, threshold)
	}
	for st, n := range statuses {
		if st != 401 && st != 503 {
			t.Errorf("%d wrong passwords answered %d", n, st)
		}
	}
	if statuses[503] == 0 {
		t.Fatal("no request failed on the full disk: the test did not fill it")
	}
	if log := logs.take(); !strings.Contains(log, "level=ERROR") || !strings.Contains(log, "claiming a login attempt: the database could not write") {
		t.Errorf("no error line saying the database could not write the claim:\n%s", log)
	}

	// Transactions whose COMMIT fails too: a registration writes the user
	// and ends leftover sessions in one.
	for i := range 3 {
		body := fmt.Sprintf(`{"username":"erin%d","password":"erin's long passphrase %d"}`, i, i)
		if st := s.do(nil, "POST", "/register", "application/json", body).status; st != 503 {
			t.Errorf("registration on a full disk: %d, want 503", st)
		}
	}

	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	if st := s.basicGet("alice", alicePassword).status; st != 200 {
		t.Fatalf("Basic auth after space came back: %d", st)
	}
	// No pooled connection was left inside a transaction that its failed
	// COMMIT did not end: parallel claims over all of them are counted,
	// exactly, and committed where another connection sees them.
	var aliceHash string
	raw := testdb.RawSQLite(t, path)
	if err := raw.QueryRow("SELECT password_hash FROM users WHERE username = 'alice'").Scan(&aliceHash); err != nil {
		t.Fatal(err)
	}
	before := s.hasher.Verifies(aliceHash)
	answers := make(chan int, 4*threshold)
	for i := range cap(answers) {
		go func() { answers <- s.loginJSON(nil, "alice", fmt.Sprint("not alice's password ", i)).status }()
	}
	for range cap(answers) {
		if st := <-answers; st != 401 {
			t.Errorf("a wrong password for alice after space came back: %d, want 401", st)
		}
	}
	if n := s.hasher.Verifies(aliceHash) - before; n != threshold {
		t.Errorf("%d parallel wrong passwords checked alice's hash %d times, want %d", cap(answers), n, threshold)
	}
	var aliceLock *float64
	if err := raw.QueryRow("SELECT lockout_until FROM users WHERE username = 'alice'").Scan(&aliceLock); err != nil || aliceLock == nil {
		t.Errorf("alice's lock is not in the file: %v %v", aliceLock, err)
	}
	var check string
	if err := raw.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check after the full disk: %q %v", check, err)
	}
	// The count on file is the claims that were written: as many as the
	// checks, less the multiples of the threshold that locked and reset it.
	var failed int
	var until *float64
	if err := raw.QueryRow("SELECT failed_attempts, lockout_until FROM users WHERE username = 'bob'").Scan(&failed, &until); err != nil {
		t.Fatal(err)
	}
	if want := checks % threshold; failed != want || (checks >= threshold) != (until != nil) {
		t.Errorf("bob's row after %d written claims: failed_attempts %d, lockout_until %v; want %d and a lock iff %d >= %d",
			checks, failed, until, want, checks, threshold)
	}
}

// fillDisk fills the file system of dir with a file called filler.
func fillDisk(t *testing.T, dir string) {
	t.Helper()
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer filler.Close()
	for chunk := make([]byte, 64<<10); ; {
		if _, err := filler.Write(chunk); err != nil {
			break // full
		}
	}
	for chunk := make([]byte, 512); ; { // the last scraps
		if _, err := filler.Write(chunk); err != nil {
			return
		}
	}
}
