//go:build linux

package authn

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// mapWALIndex maps the start of the -shm file at shmPath read-only and
// returns the index over it.
//
// It maps the descriptor SQLite itself holds open on the file, found among
// this process's descriptors by device and inode, and never opens or
// closes one of its own: closing any descriptor of a file drops every
// POSIX lock this process holds on it (fcntl(2)), SQLite's included, and a
// process whose -shm locks were dropped lets another one rebuild the
// WAL-index under it. Mapping a descriptor takes a reference to the file,
// not to the descriptor, so the mapping stays valid whatever SQLite does
// with it later; the caller holds a connection open (see openFastReads),
// so that SQLite keeps its descriptor, the file and its locks.
//
// The mapping is shared, so SQLite's writes through its own mapping, from
// this process or another, are seen in it at once. SQLite grows a -shm file
// and never shrinks it while a connection has it open: the mapped page
// stays within the file.
func mapWALIndex(shmPath string) (*walIndex, os.FileInfo, error) {
	fi, err := os.Stat(shmPath)
	if err != nil {
		return nil, nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, nil, errors.New("no inode to compare")
	}
	size := os.Getpagesize()
	if fi.Size() < int64(size) {
		return nil, nil, fmt.Errorf("%s is %d bytes, not yet a WAL-index", shmPath, fi.Size())
	}
	fd, err := descriptorOf(st)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w: SQLite does not use it", shmPath, err)
	}
	mem, err := syscall.Mmap(fd, 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("mapping %s: %w", shmPath, err)
	}
	// The descriptor could have been closed and its number reused between
	// the search and the mapping: make sure the mapping is of the file.
	if !sameInode(fd, st) {
		return nil, nil, errors.Join(fmt.Errorf("%s: its descriptor changed while it was mapped", shmPath), syscall.Munmap(mem))
	}
	w, err := newWALIndex(mem, func() error { return syscall.Munmap(mem) })
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", shmPath, err)
	}
	return w, fi, nil
}

// descriptorOf returns a descriptor of this process open on the file
// of st, as /proc/self/fd lists them.
func descriptorOf(st *syscall.Stat_t) (int, error) {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1, err
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err == nil && sameInode(fd, st) {
			return fd, nil
		}
	}
	return -1, errors.New("no descriptor of this process is open on the file")
}

// sameInode reports whether descriptor fd is open on the file of st.
func sameInode(fd int, st *syscall.Stat_t) bool {
	var got syscall.Stat_t
	return syscall.Fstat(fd, &got) == nil && got.Dev == st.Dev && got.Ino == st.Ino
}
