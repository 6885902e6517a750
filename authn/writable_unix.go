//go:build unix

package authn

import "syscall"

// writable reports whether this process may write the file at path,
// without opening it (closing a descriptor of a SQLite file would drop the
// locks SQLite holds on it). It sees modes and, for root, immutable files.
func writable(path string) error {
	const wOK = 2 // W_OK
	return syscall.Access(path, wOK)
}
