package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

const (
	// readConns is the number of the reader's connections, each with its
	// goroutine: the first sends every round trip it can, the others
	// only help it while it has few reads at a time (see spillBelow).
	readConns = 2
	// spillBelow: while the first connection sends round trips of fewer
	// reads than this, a read that comes while one is out goes at once on
	// another connection, rather than wait for it; from this many on,
	// the reads that come while one is out wait and go together in the
	// next. Measured on 2 CPUs shared with PostgreSQL (docs/performance.md):
	// one connection alone made two requests at a time (the in-process
	// benchmarks) wait for each other's round trip, 35–48 µs a cached
	// Basic request against 24–28 with two; two used alike split the round trips of a
	// busy server (wrk, 16 clients) into smaller ones, about 4 reads
	// each against 6.5, and cost PostgreSQL 8 µs of CPU per request
	// against 5.
	spillBelow = 3
	// maxBatch bounds the reads sent in one round trip.
	maxBatch = 128
	// maxStatements bounds the statements a connection prepares, counted
	// by name (authn sends three; one that fails is prepared again under a
	// new name): when it has prepared that many, the connection is closed
	// and a new one opened, which frees them on the server.
	maxStatements = 16
	// readTimeout bounds a round trip of reads, and a connection's
	// opening. A read by primary key waits for no lock; one that takes
	// this long means the database or the network is broken, and its
	// connection is closed.
	readTimeout = 10 * time.Second
)

// errClosed is the error of a read after Close.
var errClosed = errors.New("authn/postgres: reader closed")

// reader runs the reads of every authenticated request (see
// hotread.Reader) on connections of its own, several requests' reads in
// one round trip. Each of its goroutines owns one connection: it takes the
// reads waiting in the queue (up to maxBatch), sends them together (one
// write: a Bind and an Execute of a prepared statement for each, and one
// Sync), and hands each its row. A read is only ever sent after it was
// queued, so it sees every commit made before its request asked. Reads of
// the same statement and key in one round trip are sent once, and their
// callers share the row.
//
// It exists because a read through database/sql cost a cached request
// three to four times what the request costs without it: most of it the
// system calls and wake-ups of one round trip per request (a write to the
// server, a wait, a read), which a round trip shared by the requests that
// wait at the same time divides among them; the rest database/sql's
// machinery (a goroutine per query to watch a cancellable context). It
// speaks to pgx's connection layer (pgconn) directly rather than through
// a pgx pool and pgx's Batch: no context to watch, no pool to acquire
// from, no pipeline bookkeeping, and scan plans made once per statement:
// together they were most of the allocations of a cached request (63 of
// them in-process on a cached Basic request before, 24 now).
//
// A caller whose context ends stops waiting at once; its read goes on,
// unseen, with the others of its round trip, so a cancelled request never
// breaks a connection. A round trip is bounded by the reader's timeout,
// after which its connection is closed and a new one opened for the next.
type reader struct {
	config  *pgconn.Config
	queue   chan *read
	timeout time.Duration
	// ctx ends at Close: the goroutines see it between round trips, and
	// Close closes the connections to end the round trips under way.
	ctx    context.Context
	cancel context.CancelFunc
	done   sync.WaitGroup
	close  sync.Once
	// spill lets one of the other connections' goroutines take reads,
	// for one round trip: the first sends a token when it starts a small
	// one.
	spill chan struct{}

	// mu orders the opening of a connection with Close: one opened
	// after Close cancelled ctx is closed at once, one opened before is
	// in conns for Close to close.
	mu    sync.Mutex
	conns []*pgconn.PgConn // by goroutine; nil when it has none open
}

// read is one caller's read.
type read struct {
	query, key string
	dest       []any
	// sent is the index, in its round trip, of the statement whose row
	// it gets; -1 for none (abandoned). Only the serving goroutine uses it.
	sent int
	// state is waiting until either the caller gives up (abandoned) or a
	// goroutine starts handing it its row (filling): only one of them
	// may change it, so no row is scanned into dest after the caller left.
	state atomic.Int32
	err   error
	done  chan struct{} // closed when err and dest are set
}

const (
	waiting int32 = iota
	filling
	abandoned
)

// newReader returns a reader on url with conns connections, each served by
// one goroutine, whose round trips end after timeout. It connects lazily:
// Read fails while the database cannot be reached. url is read as pgxpool
// reads it, so that a URL that also opens the database/sql pool (with
// pgx's and the pool's own parameters) means the same server here.
func newReader(url string, conns int, timeout time.Duration) (*reader, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	r := &reader{
		config:  cfg.ConnConfig.Config.Copy(),
		queue:   make(chan *read, conns*maxBatch),
		timeout: timeout,
		conns:   make([]*pgconn.PgConn, conns),
		spill:   make(chan struct{}, 1),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	for i := range conns {
		r.done.Go(func() { r.serve(i) })
	}
	return r, nil
}

// Read queues the read and waits for its row (see hotread.Reader).
func (r *reader) Read(ctx context.Context, query, key string, dest ...any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rd := &read{query: query, key: key, dest: dest, done: make(chan struct{})}
	select {
	case r.queue <- rd:
	case <-ctx.Done():
		return ctx.Err()
	case <-r.ctx.Done():
		return errClosed
	}
	select {
	case <-rd.done:
		return rd.err
	case <-ctx.Done():
		return rd.abandon(ctx.Err())
	case <-r.ctx.Done():
		return rd.abandon(errClosed)
	}
}

// abandon lets the caller go with err, unless a goroutine is handing rd
// its row already: then it waits for that, a moment, and returns rd's.
func (rd *read) abandon(err error) error {
	if rd.state.CompareAndSwap(waiting, abandoned) {
		return err
	}
	<-rd.done
	return rd.err
}

// finish hands rd err, unless it already has an error of its own, and
// lets its caller go, unless the caller left.
func (rd *read) finish(err error) {
	if !rd.state.CompareAndSwap(waiting, filling) && rd.state.Load() != filling {
		return // abandoned
	}
	if rd.err == nil {
		rd.err = err
	}
	close(rd.done)
}

// Close stops the goroutines, fails the reads still queued and closes the
// connections. Calling it again does nothing.
func (r *reader) Close() error {
	r.close.Do(func() {
		r.cancel()
		r.mu.Lock()
		for _, c := range r.conns {
			if c != nil {
				c.Conn().Close() // ends a round trip under way
			}
		}
		r.mu.Unlock()
		r.done.Wait()
		for {
			select {
			case rd := <-r.queue:
				rd.finish(errClosed)
				continue
			default:
			}
			break
		}
	})
	return nil
}

// server is the state of one of the reader's goroutines: its connection
// and what it reuses from one round trip to the next.
type server struct {
	r     *reader
	slot  int
	conn  *readConn // nil until opened, and after it broke
	batch []*read
	sent  []*read // the first read of each statement sent
	stmts []*statement
	errs  []error
	// finished is how many of the statements sent have had their reads
	// handed their answers.
	finished int
}

// serve sends the reads that wait in the queue, a round trip at a time,
// until Close. The goroutine of slot 0 serves the queue all the time; the
// others each time a token in r.spill lets them.
func (r *reader) serve(slot int) {
	s := &server{r: r, slot: slot, batch: make([]*read, 0, maxBatch)}
	defer s.drop()
	for {
		if slot > 0 {
			select {
			case <-r.spill:
			case <-r.ctx.Done():
				return
			}
		}
		select {
		case rd := <-r.queue:
			// Let the goroutines that are ready to run go first: requests
			// just read from their clients queue their reads, and go in
			// this round trip rather than wait for the next. Measured:
			// 35–40 µs of server CPU per cached request instead of 43–60,
			// and about 1.5 times the requests a second.
			runtime.Gosched()
			s.batch = r.collect(append(s.batch[:0], rd))
			if slot == 0 && len(s.batch) < spillBelow {
				select {
				case r.spill <- struct{}{}:
				default: // a token waits already
				}
			}
			s.roundTrip()
			clear(s.batch) // let the reads go
		case <-r.ctx.Done():
			return
		}
	}
}

// collect adds to batch the reads queued now, up to maxBatch, without
// waiting for more.
func (r *reader) collect(batch []*read) []*read {
	for len(batch) < maxBatch {
		select {
		case rd := <-r.queue:
			batch = append(batch, rd)
		default:
			return batch
		}
	}
	return batch
}

// roundTrip sends s.batch, each distinct statement and key once, in one
// round trip, and hands every read its row or the error.
func (s *server) roundTrip() {
	s.sent = s.sent[:0]
	for _, rd := range s.batch {
		rd.sent = -1
		if rd.state.Load() == abandoned {
			continue
		}
		if rd.sent = sameAs(s.sent, rd); rd.sent < 0 {
			rd.sent = len(s.sent)
			s.sent = append(s.sent, rd)
		}
	}
	if len(s.sent) == 0 {
		return
	}
	s.errs = slices.Grow(s.errs[:0], len(s.sent))[:len(s.sent)]
	clear(s.errs)
	s.finished = 0
	s.send()
	s.finishUpTo(len(s.sent))
	clear(s.sent)
}

// finishUpTo hands the reads of the statements sent before the k-th their
// answers (s.errs), but for those handed theirs already.
func (s *server) finishUpTo(k int) {
	for _, rd := range s.batch {
		if rd.sent >= s.finished && rd.sent < k {
			rd.finish(s.errs[rd.sent])
		}
	}
	s.finished = max(s.finished, k)
}

// sameAs returns the index in firsts of the read with rd's statement and
// key, or -1.
func sameAs(firsts []*read, rd *read) int {
	for i, f := range firsts {
		if f.query == rd.query && f.key == rd.key {
			return i
		}
	}
	return -1
}

// send runs the statements of s.sent on s's connection, opening it first
// if need be, and sets s.errs: nil for a row scanned, sql.ErrNoRows, or
// the error. Any error of the round trip itself fails every read still
// without a row (fail closed), and a broken connection is dropped for a
// new one at the next round trip.
func (s *server) send() {
	c, err := s.open()
	if err == nil {
		s.stmts, err = c.prepare(s.r.ctx, s.r.timeout, s.sent, s.stmts[:0])
	}
	if err != nil {
		s.failFrom(0, err)
		s.dropIfBroken()
		return
	}
	var b pgconn.Batch
	for i, rd := range s.sent {
		b.ExecStatement(s.stmts[i].desc, [][]byte{[]byte(rd.key)}, nil, s.stmts[i].formats)
	}
	c.watchdog.Reset(s.r.timeout)
	results := c.pg.ExecBatch(context.Background(), &b) // no context to watch: the watchdog bounds it
	n := 0
	for ; n < len(s.sent) && results.NextResult(); n++ {
		if s.errs[n] = c.scanResult(results.ResultReader(), s.stmts[n], n, s.batch); answered(s.errs[n]) {
			s.finishUpTo(n + 1) // its callers go now, not after the others
		}
	}
	err = results.Close()
	if err == nil && n < len(s.sent) {
		err = fmt.Errorf("the server answered %d of %d statements", n, len(s.sent))
	}
	if !c.watchdog.Stop() {
		err = fmt.Errorf("a round trip of reads took over %v", s.r.timeout)
		c.broken = true // the watchdog closed it, maybe after the answer came
	}
	if err != nil {
		// The statement that failed, or the round trip, and those after
		// it, which the server skipped.
		s.failFrom(n, fmt.Errorf("authn/postgres: reading: %w", err))
		if i := s.failedAt(n); i < len(s.stmts) && errors.As(err, new(*pgconn.PgError)) {
			// A statement prepared before a column it returns changed
			// type fails until it is prepared again: the next round
			// trip does.
			c.forget(s.stmts[i])
		}
	}
	clear(s.stmts)
	s.dropIfBroken()
}

// answered reports whether err is the answer of a statement the server
// ran to its end: a row, or none.
func answered(err error) bool { return err == nil || errors.Is(err, sql.ErrNoRows) }

// failedAt returns the index of the statement the server failed, of the
// first n it answered: the first answered with an error, else the n-th
// (the server skips the statements after a failed one).
func (s *server) failedAt(n int) int {
	for i, err := range s.errs[:n] {
		if !answered(err) {
			return i
		}
	}
	return n
}

// failFrom sets err as the answer of the statements from the i-th on.
func (s *server) failFrom(i int, err error) {
	for j := i; j < len(s.errs); j++ {
		s.errs[j] = err
	}
}

// open returns s's connection, opening one if it has none.
func (s *server) open() (*readConn, error) {
	if s.conn != nil {
		return s.conn, nil
	}
	ctx, cancel := context.WithTimeout(s.r.ctx, s.r.timeout)
	defer cancel()
	pg, err := pgconn.ConnectConfig(ctx, s.r.config)
	if err != nil {
		if s.r.ctx.Err() != nil {
			return nil, errClosed
		}
		return nil, fmt.Errorf("authn/postgres: connecting the reader: %w", err)
	}
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	if s.r.ctx.Err() != nil { // Close has begun
		pg.Close(context.Background())
		return nil, errClosed
	}
	s.r.conns[s.slot] = pg
	s.conn = newReadConn(pg)
	return s.conn, nil
}

// dropIfBroken drops s's connection if it is closed, so that the next
// round trip opens another.
func (s *server) dropIfBroken() {
	if s.conn != nil && (s.conn.broken || s.conn.pg.IsClosed() || s.conn.next >= maxStatements) {
		s.drop()
	}
}

// drop closes s's connection, if it has one.
func (s *server) drop() {
	if s.conn == nil {
		return
	}
	s.r.mu.Lock()
	s.r.conns[s.slot] = nil
	s.r.mu.Unlock()
	s.conn.watchdog.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s.conn.pg.Close(ctx)
	s.conn = nil
}

// readConn is one connection of the reader, with the statements it has
// prepared.
type readConn struct {
	pg    *pgconn.PgConn
	types *pgtype.Map
	stmts map[string]*statement // by SQL
	next  int                   // numbers the statements' names
	// watchdog closes the connection when a round trip takes longer than
	// the reader's timeout, which ends the read it waits in.
	watchdog *time.Timer
	// broken: the watchdog closed the connection (pgconn may not know).
	broken bool
}

// statement is a statement prepared on a readConn, with the format of each
// column and how to scan it into the type of destination last seen.
type statement struct {
	desc    *pgconn.StatementDescription
	formats []int16
	plans   []pgtype.ScanPlan
	types   []reflect.Type
}

func newReadConn(pg *pgconn.PgConn) *readConn {
	c := &readConn{pg: pg, types: pgtype.NewMap(), stmts: make(map[string]*statement)}
	c.watchdog = time.AfterFunc(time.Hour, func() { pg.Conn().Close() })
	c.watchdog.Stop()
	return c
}

// prepare appends to stmts the prepared statement of each read of sent,
// preparing those c has not (a round trip each, once per statement and
// connection).
func (c *readConn) prepare(ctx context.Context, timeout time.Duration, sent []*read, stmts []*statement) ([]*statement, error) {
	for _, rd := range sent {
		st, ok := c.stmts[rd.query]
		if !ok {
			var err error
			if st, err = c.prepareOne(ctx, timeout, rd.query); err != nil {
				return stmts, err
			}
		}
		stmts = append(stmts, st)
	}
	return stmts, nil
}

func (c *readConn) prepareOne(ctx context.Context, timeout time.Duration, query string) (*statement, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c.next++
	desc, err := c.pg.Prepare(ctx, "authn_read_"+strconv.Itoa(c.next), query, nil)
	if err != nil {
		return nil, fmt.Errorf("authn/postgres: preparing a read: %w", err)
	}
	st := &statement{
		desc:    desc,
		formats: make([]int16, len(desc.Fields)),
		plans:   make([]pgtype.ScanPlan, len(desc.Fields)),
		types:   make([]reflect.Type, len(desc.Fields)),
	}
	for i, f := range desc.Fields {
		st.formats[i] = c.types.FormatCodeForOID(f.DataTypeOID)
	}
	c.stmts[query] = st
	return st, nil
}

// forget drops st, which failed: the next read of its SQL prepares it
// again under a new name. The old name stays taken on the server until
// the connection closes: maxStatements bounds the names a connection has
// prepared.
func (c *readConn) forget(st *statement) {
	if c.stmts[st.desc.SQL] == st {
		delete(c.stmts, st.desc.SQL)
	}
}

// scanResult reads the result of the i-th statement sent, st, and scans
// its row into every read of batch that shares it and still waits. It
// returns sql.ErrNoRows for no row, and the statement's error.
func (c *readConn) scanResult(res *pgconn.ResultReader, st *statement, i int, batch []*read) error {
	if !res.NextRow() {
		if _, err := res.Close(); err != nil {
			return err
		}
		return sql.ErrNoRows
	}
	values := res.Values()
	for _, rd := range batch {
		if rd.sent != i || !rd.state.CompareAndSwap(waiting, filling) {
			continue
		}
		if err := c.scanRow(st, values, rd.dest); err != nil {
			rd.err = fmt.Errorf("authn/postgres: scanning a read: %w", err)
		}
	}
	_, err := res.Close()
	return err
}

// scanRow scans values, a row of st, into dest, planning the scan of a
// column when its destination's type is new.
func (c *readConn) scanRow(st *statement, values [][]byte, dest []any) error {
	if len(dest) != len(values) || len(values) != len(st.plans) {
		return fmt.Errorf("%d columns into %d destinations", len(values), len(dest))
	}
	for j, d := range dest {
		if t := reflect.TypeOf(d); st.types[j] != t {
			f := st.desc.Fields[j]
			st.plans[j] = c.types.PlanScan(f.DataTypeOID, st.formats[j], d)
			st.types[j] = t
		}
		if err := st.plans[j].Scan(values[j], d); err != nil {
			return fmt.Errorf("column %q: %w", st.desc.Fields[j].Name, err)
		}
	}
	return nil
}
