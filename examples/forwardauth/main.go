// Command forwardauth puts a login in front of any application behind nginx,
// Caddy or Traefik: it serves the Authenticator's ForwardAuthHandler at
// /auth, which the proxy asks before it forwards each request, and the
// login pages (Routes) under /authn/, which the proxy serves on the
// protected site itself, with the users in an embedded SQLite database (or
// PostgreSQL). /healthz and /debug/vars (the Authenticator's counters as
// expvar JSON under "authn") need no authentication.
//
//	go run ./examples/forwardauth [-addr 127.0.0.1:9091] [-db auth.db|postgres://…] [-demo-password PW]
//
// docs/proxies.md, section "Forward auth", has the nginx, Caddy and Traefik
// configurations. The proxy's requests are believed about the browser's
// request (X-Forwarded-For, X-Forwarded-Method, X-Forwarded-Uri,
// X-Original-URI, X-Forwarded-Proto) only from -trusted-proxies, by
// default this machine.
//
// When the database has no users it creates "demo" and prints its password
// once; when it has users, it says so and how to set demo's password with
// authctl. It listens before it touches the database, so a taken address
// stops it before any user is created. Ctrl-C and SIGTERM shut it down
// gracefully.
//
// By default its session cookie goes without the Secure flag
// (HTTPConfig.InsecureCookies), so that a proxy on plain HTTP works; behind
// a proxy that serves HTTPS, run it with -insecure=false.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strings"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/postgres"
	"github.com/minimost/minimost/examples/internal/demo"
)

// prefix is where the login pages are served, on the protected site as
// the proxy routes them: /authn/login, /authn/logout, /authn/password and
// /authn/sessions (no registration: accounts are made with authctl).
const prefix = "/authn"

func main() {
	fs := flag.NewFlagSet("forwardauth", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:9091", "address to listen on")
	db := fs.String("db", "auth.db", "SQLite database file (created if missing), or a postgres:// URL")
	demoPassword := fs.String("demo-password", "", "password of the demo user created in an empty database (default: random)")
	insecure := fs.Bool("insecure", true, "session cookie without Secure, for a proxy on plain HTTP; set false behind HTTPS")
	userHeader := fs.String("user-header", "Remote-User", "response header that names the signed-in user")
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	fs.Func("trusted-proxies", "comma-separated addresses or prefixes of the proxies (default 127.0.0.0/8,::1/128)", func(v string) error {
		var err error
		trusted, err = parsePrefixes(v)
		return err
	})
	os.Exit(demo.Main(fs, os.Args[1:], func(ctx context.Context) error {
		cfg := authn.Config{HTTP: authn.HTTPConfig{
			Prefix:                prefix,
			InsecureCookies:       *insecure,
			TrustedProxies:        trusted,
			ForwardAuthUserHeader: *userHeader,
		}}
		return run(ctx, os.Stdout, *addr, *db, *demoPassword, cfg)
	}))
}

// parsePrefixes reads "10.0.0.1,192.168.0.0/16,::1": addresses stand for
// themselves alone.
func parsePrefixes(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for s := range strings.SplitSeq(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				return nil, err
			}
			out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// run listens first, so that a taken address stops it before it creates a
// user or prints a password, then opens the database and serves until ctx
// ends. The demo password and hints go to out.
func run(ctx context.Context, out io.Writer, addr, db, demoPassword string, cfg authn.Config) error {
	l, err := demo.Listen(addr)
	if err != nil {
		return err
	}
	defer l.Close()
	a, err := demo.Open(ctx, db, cfg, postgres.Open)
	if err != nil {
		return err
	}
	defer a.Close()
	err = demo.CreateUser(ctx, out, a, db, demoPassword, func(pw string) string {
		return fmt.Sprintf("Put a proxy in front (docs/proxies.md, \"Forward auth\"), then sign in as demo, or: curl -i -u %s http://%s/auth", demo.ShellQuote("demo:"+pw), l.Addr())
	})
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	// The proxy's question, for every request to the protected site.
	mux.Handle("/auth", a.ForwardAuthHandler())
	// The login pages, which the proxy serves under /authn/ on the
	// protected site; any other path under it answers 404.
	mux.Handle(prefix+"/", a.Routes())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.Handle("GET /debug/vars", demo.PublishStats(a))
	return demo.Serve(ctx, l, mux)
}
