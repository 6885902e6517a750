//go:build linux

package authn

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"syscall"
)

// walWatchSupported: Open's file watch follows the -wal too (walwatch.go);
// it finds SQLite's descriptors in /proc/self/fd.
const walWatchSupported = true

// sqliteFile is a file that SQLite holds open in this process, a -wal or a
// -shm, known by device and inode and read through SQLite's own
// descriptors: this package never opens or closes a descriptor of those
// files, since closing any descriptor of a file drops every POSIX lock the
// process holds on it, SQLite's included (see walindex_linux.go). Reads use
// pread, which leaves the descriptor's offset alone.
type sqliteFile struct {
	path string // where it was found
	st   syscall.Stat_t
	fd   int // the descriptor last used; checked again at each use
	// read is the descriptor readAt read through since the last check, or
	// -1: check has nothing to vouch for when nothing was read.
	read int
}

// openedFile returns the file now at path, which SQLite must have open in
// this process. It fails when a descriptor of this process is open on
// another file of that name, deleted or replaced since: then some
// connection of this process does not use the file at path.
func openedFile(path string) (*sqliteFile, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, errors.New("no inode to compare")
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	f := &sqliteFile{path: path, st: *st, fd: -1, read: -1}
	name := path // as the kernel names it, read from SQLite's descriptor below
	var others []int
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var got syscall.Stat_t
		if syscall.Fstat(fd, &got) != nil || got.Mode&syscall.S_IFMT != syscall.S_IFREG {
			continue
		}
		if got.Dev != st.Dev || got.Ino != st.Ino {
			others = append(others, fd)
			continue
		}
		if f.fd < 0 {
			f.fd = fd
			if link, err := os.Readlink(procFD(fd)); err == nil {
				name = link
			}
		}
	}
	if f.fd < 0 {
		return nil, fmt.Errorf("%s: no descriptor of this process is open on it", path)
	}
	for _, fd := range others {
		if link, err := os.Readlink(procFD(fd)); err == nil && (link == name || link == name+" (deleted)") {
			return nil, fmt.Errorf("%s: a descriptor of this process is open on another file of that name, deleted or replaced", path)
		}
	}
	return f, nil
}

func procFD(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// descriptor returns a descriptor of this process open on f.
func (f *sqliteFile) descriptor() (int, error) {
	if f.fd >= 0 && sameInode(f.fd, &f.st) {
		return f.fd, nil
	}
	fd, err := descriptorOf(&f.st)
	if err != nil {
		return -1, fmt.Errorf("%s: %w", f.path, err)
	}
	f.fd = fd
	return fd, nil
}

// errDescriptorChanged: a descriptor was closed, and its number reused,
// while it was read.
var errDescriptorChanged = errors.New("the descriptor changed while it was read")

// readAt fills p from offset off, or returns io.ErrUnexpectedEOF when the
// file ends first. It reads through a descriptor found open on f (the one
// last found while it still is: a connection that closed since, such as
// one of the pool at Close, leaves a number that may be another file's);
// what it read is of f only if check, called after, returns nil.
func (f *sqliteFile) readAt(p []byte, off int64) error {
	fd, err := f.descriptor()
	if err != nil {
		return err
	}
	f.read = fd
	n := 0
	for n < len(p) {
		m, err := syscall.Pread(fd, p[n:], off+int64(n))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			f.fd = -1 // closed meanwhile, perhaps: found again next time
			return fmt.Errorf("%s: %w", f.path, err)
		}
		if m == 0 {
			break
		}
		n += m
	}
	if n < len(p) {
		return io.ErrUnexpectedEOF
	}
	return nil
}

// check reports whether the descriptor that readAt used since the last
// check is still open on f: if it was closed, and its number reused, the
// bytes read may be of another file. With nothing read, there is nothing
// to vouch for: a descriptor found earlier may have closed since (a
// connection of the pool, at Close) without anything read through it.
func (f *sqliteFile) check() error {
	fd := f.read
	f.read = -1
	if fd >= 0 && !sameInode(fd, &f.st) {
		f.fd = -1
		return fmt.Errorf("%s: %w", f.path, errDescriptorChanged)
	}
	return nil
}

// size returns the size of f now.
func (f *sqliteFile) size() (int64, error) {
	fd, err := f.descriptor()
	if err != nil {
		return 0, err
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("%s: %w", f.path, err)
	}
	if st.Dev != f.st.Dev || st.Ino != f.st.Ino {
		return 0, fmt.Errorf("%s: %w", f.path, errDescriptorChanged)
	}
	return st.Size, nil
}

// isAt reports whether f is still the file at the path it was found at:
// false when that path names another file or none.
func (f *sqliteFile) isAt() (bool, error) {
	fi, err := os.Stat(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Dev == f.st.Dev && st.Ino == f.st.Ino, nil
}

// inUse reports whether a descriptor of this process is open on f.
func (f *sqliteFile) inUse() bool {
	_, err := f.descriptor()
	return err == nil
}

// SQLite's locks on a database file (os_unix.c, sqliteInt.h): byte ranges
// far into the file, from PENDING_BYTE (0x40000000), then RESERVED_BYTE,
// then the 510 bytes of the SHARED range. A connection in WAL mode keeps a
// read lock on the SHARED range for as long as it is open (pager.c:
// pager_unlock leaves it in WAL mode).
const (
	sqlitePendingByte = 0x40000000
	sqliteLockBytes   = 2 + 510
)

// lockedElsewhere returns the id of a process other than this one that
// holds one of SQLite's locks on the database file fi, or 0 when none
// does. It asks with fcntl(F_GETLK) on a descriptor that SQLite holds open
// on the file, which neither takes a lock nor reports this process's own.
func lockedElsewhere(fi os.FileInfo) (int, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, errors.New("no inode to compare")
	}
	fd, err := descriptorOf(st)
	if err != nil {
		return 0, err
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart, Start: sqlitePendingByte, Len: sqliteLockBytes}
	if err := syscall.FcntlFlock(uintptr(fd), syscall.F_GETLK, &lk); err != nil {
		return 0, fmt.Errorf("asking for the database file's locks: %w", err)
	}
	if !sameInode(fd, st) { // closed and reused meanwhile: asked of another file
		return 0, errDescriptorChanged
	}
	if lk.Type == syscall.F_UNLCK {
		return 0, nil
	}
	return int(lk.Pid), nil
}

// openInProcess reports whether a descriptor of this process is open on
// the file fi.
func openInProcess(fi os.FileInfo) (bool, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false, errors.New("no inode to compare")
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && sameInode(fd, st) {
			return true, nil
		}
	}
	return false, nil
}
