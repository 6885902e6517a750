//go:build !linux

package authn

import "errors"

// walWatchSupported: Open's file watch does not follow the -wal here:
// finding SQLite's own descriptors (see walwatch_linux.go) is written for
// Linux alone.
const walWatchSupported = false

// sqliteFile is never made here.
type sqliteFile struct{ path string }

func openedFile(string) (*sqliteFile, error)         { return nil, errors.ErrUnsupported }
func (*sqliteFile) readAt(p []byte, off int64) error { return errors.ErrUnsupported }
func (*sqliteFile) check() error                     { return errors.ErrUnsupported }
func (*sqliteFile) size() (int64, error)             { return 0, errors.ErrUnsupported }
func (*sqliteFile) isAt() (bool, error)              { return false, errors.ErrUnsupported }
func (*sqliteFile) inUse() bool                      { return false }
