// Package hotread lets the postgres package give authn a faster way to run
// the reads every authenticated request makes (the user behind a cached
// Basic credential, a session, an app token), without authn importing a
// PostgreSQL driver: authn defines what a read is, and the postgres
// package, which links pgx anyway, runs it.
//
// It is internal so that no program outside this module can hand authn a
// reader: each read must see the current row, and only the readers of this
// module are tested to.
package hotread

import "context"

// Reader runs hot reads.
type Reader interface {
	// Read runs query, a SELECT with one parameter ($1), with key, and
	// scans the one row it returns into dest, as database/sql's Row.Scan
	// would. It returns sql.ErrNoRows when the query returns no row. The
	// read is sent to the database after Read is called, so it sees every
	// commit made before. Read returns ctx's error when ctx ends first;
	// dest is then left as it was.
	Read(ctx context.Context, query, key string, dest ...any) error
	// Close ends the reader and its connections. Calling it again does
	// nothing.
	Close() error
}

type key struct{}

// With returns a context that carries r to authn.New, which then runs its
// hot reads with r and closes r when the Authenticator closes. When New
// fails, the caller closes r (Close may then run twice).
func With(ctx context.Context, r Reader) context.Context {
	return context.WithValue(ctx, key{}, r)
}

// From returns the Reader that ctx carries, or nil.
func From(ctx context.Context) Reader {
	r, _ := ctx.Value(key{}).(Reader)
	return r
}
