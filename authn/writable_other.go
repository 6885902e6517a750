//go:build !unix

package authn

// writable cannot be checked without opening the file here; SQLite reports
// a read-only file when it writes.
func writable(string) error { return nil }
