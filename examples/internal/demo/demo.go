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
	"time"

	"github.com/minimost/minimost/authn"
)

// Open opens a SQLite file, or PostgreSQL when db is a postgres:// URL.
func Open(ctx context.Context, db string, cfg authn.Config) (*authn.Authenticator, error) {
	if authn.IsPostgresURL(db) {
		return authn.OpenPostgres(ctx, db, cfg)
	}
	return authn.Open(ctx, db, cfg)
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
