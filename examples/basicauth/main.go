// Command basicauth serves a page behind HTTP Basic authentication, with the
// users in an embedded SQLite database.
//
//	go run ./examples/basicauth [-addr 127.0.0.1:8080] [-db auth.db|postgres://…] [-demo-password PW]
//
// When the database has no users it creates "demo" with a random password
// (or -demo-password) and prints it once, with a curl command to try.
// /healthz answers without authentication.
//
// This example checks credentials with Authenticator.Authenticate directly;
// the library's own BasicAuth wrapper is still to come.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/minimost/minimost/authn"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	dbPath := flag.String("db", "auth.db", "SQLite database file (created if missing), or a postgres:// URL")
	demoPassword := flag.String("demo-password", "", "password of the demo user created in an empty database (default: random)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *addr, *dbPath, *demoPassword); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, addr, dbPath, demoPassword string) error {
	open := authn.Open
	if authn.IsPostgresURL(dbPath) {
		open = authn.OpenPostgres
	}
	a, err := open(ctx, dbPath, authn.Config{})
	if err != nil {
		return err
	}
	defer a.Close()
	if err := createDemoUser(ctx, a, addr, demoPassword); err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.Handle("GET /", basicAuth(a, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _, _ := r.BasicAuth()
		fmt.Fprintf(w, "Hello, %s. You are authenticated.\n", user)
	})))

	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
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

// createDemoUser registers "demo" when the database has no user yet, and
// prints its password once: it is stored only as a hash.
func createDemoUser(ctx context.Context, a *authn.Authenticator, addr, pw string) error {
	users, err := a.ListAccounts(ctx, authn.ListOptions{Limit: 1})
	if err != nil || len(users) > 0 {
		return err
	}
	if pw == "" {
		pw = rand.Text()
	}
	if err := a.Register(ctx, "demo", pw); err != nil {
		return fmt.Errorf("creating the demo user: %w", err)
	}
	fmt.Printf("Created user \"demo\" with password %s (shown only now).\nTry: curl -u 'demo:%s' http://%s/\n", pw, pw, addr)
	return nil
}

// basicAuth lets a request through when its Basic credentials are right,
// answers 401 with a challenge when they are missing or wrong, and 503 when
// they could not be checked: an error never lets a request through.
func basicAuth(a *authn.Authenticator, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		user, pw, ok := r.BasicAuth()
		if !ok {
			challenge(w)
			return
		}
		err := a.Authenticate(r.Context(), user, pw)
		switch {
		case err == nil:
			next.ServeHTTP(w, r)
		case errors.Is(err, authn.ErrInvalidCredentials), errors.Is(err, authn.ErrLocked):
			challenge(w)
		default:
			w.Header().Set("Retry-After", "5")
			http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		}
	})
}

func challenge(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Basic realm="minimost example", charset="UTF-8"`)
	http.Error(w, "unauthorized", http.StatusUnauthorized)
}
