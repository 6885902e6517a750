package main

import (
	"strings"
	"testing"
	"time"

	"github.com/minimost/minimost/internal/testdb"
)

// TestPasskeysListAndRemove: "passkeys NAME" lists a user's passkeys,
// "passkeys remove NAME PASSKEY" removes one by its name or ID, and a
// second removal fails.
func TestPasskeysListAndRemove(t *testing.T) {
	t.Parallel()
	db := testdb.SQLite(t)
	authctl(t, "alice's long passphrase\n", "-db", db.URL, "add", "alice").want(t, 0, "created user alice")
	authctl(t, "", "-db", db.URL, "passkeys", "alice").want(t, 0, "")
	now := float64(time.Now().Unix())
	for _, k := range [][2]string{{"AAEC", "work laptop"}, {"AwQF", "phone"}} {
		_, err := db.Raw.Exec(`INSERT INTO passkeys (credential_id, username, name, user_handle, public_key, sign_count, backup_eligible, backup_state, user_verified, created_at, user_hash)
SELECT ?, 'alice', ?, 'aGFuZGxl', X'00', 0, TRUE, TRUE, TRUE, ?, password_hash FROM users WHERE username = 'alice'`, k[0], k[1], now)
		if err != nil {
			t.Fatal(err)
		}
	}
	r := authctl(t, "", "-db", db.URL, "passkeys", "alice")
	if r.code != 0 || !strings.Contains(r.stdout, "work laptop") || !strings.Contains(r.stdout, "AwQF") {
		t.Fatalf("passkeys alice: exit %d, stdout %q", r.code, r.stdout)
	}
	authctl(t, "", "-db", db.URL, "passkeys", "remove", "alice", "work laptop").want(t, 0, "removed passkey")
	authctl(t, "", "-db", db.URL, "passkeys", "remove", "alice", "AwQF").want(t, 0, "removed passkey")
	r = authctl(t, "", "-db", db.URL, "passkeys", "alice")
	if r.code != 0 || strings.Contains(r.stdout, "laptop") || strings.Contains(r.stdout, "AwQF") {
		t.Fatalf("after removal: exit %d, stdout %q", r.code, r.stdout)
	}
	if r := authctl(t, "", "-db", db.URL, "passkeys", "remove", "alice", "phone"); r.code == 0 {
		t.Fatalf("removing a passkey twice: exit 0, %q", r.stderr)
	}
	if r := authctl(t, "", "-db", db.URL, "passkeys", "bob"); r.code == 0 {
		t.Fatalf("passkeys of nobody: exit 0")
	}
}
