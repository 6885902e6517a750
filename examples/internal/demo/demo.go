// Package demo holds what the example servers share and what is not about
// authentication: opening the database named by -db, creating a first user,
// and serving until interrupted.
package demo

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/minimost/minimost/authn"
)

// OpenFunc opens an Authenticator over the database a URL names, as
// postgres.Open does.
type OpenFunc func(ctx context.Context, url string, cfg authn.Config) (*authn.Authenticator, error)

// Open opens the database named by the -db flag: the SQLite file db, or,
// when db is a PostgreSQL URL, that database through openPostgres. The
// program passes postgres.Open when it supports PostgreSQL, and nil when
// it is to link no PostgreSQL driver; such a URL is then refused, rather
// than taken for a file name. (This package imports no driver of its own,
// so that a SQLite-only program that uses it stays SQLite-only.)
func Open(ctx context.Context, db string, cfg authn.Config, openPostgres OpenFunc) (*authn.Authenticator, error) {
	if IsPostgresURL(db) {
		if openPostgres == nil {
			return nil, errors.New("-db: this program is built for SQLite only and takes no PostgreSQL URL (examples/login and examples/authctl do)")
		}
		return openPostgres(ctx, db, cfg)
	}
	return authn.Open(ctx, db, cfg)
}

// IsPostgresURL reports whether db, the value of a -db flag, is a
// PostgreSQL URL (postgres:// or postgresql://) rather than a SQLite file
// path.
func IsPostgresURL(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}

// CreateUser registers "demo" when the database has no user yet and prints
// its password once (it is stored only as a hash), with try, a hint that
// shows how to use it. An empty pw means a random one.
func CreateUser(ctx context.Context, a *authn.Authenticator, pw string, try func(pw string) string) error {
	users, err := a.ListAccounts(ctx, authn.ListOptions{Limit: 1})
	if err != nil || len(users) > 0 {
		return err
	}
	if pw == "" {
		pw = rand.Text() // 26 characters, 130 random bits
	}
	if err := a.Register(ctx, "demo", pw); err != nil {
		if errors.Is(err, authn.ErrUserExists) { // another instance was quicker
			return nil
		}
		return fmt.Errorf("creating the demo user: %w", err)
	}
	fmt.Printf("Created user \"demo\" with password %s (shown only now).\n%s\n", pw, try(pw))
	return nil
}

// Serve serves h on addr until ctx ends, then shuts down gracefully. The
// limits are what a server facing the Internet needs.
func Serve(ctx context.Context, addr string, h http.Handler) error {
	srv := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Printf("listening on http://%s/", addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
