package authn

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// A database file replaced under the path: the part of Open's file watch
// (see fileWatch) that decides when the file now at the path may be
// served.
//
// An operator who restores a copy by moving it over the database file
// ("mv copy auth.db") tends to leave the old file's -wal and -shm where
// they are. SQLite ties neither to its database file: a connection that
// opens the copy takes the -wal and -shm at their paths, and reads each
// page that the -wal holds instead of the copy's, even over a copy in
// rollback mode (pager.c: pagerOpenWalIfPresent opens any -wal present).
// What it serves is neither file: the copy, with pages of the old file's
// latest commits on top (measured: a user locked in the copy and unlocked
// in the old file after the copy was taken let in on every request).
//
// So the file now at the path is served only once no connection that
// opens it can read the old file's -wal, and until then every statement
// fails closed. Each check (replace) goes as far as it can:
//
//  1. No connection of the pool is left on the old file: the statements in
//     flight end (drained), then every connection is closed, and none
//     opens meanwhile, since the pool's connector opens only the file the
//     watch vetted (fileGate).
//  2. If the old file's -wal or -shm is still at its path, it is emptied
//     through the keeper (see walKeeper), which still holds the old file:
//     a checkpoint in TRUNCATE mode copies the -wal's frames into the old
//     file, which nobody at the path reads any more, then leaves the -wal
//     empty and the WAL-index listing no frame. It is run only when no
//     other process has the old file open: such a process would go on
//     writing the old file's pages to the -wal at the path. SQLite's
//     connections in WAL mode hold a shared lock on their database file
//     for as long as they are open, which fcntl(F_GETLK), asked through
//     SQLite's own descriptor, reports (lockedElsewhere). A reader or
//     writer that keeps the checkpoint from finishing is waited for.
//  3. The keeper closed (its close runs no checkpoint: SQLite checkpoints
//     at close only a database file still at its path, pager.c:
//     databaseIsUnmoved), no descriptor of this process is left on the
//     old file: another Open of it, or the application's own pool, would
//     also write to the -wal. The old -wal, if at the path, is still
//     empty: one of those that wrote to it after step 2, then closed, is
//     seen so (and the server fails closed until a restart).
//  4. The file at the path is vetted, and the pool opens it.
//
// A restore that brings its own -wal and -shm (the three files moved
// together) needs no step 2, nor does a copy moved in alone once the old
// -wal and -shm are gone: the new file is served as soon as the pool has
// let go of the old one. A copy moved in with the old -wal deleted but the
// old -shm left is emptied too: its WAL-index would list frames of a -wal
// that is gone to a connection opening the copy while another process
// holds that -shm.
//
// Limits. In the second before the watch notices, the pool's open
// connections serve the old file (and the pool opens none on the new one),
// but another process that opens the new file meanwhile reads the old
// -wal over it; what it writes through that -wal, then or while this
// watch waits for step 2, goes into the old file with the old -wal's
// frames. A connection of another process that opened the old file but
// never read it holds no lock, and is not seen. Without the keeper (on
// other systems than Linux, or while it cannot open), no -wal can be
// emptied, and neither other processes nor this one's other connections
// are seen: a -wal that is not empty at the path fails closed until it is
// gone, and an empty one is taken as the new file's.

// fileGate lets the pool of Open open connections only on the database
// file the watch has vetted: the one opened first, then each one that
// replaced it once replace has made sure that a connection on it would not
// read the old file's -wal. Without it, a connection opened in the second
// before the watch notices, or while it waits, would read the mix.
type fileGate struct {
	path   string
	vetted atomic.Pointer[os.FileInfo]
}

// newFileGate returns the gate of the database file at path, vetting the
// file now there.
func newFileGate(path string) (*fileGate, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	g := &fileGate{path: path}
	g.vet(fi)
	return g, nil
}

func (g *fileGate) vet(fi os.FileInfo) { g.vetted.Store(&fi) }
func (g *fileGate) vettedFile() os.FileInfo {
	return *g.vetted.Load()
}

// allow returns an error unless the file at the path is the one vetted. A
// missing file is refused too: SQLite would create an empty one.
func (g *fileGate) allow() error {
	fi, err := os.Stat(g.path)
	if err != nil {
		return fmt.Errorf("authn: database file: %w", err)
	}
	if !os.SameFile(fi, g.vettedFile()) {
		return fmt.Errorf("authn: the database file %s was replaced; no connection opens it until the file watch has made sure none would read the old file's -wal over it", g.path)
	}
	return nil
}

// gatedConnector is the pool's Connector: it opens a connection only on
// the file its gate allows, checked before and after SQLite opens it (the
// file could be replaced in between).
type gatedConnector struct {
	driver.Connector
	gate *fileGate
}

func (c gatedConnector) Connect(ctx context.Context) (driver.Conn, error) {
	if err := c.gate.allow(); err != nil {
		return nil, err
	}
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.gate.allow(); err != nil {
		return nil, errors.Join(err, conn.Close())
	}
	return conn, nil
}

// replaceCheckpointWait bounds how long the checkpoint of step 2 waits for
// a reader or writer of the old -wal; the next check tries again.
const replaceCheckpointWait = 200 * time.Millisecond

// restoreAdvice ends each log line about a replacement that cannot be
// served yet.
const restoreAdvice = "To restore a copy safely, run authctl restore FILE, or stop every process using the database, " +
	"move the copy in and delete the old -wal and -shm beside it"

// replaced starts following a database file replaced under the path:
// every statement fails closed from now on, and the reads from memory stop
// for good (the WAL-index header no longer describes the file at the
// path).
func (w *fileWatch) replaced(ctx context.Context) {
	err := fmt.Errorf("authn: the database file %s was replaced; failing closed until no connection could read the old file's -wal over the new one", w.path)
	w.replaceErr, w.replaceWhy, w.oldWAL = err, "", nil
	w.a.store.problem.Store(&err)
	w.a.store.fast.turnOff(ctx)
	w.a.logger.WarnContext(ctx, "authn: database file replaced; failing closed until the connections to the old file are closed and its -wal, if still at the path, is emptied",
		"path", w.path)
}

// replace runs the steps above as far as it can, and returns the problem
// of every statement: nil once the file at the path is served.
func (w *fileWatch) replace(ctx context.Context) error {
	if w.walState == walDamaged {
		// No checkpoint may copy the damaged -wal; nor may the new file
		// be read with it (a restart would, as a connection opened now).
		return w.cannotServe(ctx, "the old file's -wal had lost committed frames; stop the server, delete the -wal and -shm beside the database, and start it again")
	}
	if !w.drained(ctx) {
		return w.replaceErr
	}
	w.reopenPool()
	if n := w.sqldb.Stats().OpenConnections; n > 0 {
		return w.replaceErr // in use again: closed when returned
	}
	if why, attrs := w.releaseOldWAL(ctx); why != "" {
		return w.cannotServe(ctx, why, attrs...)
	}
	if w.keeper != nil {
		k := w.keeper
		w.keeper, w.oldWAL = nil, k.wal
		if err := k.close(); err != nil {
			w.a.logger.ErrorContext(ctx, "authn: closing the file watch's connection", "error", err)
		}
	}
	switch open, err := openInProcess(w.opened); {
	case err != nil:
		return w.cannotServe(ctx, "whether a connection of this process still has the old file open cannot be told", "error", err)
	case open:
		return w.cannotServe(ctx, "a connection of this process still has the old file open (another Open of the same file, or the application's own pool on it), "+
			"and could write to the -wal at the path; close it")
	}
	// Nothing of this process holds the old file now, nor can anything
	// open it again. Its -wal, emptied in step 2, must still be empty if
	// at the path: a connection that wrote to it since, and closed, is
	// not seen otherwise.
	if w.oldWAL != nil {
		fi, err := os.Stat(w.path + "-wal")
		if at, _ := w.oldWAL.isAt(); err == nil && at && fi.Size() > 0 {
			return w.cannotServe(ctx, "the old file's -wal, at the path, was written to after it was emptied; "+
				"stop every process using the database, delete the -wal and -shm beside it, and start again", "size", fi.Size())
		}
	}
	fi, err := os.Stat(w.path)
	if err != nil {
		return w.replaceErr // checkFile tells at the next check
	}
	w.opened = fi
	w.gate.vet(fi)
	w.sqldb.SetConnMaxLifetime(0)
	w.reopening = false
	w.replaceErr, w.replaceWhy, w.oldWAL = nil, "", nil
	w.walState, w.walErr, w.stale, w.walBlind = walSound, nil, nil, 0
	if walWatchSupported {
		w.openKeeper(ctx) // tried again each check
	}
	w.a.logger.WarnContext(ctx, "authn: serving the database file now at the path; no connection uses the old one", "path", w.path)
	return nil
}

// releaseOldWAL makes sure that the -wal and -shm at the path hold
// nothing of the old file (step 2), and returns why it cannot yet, with
// log attributes, or "" once done.
func (w *fileWatch) releaseOldWAL(ctx context.Context) (why string, attrs []any) {
	k := w.keeper
	switch {
	case k == nil && w.oldWAL != nil:
		return "", nil // emptied, with the keeper since closed: see replace
	case k == nil:
		// Nothing holds the old file to empty its -wal with: a -wal with
		// content at the path may be its.
		fi, err := os.Stat(w.path + "-wal")
		if err == nil && fi.Size() > 0 {
			return "the -wal at the path may hold the old file's commits, and no connection to the old file is left to empty it; " +
				"stop every process using the database and delete the -wal and -shm beside it", []any{"size", fi.Size()}
		}
		return "", nil
	}
	walAt, err := k.wal.isAt()
	if err != nil {
		return "the -wal at the path cannot be checked", []any{"error", err}
	}
	shmAt, err := k.shm.isAt()
	if err != nil {
		return "the -shm at the path cannot be checked", []any{"error", err}
	}
	if !walAt && !shmAt {
		return "", nil // the new file came with its own, or none
	}
	switch pid, err := lockedElsewhere(w.opened); {
	case err != nil:
		return "whether another process has the old file open cannot be told", []any{"error", err}
	case pid != 0:
		return "another process still has the old file open and uses the -wal and -shm left at the path; stop it", []any{"pid", pid}
	}
	switch damage, err := k.verify(); {
	case err != nil:
		return "the old file's -wal cannot be checked", []any{"error", err}
	case damage != "":
		w.walDamaged(ctx, "the replaced file's -wal: "+damage)
		return "the old file's -wal had lost committed frames; stop the server, delete the -wal and -shm beside the database, and start it again", nil
	}
	var size int64
	if walAt {
		if size, err = k.wal.size(); err != nil {
			return "the old file's -wal cannot be checked", []any{"error", err}
		}
	}
	done, err := k.checkpointWaiting(ctx, replaceCheckpointWait)
	switch {
	case err != nil:
		return "emptying the old file's -wal failed", []any{"error", err}
	case !done:
		return "a reader or writer of the old file's -wal, still at the path, keeps it from being emptied", nil
	}
	if size > 0 {
		w.a.logger.WarnContext(ctx, "authn: the old database file's -wal was left at the path; its commits were copied into the old file and it was emptied, so that the new file is served alone. "+
			restoreAdvice, "path", k.wal.path, "bytes", size)
	}
	return "", nil
}

// cannotServe fails closed on a replaced file that cannot be served yet,
// logging why at level ERROR when the reason is new, and returns the
// problem of every statement.
func (w *fileWatch) cannotServe(ctx context.Context, why string, attrs ...any) error {
	w.replaceErr = fmt.Errorf("authn: the database file %s was replaced, and %s", w.path, why)
	if why != w.replaceWhy {
		w.replaceWhy = why
		w.a.logger.ErrorContext(ctx, "authn: the database file was replaced under the server, and "+why+
			". Failing closed until then: a connection opening the new file now would read the old file's commits over it, "+
			"serving neither. "+restoreAdvice,
			append([]any{"path", w.path}, attrs...)...)
	}
	return w.replaceErr
}
