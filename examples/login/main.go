// Command login serves a small site with an HTML login page, a page only
// signed-in users see, logout and registration, and /api/ for scripts with
// HTTP Basic authentication, with the users in an embedded SQLite database
// (or PostgreSQL). /healthz needs no authentication.
//
//	go run ./examples/login [-addr 127.0.0.1:8080] [-db auth.db|postgres://…] [-demo-password PW]
//
// It serves plain HTTP, so by default its session cookie goes without the
// Secure flag (HTTPConfig.InsecureCookies); behind an HTTPS proxy, run it
// with -insecure=false.
package main

import (
	"context"
	"flag"
	"fmt"
	"html/template"
	"log"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/postgres"
	"github.com/minimost/minimost/examples/internal/demo"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	db := flag.String("db", "auth.db", "SQLite database file (created if missing), or a postgres:// URL")
	demoPassword := flag.String("demo-password", "", "password of the demo user created in an empty database (default: random)")
	insecure := flag.Bool("insecure", true, "session cookie without Secure, for plain HTTP; set false behind HTTPS")
	threshold := flag.Int("lockout", 5, "consecutive failures that lock an account; negative: no lockout")
	duration := flag.Duration("lockout-duration", 15*time.Minute, "how long a lockout lasts")
	hashWait := flag.Duration("hash-wait", 5*time.Second, "how long a login waits for a free hashing slot before 503")
	flag.Parse()

	cfg := authn.Config{
		LockoutThreshold: *threshold,
		LockoutDuration:  *duration,
		HTTP: authn.HTTPConfig{
			InsecureCookies: *insecure,
			HashWait:        *hashWait,
			LoginPath:       "/login",
			RegisterPath:    "/register",
		},
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *addr, *db, *demoPassword, cfg); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, addr, db, demoPassword string, cfg authn.Config) error {
	a, err := demo.Open(ctx, db, cfg, postgres.Open)
	if err != nil {
		return err
	}
	defer a.Close()
	err = demo.CreateUser(ctx, a, demoPassword, func(pw string) string {
		return fmt.Sprintf("Open http://%s/ and sign in as demo, or: curl -c jar -d 'username=demo&password=%s' http://%s/login", addr, pw, addr)
	})
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle("/login", a.LoginHandler())
	mux.Handle("/logout", a.LogoutHandler())
	mux.Handle("/register", a.RegisterHandler())
	mux.Handle("/{$}", a.RequireSession(http.HandlerFunc(home)))
	// The same users, for scripts: HTTP Basic authentication.
	mux.Handle("/api/", a.BasicAuth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := authn.Username(r.Context())
		fmt.Fprintf(w, "{\"username\":%q}\n", user)
	})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	return demo.Serve(ctx, addr, mux)
}

var homePage = template.Must(template.New("home").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Home</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:30rem;margin:4rem auto;padding:0 1rem}
button{font:inherit;padding:.4rem 1rem}</style></head>
<body><main>
<h1>Hello, {{.}}</h1>
<p>You are signed in. This page is served only to users with a session.</p>
<form method="post" action="/logout"><button type="submit">Sign out</button></form>
</main></body></html>
`))

// home is the application's own page: authn.Username tells who is there.
func home(w http.ResponseWriter, r *http.Request) {
	user, _ := authn.Username(r.Context())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	homePage.Execute(w, user)
}
