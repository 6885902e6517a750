package minimost_test

import (
	"path/filepath"
	"testing"
)

// TestCrossProcessRestore: authctl backup and restore, each a process of
// its own, while a server answers alice's credentials from memory. The
// backup commits nothing (the server goes on from memory); the restore,
// written through SQLite into the live file rather than over it, is seen by
// the very next request of each kind: the password, the app token and the
// user deleted since the backup are back, the password set since is
// refused though the server remembered it, and the session in the copy has
// ended. No request gets 503: the file was never replaced.
func TestCrossProcessRestore(t *testing.T) {
	t.Parallel()
	const alicePW2 = "alice's passphrase set after the backup"
	kinds := append(append([]string{}, aliceKinds...), kindBobBasic)
	x := newCrossSite(t)
	x.warmUp(t, kinds...)
	cp := filepath.Join(t.TempDir(), "copy.db")
	runOther(t, authctlCmd(t, x.path, "", "backup", cp))
	x.warmUp(t, kinds...)

	runOther(t, authctlCmd(t, x.path, alicePW2+"\n", "passwd", "alice")) // ends her session too
	runOther(t, authctlCmd(t, x.path, "", "token", "revoke", "alice", "ci"))
	runOther(t, authctlCmd(t, x.path, "", "delete", "-y", "bob"))
	x.expect(t, "after the changes", kinds, every(401, kinds...))
	for range warmRounds { // the new password, remembered
		if r := x.basicGet("alice", alicePW2); r.status != 200 {
			t.Fatalf("alice's new password: %d, want 200", r.status)
		}
	}

	runOther(t, authctlCmd(t, x.path, "", "restore", "-y", cp))
	want := every(200, kinds...)
	want[kindSession] = 401 // a restore ends every session
	x.expect(t, "after the restore", kinds, want)
	if r := x.basicGet("alice", alicePW2); r.status != 401 {
		t.Errorf("alice's password set after the backup, after the restore: %d, want 401", r.status)
	}
	x.expect(t, "after the restore, again", kinds, want)
}
