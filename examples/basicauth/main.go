// Command basicauth serves a page behind HTTP Basic authentication, with the
// users in an embedded SQLite database. It is the SQLite-only example: it
// links no PostgreSQL driver (examples/login shows PostgreSQL too).
//
//	go run ./examples/basicauth [-addr 127.0.0.1:8080] [-db auth.db] [-demo-password PW]
//
// When the database has no users it creates "demo" with a random password
// (or -demo-password) and prints it once, with a curl command to try; when
// it has users, it says so and how to set demo's password with authctl.
// It listens before it touches the database, so a taken address stops it
// before any user is created. Ctrl-C and SIGTERM shut it down gracefully.
// /healthz answers without authentication, so that the cost of
// authentication can be measured beside it; so does /debug/vars, the
// Authenticator's counters (Stats) as expvar JSON under "authn".
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/examples/internal/demo"
)

func main() {
	fs := flag.NewFlagSet("basicauth", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on")
	db := fs.String("db", "auth.db", "SQLite database file (created if missing)")
	demoPassword := fs.String("demo-password", "", "password of the demo user created in an empty database (default: random)")
	os.Exit(demo.Main(fs, os.Args[1:], func(ctx context.Context) error {
		return run(ctx, os.Stdout, *addr, *db, *demoPassword)
	}))
}

// run listens first, so that a taken address stops it before it creates a
// user or prints a password, then opens the database and serves until ctx
// ends. The demo password and hints go to out.
func run(ctx context.Context, out io.Writer, addr, db, demoPassword string) error {
	l, err := demo.Listen(addr)
	if err != nil {
		return err
	}
	defer l.Close()
	a, err := demo.Open(ctx, db, authn.Config{HTTP: authn.HTTPConfig{Realm: "minimost example"}}, nil)
	if err != nil {
		return err
	}
	defer a.Close()
	err = demo.CreateUser(ctx, out, a, db, demoPassword, func(pw string) string {
		return fmt.Sprintf("Try: curl -u 'demo:%s' http://%s/", pw, l.Addr())
	})
	if err != nil {
		return err
	}

	// The application's own handler, unaware of passwords.
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := authn.Username(r.Context())
		fmt.Fprintf(w, "Hello, %s. You are authenticated.\n", user)
	})

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	// The Authenticator's counters (a.Stats), as expvar JSON under "authn",
	// without authentication: see demo.PublishStats.
	mux.Handle("GET /debug/vars", demo.PublishStats(a))
	mux.Handle("/", a.BasicAuth(hello))
	return demo.Serve(ctx, l, mux)
}
