package authn

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/sqliteshim"
)

// busyTimeoutMillis is how long a connection waits for another writer before
// SQLite answers "database is locked".
const busyTimeoutMillis = 10_000

// Open opens the SQLite database file at path, creating it (mode 0600) if it
// does not exist, and returns an Authenticator over it; Close closes the
// file. Every pooled connection has a busy timeout, WAL and immediate
// transactions, set in the DSN; path is a file path, never a URI: a path
// starting with "file:" is refused (write "./file:…" for such a file name).
//
// Open watches the file each second: while it is missing or unusable, every
// request fails closed (503, and the Go API returns the error), with one log
// line at level ERROR. A file replaced under the path (a copy moved over it)
// is served once no connection could read the old file's -wal over it: the
// pool lets go of the old file, and the old -wal, if left at the path, is
// emptied into the old file (on Linux; elsewhere a -wal left that is not
// empty fails closed until it is gone); until then every request fails
// closed, and while another process has the old file open (it would write to
// that -wal) an ERROR line says so (see replace.go). Connections open only
// the file the watch has vetted. On Linux it watches the database's -wal
// file too, through a connection of its own held open until Close. A -wal
// deleted or replaced under the server has its commits copied into the
// database file through the connections that still hold it, and requests
// fail closed until every connection has reopened the -wal at the path. A
// -wal truncated or overwritten in place has lost commits not yet
// checkpointed: requests fail closed until a restart, and no checkpoint
// runs, so that none copies the damaged -wal into the database file (see
// Close). See walwatch.go for how legitimate checkpoints, by any process,
// are told from damage.
func Open(ctx context.Context, path string, cfg Config) (*Authenticator, error) {
	abs, err := checkDBFile(path)
	if err != nil {
		return nil, err
	}
	gate, err := newFileGate(abs)
	if err != nil {
		return nil, fmt.Errorf("authn: open %s: %w", path, err)
	}
	connector, err := connectorOf(sqliteshim.Driver(), sqliteDSN(abs, sqliteshim.DriverName()))
	if err != nil {
		return nil, fmt.Errorf("authn: open %s: %w", path, err)
	}
	if cfg.SecretKey == nil {
		if cfg.SecretKey, err = keyFile(abs+".key", cfg.Logger); err != nil {
			return nil, fmt.Errorf("authn: open %s: %w", path, err)
		}
	}
	sqldb := sql.OpenDB(gatedConnector{connector, gate})
	sqldb.SetMaxOpenConns(poolSize())
	sqldb.SetMaxIdleConns(poolSize())
	if err := pingUnlocked(ctx, sqldb); err != nil {
		sqldb.Close()
		return nil, fmt.Errorf("authn: open %s: %w", path, err)
	}
	a, err := New(ctx, bun.NewDB(sqldb, sqlitedialect.New()), cfg)
	if err != nil {
		sqldb.Close()
		return nil, fmt.Errorf("authn: open %s: %w", path, nested(err))
	}
	a.ownsDB = true
	a.warnIfShared(ctx, abs)
	if err := a.watchFile(ctx, gate, sqldb); err != nil {
		a.Close()
		return nil, fmt.Errorf("authn: open %s: %w", path, err)
	}
	return a, nil
}

// pingUnlocked opens a first connection, trying again for up to the busy
// timeout while the file is locked: a connection's journal_mode=WAL, on a
// file that another process or Open is switching to WAL at the same
// moment, can answer "database is locked" at once, without waiting in
// SQLite's busy handler (seen with six Opens racing on a new file).
func pingUnlocked(ctx context.Context, sqldb *sql.DB) error {
	deadline := time.Now().Add(busyTimeoutMillis * time.Millisecond)
	for {
		err := sqldb.PingContext(ctx)
		if err == nil || !strings.Contains(err.Error(), "database is locked") || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// checkDBFile makes sure path names a regular file this process can read and
// write, creating it with mode 0600 (the users' hashes are nobody else's
// business) when it is missing, but never through a symbolic link to a
// missing file. SQLite itself would silently open an unwritable file
// read-only, or create it world-readable.
func checkDBFile(path string) (string, error) {
	if path == "" {
		return "", errors.New("authn: open: empty database path")
	}
	if strings.IndexByte(path, 0) >= 0 {
		return "", errors.New("authn: open: database path contains a NUL byte")
	}
	// Open builds its own file: URI from the path. A "file:auth.db?mode=ro"
	// given here would be a file of that name in the working directory,
	// created silently, with none of the URI's settings applied.
	if len(path) >= 5 && strings.EqualFold(path[:5], "file:") {
		return "", fmt.Errorf("authn: open %q: a file: URI is not a path; Open takes the database file's path (prefix \"./\" for a file whose name starts with \"file:\")", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("authn: open %s: %w", path, err)
	}
	if err := createDBFile(abs); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("authn: open %s: %w", path, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist) && isLink(abs):
		// createDBFile found the name taken, by a link to nothing: a file
		// created through it would land wherever the link points.
		return "", fmt.Errorf("authn: open %s: a symbolic link to a missing file; Open creates no database file through a link: %w", path, err)
	case err != nil:
		return "", fmt.Errorf("authn: open %s: %w", path, err)
	case fi.IsDir():
		return "", fmt.Errorf("authn: open %s: is a directory, not a database file", path)
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("authn: open %s: not a regular file", path)
	}
	if err := readWritable(abs); err != nil {
		return "", fmt.Errorf("authn: open %s: %w", path, err)
	}
	return abs, nil
}

// createDBFile creates the file at path, mode 0600, if there is none
// (fs.ErrExist otherwise). A file that exists is never opened here: this
// process may have it open through SQLite already (another Open, the
// application's own pool), and closing any descriptor of a file drops
// every POSIX lock the process holds on it, SQLite's included; another
// process could then take the file for unused and remove its -wal and -shm
// under the connections still using them.
func createDBFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// isLink reports whether path names a symbolic link.
func isLink(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode()&fs.ModeSymlink != 0
}

// warnIfShared logs one warning when the database file gives its group or
// other users any access: they could copy every user's hash and guess
// passwords offline, or change the rows. Open creates files 0600, so this
// is a file made by something else, such as the Python application. Only
// a warning: the mode is the operator's to choose.
func (a *Authenticator) warnIfShared(ctx context.Context, path string) {
	fi, err := os.Stat(path)
	if err != nil || !sharedMode(fi.Mode()) {
		return
	}
	a.logger.WarnContext(ctx, "authn: the database file is open to other users, who could read every password hash; run chmod 600 on it",
		"path", path, "mode", fmt.Sprintf("%#o", fi.Mode().Perm()))
}

// sqliteDSN returns a file: URI for the absolute path abs with the settings
// every connection needs, spelled for the driver sqliteshim picked:
// modernc.org/sqlite ("sqlite") takes _pragma=name(value), mattn/go-sqlite3
// ("sqlite3") takes _name=value. Both read _txlock; immediate transactions
// take the write lock at BEGIN, so two transactions never deadlock upgrading
// a read lock.
func sqliteDSN(abs, driver string) string {
	pragmas := [][2]string{
		{"busy_timeout", fmt.Sprint(busyTimeoutMillis)},
		{"journal_mode", "WAL"},
		// FULL (SQLite's default) syncs the WAL at every commit, so a
		// registration or a counted failure survives a power cut too.
		{"synchronous", "FULL"},
	}
	q := url.Values{"_txlock": {"immediate"}}
	for _, p := range pragmas {
		if driver == "sqlite3" {
			q.Add("_"+p[0], p[1])
		} else {
			q.Add("_pragma", p[0]+"("+p[1]+")")
		}
	}
	return fileURI(abs) + "?" + q.Encode()
}

// fileURI returns the file: URI of the absolute path abs, as SQLite reads
// one: it decodes %XX, and '?' and '#' would end the path.
func fileURI(abs string) string {
	r := strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23")
	return "file:" + r.Replace(filepath.ToSlash(abs))
}

// fileCheckInterval is how often Open's database file is checked.
const fileCheckInterval = time.Second

// poolSize is the number of connections of Open's pool, open and idle alike.
// WAL readers run in parallel, but every connection costs memory and
// writers queue anyway: a small bounded pool serves best.
func poolSize() int { return max(4, 2*runtime.GOMAXPROCS(0)) }

// fileWatch keeps an eye on the database file that Open opened, and on its
// -wal (see walwatch.go). SQLite's open connections go on with a deleted
// file (writing to an inode nobody will read again), and with a file made
// read-only (their descriptors stay writable) while new connections could
// not write. The watch notices, each second, and the Authenticator fails
// closed, with a log line, until the file is back. A file restored under
// the same path (a new inode), or replaced by another, is served once no
// connection could read the old file's -wal over it (see replace.go):
// every pooled connection is replaced, and a file that is not a database
// then fails each request with SQLite's own error.
//
// The watch only stats the file: opening and closing it from outside
// SQLite would drop the POSIX locks SQLite holds on it. Garbage written in
// place, over the same inode, is thus not seen until SQLite reads the file
// again.
type fileWatch struct {
	a         *Authenticator
	path      string
	sqldb     *sql.DB
	gate      *fileGate   // lets the pool open only the file the watch vetted
	opened    os.FileInfo // the file vetted, which the connections hold
	reopening bool        // connections are being replaced
	failing   bool        // the database file is missing or unusable (logged)

	// A database file replaced under the path (replace.go): what fails
	// each statement until the new file is served, nil when none was
	// replaced; why it cannot be served yet, as last logged; the old
	// file's -wal, once the keeper that held it is closed.
	replaceErr error
	replaceWhy string
	oldWAL     *sqliteFile

	// The -wal watch (walwatch.go): its own connection, nil where the -wal
	// is not watched or until it can be opened; where it stands; the
	// -wal's problem, nil when there is none; old -wal files that
	// connections of this process may still hold.
	keeper        *walKeeper
	walState      walState
	walErr        error
	stale         []*sqliteFile
	walBusyLogged bool
	walBlind      int // checks in a row that could not tell

	closing  sync.Once
	closeErr error
}

func (a *Authenticator) watchFile(ctx context.Context, gate *fileGate, sqldb *sql.DB) error {
	w := &fileWatch{a: a, path: gate.path, sqldb: sqldb, gate: gate, opened: gate.vettedFile()}
	if walWatchSupported {
		if err := w.openKeeper(ctx); err != nil {
			a.logger.WarnContext(ctx, "authn: the database's -wal file is not watched yet: a -wal deleted or truncated under the server would go unnoticed; trying again each second",
				"path", w.path, "error", err)
		}
	}
	a.file = w
	a.every(fileCheckInterval, w.check)
	return nil
}

func (w *fileWatch) check(ctx context.Context) {
	if w.reopening { // one interval with fresh connections is enough
		w.sqldb.SetConnMaxLifetime(0)
		w.reopening = false
	}
	fileErr := w.checkFile(ctx)
	walErr := w.walErr
	if fileErr == nil {
		walErr = w.watchWAL(ctx)
	}
	switch {
	case fileErr != nil:
		w.a.store.problem.Store(&fileErr)
	case walErr != nil:
		w.a.store.problem.Store(&walErr)
	default:
		w.a.store.problem.Store(nil)
	}
}

// checkFile checks the database file, following a file replaced (see
// replace), and returns its problem: nil when there is none.
func (w *fileWatch) checkFile(ctx context.Context) error {
	fi, err := os.Stat(w.path)
	if err == nil {
		err = writable(w.path)
	}
	if err != nil {
		w.a.store.fast.turnOff(ctx)
		problem := fmt.Errorf("authn: database file: %w", err)
		if !w.failing {
			w.failing = true
			w.a.logger.ErrorContext(ctx, "authn: database file unusable; failing closed until it is back", "error", problem)
		}
		return problem
	}
	if w.failing {
		w.failing = false
		w.a.logger.WarnContext(ctx, "authn: database file is back", "path", w.path)
	}
	if w.replaceErr == nil && !os.SameFile(fi, w.opened) {
		w.replaced(ctx)
	}
	if w.replaceErr != nil {
		return w.replace(ctx)
	}
	return nil
}

// reopenPool replaces every connection of the pool: idle ones are closed
// now, those in use when they are returned (older than a nanosecond), and
// the next ones open the files now at the path.
func (w *fileWatch) reopenPool() {
	w.sqldb.SetConnMaxLifetime(time.Nanosecond)
	w.sqldb.SetMaxIdleConns(-1)
	w.sqldb.SetMaxIdleConns(poolSize())
	w.reopening = true
}

// close ends the watch's own connection at Close, once the pool is closed
// (see closeKeeper). Closing again returns the same.
func (w *fileWatch) close() error {
	w.closing.Do(func() { w.closeErr = w.closeKeeper() })
	return w.closeErr
}
