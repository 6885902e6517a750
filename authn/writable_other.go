//go:build !unix

package authn

import "io/fs"

// sharedMode is false here: outside Unix the permission bits do not say who
// may read the file.
func sharedMode(fs.FileMode) bool { return false }

// writable cannot be checked without opening the file here; SQLite reports
// a read-only file when it writes.
func writable(string) error { return nil }
