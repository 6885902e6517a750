// Command basicauth serves a page behind HTTP Basic authentication, with the
// users in an embedded SQLite database. It is the SQLite-only example: it
// links no PostgreSQL driver (examples/login shows PostgreSQL too).
//
//	go run ./examples/basicauth [-addr 127.0.0.1:8080] [-db auth.db] [-demo-password PW]
//
// When the database has no users it creates "demo" with a random password
// (or -demo-password) and prints it once, with a curl command to try.
// /healthz answers without authentication, so that the cost of
// authentication can be measured beside it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/examples/internal/demo"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	db := flag.String("db", "auth.db", "SQLite database file (created if missing)")
	demoPassword := flag.String("demo-password", "", "password of the demo user created in an empty database (default: random)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *addr, *db, *demoPassword); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, addr, db, demoPassword string) error {
	a, err := demo.Open(ctx, db, authn.Config{HTTP: authn.HTTPConfig{Realm: "minimost example"}}, nil)
	if err != nil {
		return err
	}
	defer a.Close()
	err = demo.CreateUser(ctx, a, demoPassword, func(pw string) string {
		return fmt.Sprintf("Try: curl -u 'demo:%s' http://%s/", pw, addr)
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
	mux.Handle("/", a.BasicAuth(hello))
	return demo.Serve(ctx, addr, mux)
}
