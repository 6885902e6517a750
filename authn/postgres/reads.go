package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

const (
	// readConns is the size of the reader's pool: two connections, each
	// with its goroutine. Measured on 2 CPUs shared with PostgreSQL, quiet
	// machine: with one, a read that arrives while a round trip is out
	// waits for it, so two requests at a time (the in-process benchmarks)
	// took about 100 µs each against 36–50 µs through database/sql before;
	// with two, 50–60 µs. Under wrk with 16 clients one connection
	// batches more (0.40–0.43 of /healthz's requests a second, 34–38 µs
	// of server CPU per cached request) than two (0.36–0.39, 36–44 µs):
	// two trade a little of that for no loss at low concurrency. A round
	// trip carries up to maxBatch reads.
	readConns = 2
	// maxBatch bounds the reads sent in one round trip.
	maxBatch = 128
	// readTimeout bounds a round trip of reads. A read by primary key
	// waits for no lock; one that takes this long means the database or
	// the network is broken, and its connection is closed.
	readTimeout = 10 * time.Second
)

// errClosed is the error of a read after Close.
var errClosed = errors.New("authn/postgres: reader closed")

// reader runs the reads of every authenticated request (see
// hotread.Reader) on a pgx pool of its own, several requests' reads in one
// round trip. Each of its conns goroutines takes the reads waiting in the
// queue (up to maxBatch), sends them together as one pipeline (pgx's
// Batch: one write, one Sync) on its connection, and hands each its row. A
// read is only ever sent after it was queued, so it sees every commit made
// before its request asked. Reads of the same statement and key in one
// round trip are sent once, and their callers share the row.
//
// It exists because a read through database/sql cost a cached request
// three to four times what the request costs without it: most of it the
// system calls and wake-ups of one round trip per request (a write to the
// server, a wait, a read), which a round trip shared by the requests that
// wait at the same time divides among them; the rest database/sql's
// machinery (a goroutine per query to watch a cancellable context).
//
// A caller whose context ends stops waiting at once; its read goes on,
// unseen, with the others of its round trip, so a cancelled request never
// breaks a connection. A round trip is bounded by readTimeout, after which
// pgx closes its connection.
type reader struct {
	pool    *pgxpool.Pool
	queue   chan *read
	timeout time.Duration // bounds a round trip
	// ctx ends at Close: the round trips under way end, and the
	// goroutines with them.
	ctx    context.Context
	cancel context.CancelFunc
	done   sync.WaitGroup
	close  sync.Once
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

// newReader opens a reader on url with conns connections, each served by
// one goroutine, whose round trips end after timeout. The pool connects
// lazily; Read fails while the database cannot be reached.
func newReader(url string, conns int, timeout time.Duration) (*reader, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = int32(conns)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	r := &reader{pool: pool, queue: make(chan *read, conns*maxBatch), timeout: timeout}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	for range conns {
		r.done.Go(r.serve)
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

// Close stops the goroutines, fails the reads still queued and closes the
// pool. Calling it again does nothing.
func (r *reader) Close() error {
	r.close.Do(func() {
		r.cancel()
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
		r.pool.Close()
	})
	return nil
}

// serve sends the reads that wait in the queue, a round trip at a time,
// until Close.
func (r *reader) serve() {
	batch := make([]*read, 0, maxBatch)
	for {
		select {
		case rd := <-r.queue:
			// Let the goroutines that are ready to run go first: requests
			// just read from their clients queue their reads, and go in
			// this round trip rather than wait for the next. Measured:
			// 35–40 µs of server CPU per cached request instead of 43–60,
			// and about 1.5 times the requests a second.
			runtime.Gosched()
			batch = r.collect(append(batch[:0], rd))
			r.roundTrip(batch)
			clear(batch) // let the reads go
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

// roundTrip sends batch, each distinct statement and key once, in one
// pipeline, and hands every read its row or the error.
func (r *reader) roundTrip(batch []*read) {
	// firsts are the reads that are sent; the others share the row of
	// the first read of their statement and key.
	firsts := make([]*read, 0, len(batch))
	b := &pgx.Batch{}
	for _, rd := range batch {
		rd.sent = -1
		if rd.state.Load() == abandoned {
			continue
		}
		if rd.sent = sameAs(firsts, rd); rd.sent < 0 {
			rd.sent = len(firsts)
			firsts = append(firsts, rd)
			b.Queue(rd.query, rd.key)
		}
	}
	if len(firsts) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
	defer cancel()
	results := r.pool.SendBatch(ctx, b)
	errs := make([]error, len(firsts))
	for i := range firsts {
		errs[i] = r.scan(results, i, batch)
	}
	if err := results.Close(); err != nil {
		for i := range errs {
			if errs[i] == nil || errors.Is(errs[i], sql.ErrNoRows) {
				errs[i] = err // the round trip failed: fail closed
			}
		}
	}
	for _, rd := range batch {
		if rd.sent >= 0 {
			rd.finish(errs[rd.sent])
		}
	}
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

// scan reads the result of the statement sent i-th and scans its row into
// every read of batch that shares it and still waits. It returns
// sql.ErrNoRows for no row, and the statement's error.
func (r *reader) scan(results pgx.BatchResults, i int, batch []*read) error {
	rows, err := results.Query()
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return sql.ErrNoRows
	}
	for _, rd := range batch {
		if rd.sent != i || !rd.state.CompareAndSwap(waiting, filling) {
			continue
		}
		if err := rows.Scan(rd.dest...); err != nil {
			rd.err = fmt.Errorf("authn/postgres: scanning a read: %w", err)
		}
	}
	rows.Close()
	return rows.Err()
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
