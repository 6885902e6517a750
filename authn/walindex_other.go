//go:build !linux

package authn

import (
	"errors"
	"os"
)

// mapWALIndex is not available here: finding SQLite's own descriptor of the
// -shm file (see walindex_linux.go) is written for Linux alone, so every
// request reads the database.
func mapWALIndex(string) (*walIndex, os.FileInfo, error) {
	return nil, nil, errors.New("the WAL-index fast path is implemented for Linux only")
}
