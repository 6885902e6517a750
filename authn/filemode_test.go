//go:build unix

package authn_test

import (
	"os"
	"strings"
	"testing"

	"github.com/minimost/minimost/authn"
)

// TestOpenWarnsReadableFile: Open of an existing auth.db that group or
// other users may read (the hashes are nobody else's business) logs one
// WARN naming the path and the fix; a 0600 file logs none.
func TestOpenWarnsReadableFile(t *testing.T) {
	t.Parallel()
	_, path := openTest(t, authn.Config{}) // created 0600
	for _, tc := range []struct {
		mode os.FileMode
		warn bool
	}{{0o600, false}, {0o644, true}, {0o640, true}, {0o604, true}} {
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		var log strings.Builder
		a := openPath(t, path, authn.Config{Logger: newTextLogger(&log)})
		a.Close()
		warnings := strings.Count(log.String(), "level=WARN")
		switch {
		case tc.warn && (warnings != 1 || !strings.Contains(log.String(), path) || !strings.Contains(log.String(), "chmod 600")):
			t.Errorf("mode %v: want one WARN naming %s and chmod 600, got:\n%s", tc.mode, path, log.String())
		case !tc.warn && warnings != 0:
			t.Errorf("mode %v: unexpected warning:\n%s", tc.mode, log.String())
		}
	}
}
