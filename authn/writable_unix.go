//go:build unix

package authn

import (
	"io/fs"
	"syscall"
)

// sharedMode reports whether a file mode gives its group or other users
// any access.
func sharedMode(m fs.FileMode) bool { return m.Perm()&0o077 != 0 }

// writable reports whether this process may write the file at path,
// without opening it (closing a descriptor of a SQLite file would drop the
// locks SQLite holds on it). It sees modes and, for root, immutable files.
func writable(path string) error {
	const wOK = 2 // W_OK
	return syscall.Access(path, wOK)
}

// readWritable reports whether this process may read and write the file at
// path, without opening it (see writable).
func readWritable(path string) error {
	const rwOK = 4 | 2 // R_OK | W_OK
	return syscall.Access(path, rwOK)
}
