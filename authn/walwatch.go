package authn

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// The -wal watch: the part of Open's file watch (see fileWatch) that
// follows the database's -wal file, on Linux.
//
// In WAL mode a commit is durable once its frames are in the -wal; the
// database file gets them only at a checkpoint. The WAL-index (the -shm,
// see walindex.go) lists what is committed: mxFrame, the number of frames
// of the -wal that hold commits, and the two salts that every frame of the
// current generation of the -wal carries, in its header as in the -wal's
// own header (SQLite's "WAL-mode File Format"). Two mistakes made from
// outside break that under a running server, and SQLite notices neither:
//
//   - The -wal deleted, or replaced by another file. The connections open
//     before go on writing to the deleted inode and answer success for
//     commits that the next start will not see: SQLite then finds no -wal,
//     or another. The frames are still in the deleted inode, which those
//     connections read and write.
//   - The -wal truncated or overwritten in place. The WAL-index still lists
//     frames that are gone. A commit appends its frames after them, which
//     leaves zeros where they were; a checkpoint, which copies frames
//     without checking them, then copies those zeros over the database's
//     pages, page 1 included ("file is not a database"). The last
//     connection to close runs such a checkpoint.
//
// Legitimate changes of the -wal look alike from outside: a checkpoint in
// TRUNCATE mode empties it, PRAGMA journal_size_limit shrinks it, and a
// writer that restarts it overwrites it from the start. Each of them, in
// any process, first rewrites the WAL-index header, with mxFrame 0 and new
// salts (wal.c: walRestartHdr), and only then changes the file; within one
// generation of the salts the -wal is only appended to.
// So checkWAL reads the WAL-index header, then the -wal, then the header
// again: when the salts are the same and mxFrame has not gone down, no
// legitimate change touched the frames read, and a -wal shorter than
// mxFrame frames, or one of them not carrying the salts (zeros, a hole
// left by a truncation, another file's bytes), or a last frame that is not
// the commit the header lists, is damage. Otherwise it reads again.
//
// Deleted or replaced is told by the -wal's inode. SQLite removes a -wal
// only when the last connection of every process closes, and the watch
// holds a connection of its own open (the keeper, see walKeeper): while it
// is open, the -wal at the path is never legitimately another file.
//
// What each case saves:
//
//   - Deleted or replaced, the keeper's old -wal whole: its frames are
//     checkpointed into the database file through the keeper, which reads
//     them from the old file (TRUNCATE mode, so that the WAL-index lists no
//     frame afterwards and the next commit starts the file at the path
//     afresh), then every connection is reopened on the file at the path,
//     and requests are served again once no connection holds the old file.
//     Every commit answered before the watch noticed is kept (saveWAL waits
//     for the statements in flight); a connection opened after the
//     deletion finds a new, empty -wal, and its reads of committed frames
//     fail (503), unless it commits, which is the next case.
//   - The -wal damaged (truncated, overwritten, or deleted after a
//     connection already wrote to a new one): nothing is copied. Requests
//     fail until a restart, and no checkpoint may run: the keeper stays
//     open, so that no other connection is the last to close, and Close
//     leaves it open (see fileWatch.close), so that its own close does not
//     checkpoint either. At the next start SQLite rebuilds the WAL-index
//     from the -wal, whose header or frames no longer check out, so it
//     ignores what follows them: the database file holds every commit
//     checkpointed before the damage; later ones are lost.
//
// Limits: the watch looks each second, and in that second requests are
// served as before; an automatic checkpoint in that second (SQLite runs one
// after a commit that leaves 1000 frames or more in the -wal) can already
// copy zeros of a truncated -wal. A checkpoint that saves a deleted -wal is
// not atomic: a crash in the milliseconds it copies leaves a database file
// with some pages newer than others and no -wal to complete them.
// Another process's connections are not this one's to reopen: one that
// keeps writing to a deleted -wal shows as damage. Checking costs a read of
// 24 bytes per frame listed, about 1.5 ms a second with 1000 frames (SQLite
// checkpoints at 1000 by default).

// The -wal's format (SQLite's "WAL-mode File Format", section 1).
const (
	walFileHeaderSize  = 32
	walFrameHeaderSize = 24
	walMagic           = 0x377f0682 // the low bit, the checksums' byte order, masked off
)

// walCheckTries bounds how often checkWAL starts again because a commit or
// a checkpoint changed the WAL-index while it read.
const walCheckTries = 20

// errWALUnsettled: checkWAL could not read the WAL-index and the -wal
// without the WAL-index changing meanwhile, or being rebuilt.
var errWALUnsettled = errors.New("the WAL-index kept changing while it was read")

// walReader reads a file that SQLite holds open in this process, through
// SQLite's descriptor.
type walReader interface {
	// readAt fills p from off; io.ErrUnexpectedEOF when the file ends
	// first. What it read is of the file if check, called after, says so.
	readAt(p []byte, off int64) error
	check() error
	size() (int64, error) // checked
}

// checkWAL reports whether the -wal read through wal holds every frame
// that the WAL-index read through shm lists as committed: damage says
// what is missing, and is empty when nothing is. An error says that it
// could not tell.
func checkWAL(shm, wal walReader) (damage string, err error) {
	for try := range walCheckTries {
		if try > 0 {
			time.Sleep(time.Duration(try) * 100 * time.Microsecond)
		}
		before, ok, err := readWALIndex(shm)
		if err != nil {
			return "", err
		}
		if !ok { // being written, or rebuilt
			continue
		}
		damage, err := walFrames(wal, &before)
		if err == nil {
			err = wal.check()
		}
		if err != nil {
			return "", err
		}
		after, ok, err := readWALIndex(shm)
		if err != nil {
			return "", err
		}
		// Only appended to meanwhile: what was read is what before lists.
		if ok && after.salts() == before.salts() && after.mxFrame() >= before.mxFrame() {
			return damage, nil
		}
	}
	return "", errWALUnsettled
}

// readWALIndex reads the WAL-index header; ok is false when it is not to
// be trusted now (the two copies differ, or it is not valid).
func readWALIndex(shm walReader) (h walHeader, ok bool, err error) {
	var b [2 * walHeaderWords * 4]byte
	err = shm.readAt(b[:], 0)
	if err == nil {
		err = shm.check()
	}
	if err != nil {
		return h, false, fmt.Errorf("reading the WAL-index: %w", err)
	}
	var second walHeader
	for i := range h {
		h[i] = binary.NativeEndian.Uint32(b[4*i:])
		second[i] = binary.NativeEndian.Uint32(b[4*(walHeaderWords+i):])
	}
	return h, h == second && h.valid(), nil
}

// walFrames checks that wal holds the frames h lists: see checkWAL.
func walFrames(wal walReader, h *walHeader) (damage string, err error) {
	n := int64(h.mxFrame())
	if n == 0 {
		return "", nil // nothing committed since the -wal last started afresh
	}
	pageSize := h.pageSize()
	frame := walFrameHeaderSize + int64(pageSize)
	need := walFileHeaderSize + n*frame
	size, err := wal.size()
	if err != nil {
		return "", err
	}
	if size < need {
		return fmt.Sprintf("it is %d bytes; the WAL-index lists %d frames, %d bytes", size, n, need), nil
	}
	salts := h.salts()
	var head [walFileHeaderSize]byte
	switch err := wal.readAt(head[:], 0); {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "it has no header", nil
	case err != nil:
		return "", err
	}
	if binary.BigEndian.Uint32(head[0:])&^1 != walMagic || binary.BigEndian.Uint32(head[8:]) != uint32(pageSize) ||
		[8]byte(head[16:24]) != salts {
		return "its header is not the one the WAL-index lists (zeroed or overwritten)", nil
	}
	var fh [walFrameHeaderSize]byte
	for i := int64(1); i <= n; i++ {
		switch err := wal.readAt(fh[:], walFileHeaderSize+(i-1)*frame); {
		case errors.Is(err, io.ErrUnexpectedEOF):
			return fmt.Sprintf("it ends before frame %d of the %d listed", i, n), nil
		case err != nil:
			return "", err
		}
		if binary.BigEndian.Uint32(fh[0:]) == 0 || [8]byte(fh[8:16]) != salts {
			return fmt.Sprintf("frame %d of the %d listed is not there (zeroed or overwritten)", i, n), nil
		}
	}
	// The last frame ends the last commit: it carries the database's size
	// in pages and the checksum the header lists.
	if binary.BigEndian.Uint32(fh[4:]) != h.nPage() ||
		binary.BigEndian.Uint32(fh[16:]) != h[6] || binary.BigEndian.Uint32(fh[20:]) != h[7] {
		return fmt.Sprintf("its last frame (%d) is not the commit the WAL-index lists", n), nil
	}
	return "", nil
}

// mxFrame is the number of frames of the -wal that hold commits.
func (h *walHeader) mxFrame() uint32 { return h[4] }

// nPage is the size of the database in pages after the last commit.
func (h *walHeader) nPage() uint32 { return h[5] }

// pageSize decodes szPage, a 16-bit field in which 65536 is 1.
func (h *walHeader) pageSize() int {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], h[3]) // isInit, bigEndCksum, szPage
	sz := int(binary.NativeEndian.Uint16(b[2:]))
	return sz&0xfe00 | (sz&1)<<16
}

// salts are the two salts as the -wal stores them: SQLite copies them
// between the file and the header as bytes.
func (h *walHeader) salts() [8]byte {
	var b [8]byte
	binary.NativeEndian.PutUint32(b[0:], h[8])
	binary.NativeEndian.PutUint32(b[4:], h[9])
	return b
}

// walKeeper is the file watch's own connection to the database, in a pool
// of its own, held open from Open to Close.
//
// While it is open no other connection, of this process or of another, is
// the last to close the database, so none runs the checkpoint that SQLite
// runs at the last close (wal.c: sqlite3WalClose needs an exclusive lock
// on the database file, and this connection holds a shared one); only its
// own close may, and the watch decides whether it does. It also holds the
// -wal it opened, which the watch checks and a checkpoint through it reads,
// and SQLite's WAL-index of this process.
type walKeeper struct {
	pool     *sql.DB
	conn     *sql.Conn
	wal, shm *sqliteFile
}

// openWALKeeper opens the keeper of the database at path with driver d.
// It fails when not every connection of this process uses the -wal and
// -shm now at their paths (openedFile), so that the keeper's are those.
func openWALKeeper(ctx context.Context, d driver.Driver, path string) (*walKeeper, error) {
	pool, conn, err := openPinned(ctx, d, path)
	if err != nil {
		return nil, err
	}
	k := &walKeeper{pool: pool, conn: conn}
	// SQLite's own name for the file: a symbolic link is resolved.
	file, err := sqliteMainFile(ctx, conn)
	if err == nil {
		k.wal, err = openedFile(file + "-wal")
	}
	if err == nil {
		k.shm, err = openedFile(file + "-shm")
	}
	if err != nil {
		return nil, errors.Join(err, k.close())
	}
	return k, nil
}

// verify checks the keeper's -wal against the WAL-index (checkWAL).
func (k *walKeeper) verify() (damage string, err error) { return checkWAL(k.shm, k.wal) }

// checkpoint copies every frame of the -wal into the database file and
// restarts the -wal, through the keeper; done is false when another
// connection kept it from finishing. It is not cancelled with ctx: an
// interrupted checkpoint leaves the database file part copied.
func (k *walKeeper) checkpoint(ctx context.Context) (done bool, err error) {
	return checkpointTruncate(context.WithoutCancel(ctx), k.conn)
}

// checkpointWaiting is checkpoint waiting at most wait, rather than the
// busy timeout, for the readers and writers in its way.
func (k *walKeeper) checkpointWaiting(ctx context.Context, wait time.Duration) (done bool, err error) {
	ctx = context.WithoutCancel(ctx)
	if err := setBusyTimeout(ctx, k.conn, wait); err != nil {
		return false, fmt.Errorf("checkpoint: %w", err)
	}
	done, err = k.checkpoint(ctx)
	if rerr := setBusyTimeout(ctx, k.conn, busyTimeoutMillis*time.Millisecond); rerr != nil {
		err = errors.Join(err, fmt.Errorf("checkpoint: %w", rerr))
	}
	return done, err
}

func (k *walKeeper) close() error { return errors.Join(k.conn.Close(), k.pool.Close()) }

// walState is where the -wal watch stands.
type walState int

const (
	walSound     walState = iota // the -wal holds every committed frame
	walSaving                    // deleted or replaced: its frames are being checkpointed
	walReopening                 // saved: connections are being reopened on the file at the path
	walDamaged                   // committed frames are gone: failing closed until a restart
)

// openKeeper opens the keeper, if it can: not while connections of this
// process still use a -wal deleted or replaced.
func (w *fileWatch) openKeeper(ctx context.Context) error {
	k, err := openWALKeeper(ctx, w.sqldb.Driver(), w.path)
	if err != nil {
		return err
	}
	w.keeper = k
	return nil
}

// watchWAL runs the -wal watch once, with the database file found sound,
// and returns the -wal's problem: nil when there is none.
func (w *fileWatch) watchWAL(ctx context.Context) error {
	switch {
	case !walWatchSupported || w.walState == walDamaged:
		return w.walErr
	case w.walState == walReopening:
		w.finishReopen(ctx)
		return w.walErr
	case w.keeper == nil:
		// Not open at Open, or not yet after the database file was
		// replaced: tried again each check.
		if w.openKeeper(ctx) != nil {
			return w.walErr
		}
	}
	at, err := w.keeper.wal.isAt()
	switch {
	case err != nil:
		w.unchecked(ctx, err)
	case !at:
		if w.walState == walSound {
			w.walGone(ctx)
		}
		w.saveWAL(ctx)
	default:
		damage, err := w.keeper.verify()
		switch {
		case err != nil:
			w.unchecked(ctx, err)
		case damage != "":
			w.walDamaged(ctx, damage)
		case w.walState == walSaving: // the old file is at the path again (renamed back)
			w.walBack(ctx)
		default:
			w.walBlind = 0
		}
	}
	return w.walErr
}

// walBlindChecks is how many checks in a row may fail to tell whether the
// -wal is whole before a warning says so.
const walBlindChecks = 10

// unchecked counts a check that could not tell, and warns once when they
// go on: a watch that cannot see fails nothing closed, but should not be
// silent either.
func (w *fileWatch) unchecked(ctx context.Context, err error) {
	w.walBlind++
	if w.walBlind == walBlindChecks {
		w.a.logger.WarnContext(ctx, "authn: the database's -wal file could not be checked for some seconds; a -wal truncated meanwhile would go unnoticed",
			"checks", w.walBlind, "error", err)
	}
}

// walGone starts failing closed on a -wal deleted or replaced.
func (w *fileWatch) walGone(ctx context.Context) {
	w.walState, w.walBusyLogged = walSaving, false
	w.walErr = fmt.Errorf("authn: the database's -wal file %s was deleted or replaced while in use", w.keeper.wal.path)
	w.failClosed(ctx)
	w.a.logger.ErrorContext(ctx, "authn: the database's -wal file was deleted or replaced while the server had it open: "+
		"failing closed while its commits are copied into the database file and connections reopen it. "+
		"Never delete or replace the -wal or -shm of a database in use: to empty the -wal, checkpoint it "+
		"(sqlite3 FILE 'PRAGMA wal_checkpoint(TRUNCATE)')",
		"path", w.keeper.wal.path, "error", w.walErr)
}

// walDamaged fails closed until a restart: committed frames are gone.
func (w *fileWatch) walDamaged(ctx context.Context, damage string) {
	path := w.path + "-wal"
	if w.keeper != nil {
		path = w.keeper.wal.path
	}
	w.walState = walDamaged
	w.walErr = fmt.Errorf("authn: the database's -wal file %s no longer holds every committed frame: %s", path, damage)
	w.failClosed(ctx)
	w.a.logger.ErrorContext(ctx, "authn: the database's -wal file was truncated, overwritten or replaced while in use: "+
		"commits not yet checkpointed are lost. Failing closed until the server restarts, and no checkpoint runs, "+
		"so that none copies the damaged -wal into the database file. Restart the server: SQLite then ignores "+
		"the damaged part of the -wal, and the database file holds every commit checkpointed before; "+
		"run PRAGMA integrity_check on it if in doubt",
		"path", path, "error", w.walErr)
}

// failClosed makes the -wal's problem every statement's at once, rather
// than at the end of the check (see store.check), and turns the reads from
// memory off: the WAL-index header no longer describes a -wal that the
// next start will read.
func (w *fileWatch) failClosed(ctx context.Context) {
	err := w.walErr
	w.a.store.problem.Store(&err)
	w.a.store.fast.turnOff(ctx)
}

// drainWait bounds how long one check waits for the statements in flight
// before it saves a deleted -wal; the next check waits again.
const drainWait = 2 * time.Second

// drained waits, up to drainWait, until no connection of the pool is in
// use: the statements that started before the problem was made theirs
// have ended, and no other starts.
func (w *fileWatch) drained(ctx context.Context) bool {
	for deadline := time.Now().Add(drainWait); w.sqldb.Stats().InUse > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
	}
	return true
}

// saveWAL checkpoints the frames of the deleted or replaced -wal, which
// the keeper still holds, into the database file, then reopens every
// connection on the -wal at the path.
//
// It first waits for the statements in flight: one that commits through a
// connection holding the old file after the checkpoint would be lost, as
// its frames would be in no file the next start reads. Once none is in
// flight, none starts (the problem is published), so every connection of
// the pool is idle, and reopenPool closes them all at once, before any can
// write again. (A statement that passed store.check in the microseconds
// before the problem was published, but has not yet taken a connection,
// is not seen; if it commits to the old file, the check of the new one
// finds its frames missing, and the watch fails closed until a restart.)
func (w *fileWatch) saveWAL(ctx context.Context) {
	if !w.drained(ctx) {
		return // the next check tries again
	}
	k := w.keeper
	damage, err := k.verify()
	switch {
	case err != nil:
		return // the next check tries again
	case damage != "":
		// A connection that opened the file at the path since has
		// committed to it, or the old file was damaged: no file holds
		// every frame, and a checkpoint would copy part of them.
		w.walDamaged(ctx, "the deleted or replaced -wal: "+damage)
		return
	}
	done, err := k.checkpoint(ctx)
	switch {
	case err != nil:
		w.walDamaged(ctx, fmt.Sprintf("copying the deleted or replaced -wal into the database file: %v", err))
		return
	case !done:
		if !w.walBusyLogged {
			w.walBusyLogged = true
			w.a.logger.WarnContext(ctx, "authn: another connection kept the checkpoint of the deleted -wal from finishing; trying again each second",
				"path", k.wal.path)
		}
		return
	}
	w.a.logger.WarnContext(ctx, "authn: the commits of the deleted or replaced -wal are in the database file; reopening connections on the -wal at its path",
		"path", k.wal.path)
	w.walState = walReopening
	w.stale = append(w.stale, k.wal)
	w.keeper = nil
	if err := k.close(); err != nil {
		w.a.logger.ErrorContext(ctx, "authn: closing the file watch's connection", "error", err)
	}
	w.reopenPool()
	w.finishReopen(ctx)
}

// finishReopen serves again once no connection of this process holds a
// -wal deleted or replaced, the keeper is open on the file at the path,
// and that file holds what the WAL-index lists.
func (w *fileWatch) finishReopen(ctx context.Context) {
	w.stale = slices.DeleteFunc(w.stale, func(f *sqliteFile) bool { return !f.inUse() })
	if len(w.stale) > 0 {
		w.reopenPool() // a connection in use then, closed when returned; or idle since
		return
	}
	if w.keeper == nil && w.openKeeper(ctx) != nil {
		return
	}
	switch at, err := w.keeper.wal.isAt(); {
	case err != nil:
		return
	case !at: // deleted again
		w.walGone(ctx)
		w.saveWAL(ctx)
		return
	}
	switch damage, err := w.keeper.verify(); {
	case err != nil:
	case damage != "":
		w.walDamaged(ctx, damage)
	default:
		w.walBack(ctx)
	}
}

// walBack serves again.
func (w *fileWatch) walBack(ctx context.Context) {
	w.walState, w.walErr = walSound, nil
	w.a.logger.WarnContext(ctx, "authn: every connection uses the database's -wal file at its path again; serving", "path", w.keeper.wal.path)
}

// closeKeeper closes the keeper at Close, after the application's pool: its
// close may be the last of the database, which checkpoints. When the -wal
// is damaged, or cannot be checked, the keeper is left open instead, for
// the process's life, so that no checkpoint copies a damaged -wal into the
// database file; the error says so. A -wal deleted or replaced, but whole,
// is checkpointed first: the next start would not see its frames.
func (w *fileWatch) closeKeeper() error {
	k := w.keeper
	if k == nil {
		return nil
	}
	ctx := context.Background()
	if w.walState != walDamaged {
		damage, err := k.verify()
		if err != nil {
			damage = fmt.Sprintf("it could not be checked: %v", err)
		}
		if damage != "" {
			w.walDamaged(ctx, damage)
		}
	}
	if w.walState == walDamaged {
		w.a.logger.ErrorContext(ctx, "authn: Close leaves one database connection open: closing it would checkpoint the damaged -wal into the database file; end the process",
			"error", w.walErr)
		return fmt.Errorf("%w; one connection left open, so that no checkpoint copies it into the database file", w.walErr)
	}
	var err error
	if w.replaceErr != nil {
		// The database file was replaced, and the new one not served yet:
		// the next start would read the old file's -wal, if still at the
		// path, over the new file. It is emptied first, if it can be (see
		// replace.go); the keeper's close then runs no checkpoint, the
		// file it holds being no longer at the path.
		if why, _ := w.releaseOldWAL(ctx); why != "" {
			err = fmt.Errorf("authn: the database file %s was replaced, and %s: its next start would read the old file's commits over it", w.path, why)
		}
		w.keeper = nil
		return errors.Join(err, k.close())
	}
	w.keeper = nil
	if at, _ := k.wal.isAt(); !at {
		done, cerr := k.checkpoint(ctx)
		if cerr == nil && !done {
			cerr = errors.New("another connection kept the checkpoint from finishing")
		}
		if cerr != nil {
			err = fmt.Errorf("authn: the -wal %s was deleted or replaced, and its commits could not all be copied into the database file: %w", k.wal.path, cerr)
		}
	}
	return errors.Join(err, k.close())
}
