package main

import (
	"strings"
	"testing"
	"time"

	"github.com/minimost/minimost/internal/testdb"
)

// TestSessionsTableEscapesEveryCell: a sessions row written behind the
// library's back (by another program, or by hand) may hold terminal escape
// sequences, tabs and newlines in any text column: "sessions" escapes the
// network as it does the User-Agent, so that neither can rewrite the
// terminal or break the table.
func TestSessionsTableEscapesEveryCell(t *testing.T) {
	t.Parallel()
	db := testdb.SQLite(t)
	authctl(t, "alice's long passphrase\n", "-db", db.URL, "add", "alice").want(t, 0, "created user alice")
	now := float64(time.Now().Unix())
	_, err := db.Raw.Exec("INSERT INTO sessions (token_hash, username, created_at, last_seen, expires_at, remembered, client_net, user_agent) VALUES (?, 'alice', ?, ?, ?, FALSE, ?, ?)",
		strings.Repeat("0", 64), now, now, now+3600, "\x1b[2J\x1b]0;owned\a10.0.0.0/24\tx\ny", "agent\x1b[31m")
	if err != nil {
		t.Fatal(err)
	}
	r := authctl(t, "", "-db", db.URL, "sessions", "alice")
	if r.code != 0 || strings.ContainsAny(r.stdout, "\x1b\a") || strings.Count(r.stdout, "\n") != 2 {
		t.Fatalf("sessions alice: exit %d, stdout %q, want no control character and two lines", r.code, r.stdout)
	}
}
