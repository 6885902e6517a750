package authn

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"unsafe"
)

// The WAL-index header, and why an unchanged one means nothing was
// committed.
//
// A SQLite database in WAL mode has, beside the database and its -wal file,
// a -shm file that every connection to it, in every process, maps into
// memory: the WAL-index. It starts with a 48-byte header, stored twice, the
// second copy right after the first (SQLite's file format, "WAL-mode File
// Format", section 2.1 "The WAL-Index Header"; wal.c: struct WalIndexHdr,
// walIndexWriteHdr, walIndexTryHdr). Its fields, in the machine's byte
// order: iVersion (3007000), unused, iChange, isInit and bigEndCksum (a
// byte each) and szPage (16 bits), mxFrame, nPage, aFrameCksum[2],
// aSalt[2], aCksum[2]: a checksum of the 40 bytes before it.
//
// A writer makes its commit visible by writing the header, and only so: it
// appends its frames to the -wal file, then writes the header with iChange
// one higher and mxFrame at its last frame, the second copy first and then,
// after a memory barrier, the first. A reader reads the first copy, then
// the second, and trusts them only when both are equal; otherwise it waits
// and reads again. Restarting the WAL after a checkpoint writes the header
// too (mxFrame 0, new salts). A rollback-journal write cannot happen while
// any connection has the database open in WAL mode: such a connection holds
// a shared lock on the database file for as long as it is open, and leaving
// WAL mode needs an exclusive one.
//
// So, if both copies read equal to a valid header H now, and H was read
// before some row was read, nothing was committed, by any process, between
// that read of H and now: the row is what a read made now would return.
// The converse does not matter: a header that changed only costs a read.
//
// One writer of the header does not count up: a recovery (wal.c:
// walIndexRecover), which rebuilds the WAL-index from the -wal file when
// the header is torn or not initialized, starts from a zeroed header and
// writes it with iChange 0. Over an empty -wal it writes the same header
// every time, whatever was committed in between: the header every process
// start finds. A recovery that finds the -wal empty again later needs the
// -shm or the -wal damaged from outside (a writer that dies between the
// two copies leaves its frames in the -wal), but nothing is answered from
// memory under a header with iChange 0 (fromRecovery): it costs reads from
// a recovery to the next commit, usually a process start to its first
// commit. The headers that commits write never come back: within one
// generation of the WAL's salts mxFrame only grows, a restart of the WAL
// draws new salts, and a repeat would need iChange to wrap around, 2³²
// commits, with the same frame, salts and checksums, while the memo
// holding the row (see memo) lives.
//
// The header is loaded with atomic 32-bit loads: each word is aligned, and
// the loads keep their order, so the first copy is read before the second
// as SQLite reads it.

// walHeaderWords is the size of one copy of the WAL-index header, in 32-bit
// words.
const walHeaderWords = 12

// walIndexVersion is iVersion of every WAL-index header SQLite writes.
const walIndexVersion = 3007000

// walHeader is one copy of a WAL-index header, as SQLite's structure lays
// it out in memory. Its zero value is not a valid header.
type walHeader [walHeaderWords]uint32

// valid reports whether h is the header of an initialized WAL-index: the
// version SQLite writes, isInit set and its checksum right (walIndexTryHdr
// checks the same). A -shm file being recovered or being created is not.
func (h *walHeader) valid() bool {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], h[3]) // isInit, bigEndCksum, szPage
	if h[0] != walIndexVersion || b[0] == 0 {
		return false
	}
	// walChecksumBytes over the first ten words, in native byte order.
	var s1, s2 uint32
	for i := 0; i < 10; i += 2 {
		s1 += h[i] + s2
		s2 += h[i+1] + s1
	}
	return h[10] == s1 && h[11] == s2
}

// fromRecovery reports whether h was written by a recovery, not by a
// commit: its iChange is 0 (see above). Such a header can come back after
// commits, so it says nothing about them.
func (h *walHeader) fromRecovery() bool { return h[2] == 0 }

// walIndex reads the WAL-index header of one SQLite database from a
// read-only mapping of the start of its -shm file. The mapping is made and
// removed by the platform's code (walindex_linux.go); until Close or
// disable removes it, header reads it with no system call.
type walIndex struct {
	mu sync.RWMutex // held to read words, exclusively to unmap them
	// words are the two header copies; nil once the index is off.
	words *[2 * walHeaderWords]uint32
	unmap func() error // removes the mapping behind words
	off   atomic.Bool  // disabled: the mapping no longer says what the file does
}

// newWALIndex returns the index over mem, a mapping of the start of a
// -shm file at least the size of the two header copies, that unmap removes.
func newWALIndex(mem []byte, unmap func() error) (*walIndex, error) {
	if len(mem) < 2*walHeaderWords*4 || uintptr(unsafe.Pointer(&mem[0]))%4 != 0 {
		return nil, errors.Join(errors.New("mapping too small or misaligned"), unmap())
	}
	return &walIndex{words: (*[2 * walHeaderWords]uint32)(unsafe.Pointer(&mem[0])), unmap: unmap}, nil
}

// header returns the current header, or ok false when there is none to
// trust: the index is off, the copies differ (a commit is being written),
// or the header is not valid. Then the caller reads the database.
func (w *walIndex) header() (h walHeader, ok bool) {
	if w == nil || w.off.Load() {
		return h, false
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.words == nil {
		return h, false
	}
	var second walHeader
	for i := range h {
		h[i] = atomic.LoadUint32(&w.words[i])
	}
	for i := range second {
		second[i] = atomic.LoadUint32(&w.words[walHeaderWords+i])
	}
	if h != second || !h.valid() {
		return walHeader{}, false
	}
	return h, true
}

// disable turns the index off for good and removes the mapping: from then
// on every read goes to the database.
func (w *walIndex) disable() error {
	if w == nil {
		return nil
	}
	w.off.Store(true) // set already when turnOff calls
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.words == nil {
		return nil
	}
	w.words = nil
	return w.unmap()
}
