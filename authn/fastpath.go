package authn

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync"
	"sync/atomic"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// memoEntries bounds each memo of the hot reads: rows of users behind
// remembered credentials, of sessions and of app tokens.
const memoEntries = 10_000

// fastReads lets the hot reads (the user's row behind a remembered Basic
// credential, a session, an app token) be answered from memory while
// nothing has been committed to a SQLite database in WAL mode since the
// same read was last made, by any process: the WAL-index header says so
// (see walindex.go). It exists only for a local SQLite file whose -shm
// could be mapped; otherwise, and for PostgreSQL, every request reads.
type fastReads struct {
	index   *walIndex
	pin     *sql.DB   // a pool of one, apart from the application's
	conn    *sql.Conn // held open for the index's life (see openFastReads)
	logger  *slog.Logger
	dbPath  string
	shmPath string
	// dbFile and shmFile are the files as the index was made: a file
	// replaced under the same name turns the index off.
	dbFile, shmFile os.FileInfo

	closing  sync.Once
	closeErr error
}

// userHashRow is the part of a user's row that userHash reads.
type userHashRow struct {
	stored  string
	until   sql.NullFloat64
	factors factorSet // the account's second factors: a cached password alone no longer serves
}

// openFastReads returns the fast reads of db, or nil when db is not a
// SQLite file in WAL mode whose WAL-index this process can map (the reason
// logged at info level, but for an in-memory database).
//
// It opens a connection of its own, with db's driver, and holds it open
// until close: SQLite removes the -shm file when the last connection of
// every process closes, and rebuilds the WAL-index when a connection
// finds none open, either of which would leave the mapping reading a file
// nobody writes. An open connection in WAL mode also keeps its shared lock
// on the database file, so that no process can leave WAL mode meanwhile.
// The connection is its own pool's, so that it takes none from db's.
func openFastReads(ctx context.Context, db *bun.DB, logger *slog.Logger) *fastReads {
	if db.Dialect().Name() != dialect.SQLite {
		return nil
	}
	f, err := tryFastReads(ctx, db)
	switch {
	case errors.Is(err, errNotAFile):
		return nil // an in-memory database: nothing to say
	case err != nil:
		logger.InfoContext(ctx, "authn: every request reads the database: no WAL-index fast path", "reason", err)
		return nil
	}
	f.logger = logger
	return f
}

// errNotAFile: the database is not a file (SQLite in memory).
var errNotAFile = errors.New("not a database file")

// tryFastReads sets up the fast reads of db, a SQLite pool, or says why
// they cannot be: the file, its pinned connection, the mapping of its
// -shm. A header not valid at this moment is no reason: each request
// checks it.
func tryFastReads(ctx context.Context, db *bun.DB) (*fastReads, error) {
	path, err := sqliteMainFile(ctx, db.DB)
	if err != nil {
		return nil, err
	}
	if path == "" {
		return nil, errNotAFile
	}
	// A connection that reads uncommitted rows (shared cache) could hand
	// one to the memo that a rollback then takes back without a commit.
	switch dirty, err := readsUncommitted(ctx, db.DB); {
	case err != nil:
		return nil, err
	case dirty:
		return nil, errors.New("the connections read uncommitted rows")
	}
	dbFile, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	f := &fastReads{dbPath: path, shmPath: path + "-shm", dbFile: dbFile}
	if err := f.pinConnection(ctx, db.DB.Driver()); err != nil {
		return nil, err
	}
	if f.index, f.shmFile, err = mapWALIndex(f.shmPath); err != nil {
		return nil, errors.Join(err, f.close())
	}
	return f, nil
}

// pinConnection opens the connection that fastReads keeps, on the file
// that db uses, with db's driver (see openPinned).
func (f *fastReads) pinConnection(ctx context.Context, d driver.Driver) error {
	pin, conn, err := openPinned(ctx, d, f.dbPath)
	if err != nil {
		return err
	}
	f.pin, f.conn = pin, conn
	return nil
}

// openPinned opens one connection to the SQLite file at path, which must
// exist, in a pool of its own, with the driver d of the application's
// pool: a second SQLite library in the process would not share SQLite's
// bookkeeping of the file's locks. It reads once, so that the connection
// has opened the -wal and the WAL-index and holds its locks, and makes
// sure the database is in WAL mode.
func openPinned(ctx context.Context, d driver.Driver, path string) (*sql.DB, *sql.Conn, error) {
	dsn := fileURI(path) + "?" + url.Values{"mode": {"rw"}}.Encode()
	connector, err := connectorOf(d, dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("opening a connection of its own: %w", err)
	}
	pool := sql.OpenDB(connector)
	pool.SetMaxOpenConns(1)
	conn, err := pool.Conn(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("opening a connection of its own: %w", errors.Join(err, pool.Close()))
	}
	if err := checkWALConn(ctx, conn); err != nil {
		return nil, nil, errors.Join(err, conn.Close(), pool.Close())
	}
	return pool, conn, nil
}

// connectorOf returns the Connector of driver d for dsn: the driver's own,
// or one that calls d.Open.
func connectorOf(d driver.Driver, dsn string) (driver.Connector, error) {
	if dc, ok := d.(driver.DriverContext); ok {
		return dc.OpenConnector(dsn)
	}
	return dsnConnector{d, dsn}, nil
}

// dsnConnector is the Connector of a driver that has none of its own.
type dsnConnector struct {
	d   driver.Driver
	dsn string
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.d.Open(c.dsn) }
func (c dsnConnector) Driver() driver.Driver                        { return c.d }

// watch turns the index off, for good, when the database file or its -shm
// is no longer the one mapped: deleted, or replaced under the same name.
// The connections of the pool would go on with the old file until they
// are replaced, and a new mapping could pair one file's header with the
// other's rows; the reads then tell what the file says, as without the
// index.
func (f *fastReads) watch(ctx context.Context) {
	if f.index.off.Load() {
		return
	}
	if sameFile(f.dbPath, f.dbFile) && sameFile(f.shmPath, f.shmFile) {
		return
	}
	f.turnOff(ctx)
}

// turnOff turns the index off for good, as watch does; Open's file watch
// calls it too, in the same check that notices a file deleted or replaced,
// before any connection is replaced: a connection opened on a new file must
// not have its rows remembered under the old file's header. Turning off
// twice does nothing.
func (f *fastReads) turnOff(ctx context.Context) {
	if f == nil || f.index.off.Swap(true) {
		return
	}
	// Nothing is answered from the old file's header any more: its
	// connection, which kept that file open, can go too.
	if err := f.close(); err != nil {
		f.logger.ErrorContext(ctx, "authn: closing the WAL-index fast path", "error", err)
	}
	f.logger.WarnContext(ctx, "authn: database file, its -wal or its -shm deleted, replaced, damaged or unusable; every request reads the database from now on",
		"path", f.dbPath)
}

// sameFile reports whether path still names the file fi describes.
func sameFile(path string, fi os.FileInfo) bool {
	now, err := os.Stat(path)
	return err == nil && os.SameFile(now, fi)
}

// close removes the mapping, then lets the connection go. Closing again
// does nothing.
func (f *fastReads) close() error {
	if f == nil {
		return nil
	}
	f.closing.Do(func() {
		f.closeErr = f.index.disable()
		if f.conn != nil {
			f.closeErr = errors.Join(f.closeErr, f.conn.Close())
		}
		f.closeErr = errors.Join(f.closeErr, f.pin.Close())
	})
	return f.closeErr
}

// memo remembers rows of one hot read, each with the WAL-index header
// taken before it was read. While the header is still that one, nothing
// was committed since, and the row is answered from memory. Only rows that
// exist are remembered: the keys of reads that find nothing are anybody's
// to choose, and would push out the rows of real users.
type memo[V any] struct {
	index   *walIndex
	skipped *atomic.Int64

	mu   sync.Mutex
	rows map[string]memoEntry[V]
}

type memoEntry[V any] struct {
	row  V
	seen walHeader // taken before row was read
}

func newMemo[V any](index *walIndex, skipped *atomic.Int64) *memo[V] {
	return &memo[V]{index: index, skipped: skipped, rows: make(map[string]memoEntry[V])}
}

// read returns key's row from memory when nothing was committed since it
// was read, or reads it (one statement) and remembers it. A nil memo
// always reads.
func (m *memo[V]) read(key string, read func() (V, error)) (V, error) {
	if m == nil {
		return read()
	}
	// Taken before the read: a header taken after could be newer than the
	// row, and pair it with a commit the read did not see. One written by a
	// recovery can come back after commits: nothing is remembered under it.
	seen, ok := m.index.header()
	if !ok || seen.fromRecovery() {
		return read()
	}
	if row, hit := m.lookup(key, seen); hit {
		m.skipped.Add(1)
		return row, nil
	}
	row, err := read()
	if err == nil {
		m.remember(key, row, seen)
	}
	return row, err
}

func (m *memo[V]) lookup(key string, now walHeader) (V, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.rows[key]
	return e.row, ok && e.seen == now
}

func (m *memo[V]) remember(key string, row V, seen walHeader) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.rows) >= memoEntries {
		m.evict(seen)
	}
	m.rows[key] = memoEntry[V]{row: row, seen: seen}
}

// evict makes room: first the rows read before the last commit, which
// would be read again anyway, then, if the memo is still nearly full, an
// eighth of it in random map order.
func (m *memo[V]) evict(now walHeader) {
	for k, e := range m.rows {
		if e.seen != now {
			delete(m.rows, k)
		}
	}
	for k := range m.rows {
		if len(m.rows) < memoEntries-memoEntries/8 {
			break
		}
		delete(m.rows, k)
	}
}
