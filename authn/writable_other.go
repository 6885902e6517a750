//go:build !unix

package authn

import (
	"io/fs"
	"os"
)

// sharedMode is false here: outside Unix the permission bits do not say who
// may read the file.
func sharedMode(fs.FileMode) bool { return false }

// writable cannot be checked without opening the file here; SQLite reports
// a read-only file when it writes.
func writable(string) error { return nil }

// readWritable opens the file at path for reading and writing and closes
// it: outside Unix, locks are not the process's but the handle's, and
// closing another handle leaves SQLite's alone.
func readWritable(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	return f.Close()
}
