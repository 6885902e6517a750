//go:build !linux

package authn

import (
	"errors"
	"os"
)

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

// lockedElsewhere is never called here, where no keeper is open.
func lockedElsewhere(os.FileInfo) (int, error) { return 0, errors.ErrUnsupported }

// openInProcess cannot tell here, without /proc/self/fd, and says no: a
// replaced file is served once the pool has let go of the old one (see
// replace.go, Limits).
func openInProcess(os.FileInfo) (bool, error) { return false, nil }
