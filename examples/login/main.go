// Command login serves a small site with an HTML login page, a page only
// signed-in users see, logout and registration, and /api/ for scripts with
// HTTP Basic authentication, with the users in an embedded SQLite database
// (or PostgreSQL). /healthz needs no authentication, nor does /debug/vars,
// the Authenticator's counters (Stats) as expvar JSON under "authn".
//
//	go run ./examples/login [-addr 127.0.0.1:8080] [-db auth.db|postgres://…] [-demo-password PW] [-passkeys http://localhost:8080]
//	                        [-smtp HOST:PORT -base-url URL [-smtp-security starttls|tls|none] [-smtp-user USER] [-mail-from ADDR]]
//	                        [-trusted-proxies 127.0.0.1/32] [-secret-key-file FILE]
//
// With -smtp, users may set an email address (/email, and when they
// register) and reset a forgotten password ("Forgot your password?" on the
// login page): links are mailed through that SMTP server, built from
// -base-url (the address browsers use for this server, such as
// http://127.0.0.1:8080), with STARTTLS by default. The SMTP password, if
// any, is read from the environment variable SMTP_PASSWORD, never from the
// command line. Without -smtp, it says that reset mail is off.
//
// With -passkeys ORIGIN, users may add passkeys (on /passkeys) and sign in
// with them; the relying party ID is ORIGIN's host name. Browsers allow
// passkeys on https origins, and on http only for localhost: open the site
// at ORIGIN (http://localhost:8080, not http://127.0.0.1:8080).
//
// When the database has no users it creates "demo" and prints its password
// once; when it has users, it says so and how to set demo's password with
// authctl. It listens before it touches the database, so a taken address
// stops it before any user is created. Ctrl-C and SIGTERM shut it down
// gracefully.
//
// It serves plain HTTP, so by default its session cookie goes without the
// Secure flag (HTTPConfig.InsecureCookies); behind an HTTPS proxy, run it
// with -insecure=false.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/postgres"
	"github.com/minimost/minimost/authn/smtp"
	"github.com/minimost/minimost/examples/internal/demo"
)

func main() {
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on")
	db := fs.String("db", "auth.db", "SQLite database file (created if missing), or a postgres:// URL")
	demoPassword := fs.String("demo-password", "", "password of the demo user created in an empty database (default: random)")
	insecure := fs.Bool("insecure", true, "session cookie without Secure, for plain HTTP; set false behind HTTPS")
	threshold := fs.Int("lockout", 5, "consecutive failures that lock an account; negative: no lockout")
	duration := fs.Duration("lockout-duration", 15*time.Minute, "how long a lockout lasts")
	hashWait := fs.Duration("hash-wait", 5*time.Second, "how long a login waits for a free hashing slot before 503")
	var trusted []netip.Prefix
	fs.Func("trusted-proxies", "comma-separated networks of reverse proxies whose X-Forwarded-For names the client (e.g. 127.0.0.1/32 behind a local nginx)", func(v string) error {
		for s := range strings.SplitSeq(v, ",") {
			p, err := netip.ParsePrefix(strings.TrimSpace(s))
			if err != nil {
				return err
			}
			trusted = append(trusted, p)
		}
		return nil
	})
	keyFile := fs.String("secret-key-file", "", "file of 64 hex digits (openssl rand -hex 32), the key that seals TOTP secrets; needed with a postgres:// -db (a SQLite -db keeps one beside the file), the same for every instance")
	smtpAddr := fs.String("smtp", "", "SMTP server (host:port) for reset and verification mail; none: reset mail is off")
	smtpSecurity := fs.String("smtp-security", "starttls", "how the SMTP connection is protected: starttls, tls or none (none: credentials only to a loopback host)")
	smtpUser := fs.String("smtp-user", "", "SMTP user name (AUTH); the password is read from $SMTP_PASSWORD")
	mailFrom := fs.String("mail-from", "no-reply@localhost", "the From address of the mail")
	baseURL := fs.String("base-url", "", "the URL browsers use for this server (https://…, or http:// for a loopback address); required with -smtp")
	passkeys := fs.String("passkeys", "", "turn passkeys on for this origin, such as http://localhost:8080 or https://example.com")
	os.Exit(demo.Main(fs, os.Args[1:], func(ctx context.Context) error {
		mailer, err := newMailer(*smtpAddr, *smtpSecurity, *smtpUser, os.Getenv("SMTP_PASSWORD"), *mailFrom, *baseURL)
		if err != nil {
			return err
		}
		var key []byte
		if *keyFile != "" {
			text, err := os.ReadFile(*keyFile)
			if err != nil {
				return err
			}
			if key, err = hex.DecodeString(strings.TrimSpace(string(text))); err != nil {
				return fmt.Errorf("-secret-key-file %s: not hex: %w", *keyFile, err)
			}
		}
		cfg := authn.Config{
			SecretKey:        key,
			LockoutThreshold: *threshold,
			LockoutDuration:  *duration,
			HTTP: authn.HTTPConfig{
				InsecureCookies: *insecure,
				HashWait:        *hashWait,
				TrustedProxies:  trusted,
				// The Python application this stands in for let anyone
				// sign up; registration is off unless asked for.
				AllowRegistration: true,
				BaseURL:           *baseURL,
				RegistrationEmail: true,
			},
		}
		if mailer != nil {
			cfg.Mailer = mailer
		}
		if *passkeys != "" {
			u, err := url.Parse(*passkeys)
			if err != nil {
				return fmt.Errorf("-passkeys %q: %w", *passkeys, err)
			}
			cfg.HTTP.WebAuthnRPID = u.Hostname()
			cfg.HTTP.WebAuthnOrigins = []string{*passkeys}
		}
		return run(ctx, os.Stdout, *addr, *db, *demoPassword, cfg)
	}))
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
	if cfg.Mailer == nil {
		fmt.Fprintln(out, "Reset mail is off: no -smtp given, so there is no \"Forgot your password?\" and no email address page.")
	}
	err = demo.CreateUser(ctx, out, a, db, demoPassword, func(pw string) string {
		return fmt.Sprintf("Open http://%s/ and sign in as demo, or: curl -c jar -d 'username=demo&password=%s' http://%s/login", l.Addr(), pw, l.Addr())
	})
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	// /login, /logout, /register, /password and /sessions (HTTPConfig.Prefix
	// is ""); any other path no pattern below claims answers 404 there.
	mux.Handle("/", a.Routes())
	mux.Handle("/{$}", a.RequireSession(home(cfg.Mailer != nil, a.Passkeys().Enabled())))
	// The same users, for scripts: HTTP Basic authentication.
	mux.Handle("/api/", a.BasicAuth(http.HandlerFunc(api)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	// The Authenticator's counters (a.Stats), as expvar JSON under "authn",
	// without authentication: see demo.PublishStats.
	mux.Handle("GET /debug/vars", demo.PublishStats(a))
	return demo.Serve(ctx, l, mux)
}

// api answers who is there, as JSON: {"username":"demo"}.
func api(w http.ResponseWriter, r *http.Request) {
	user, _ := authn.Username(r.Context())
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct {
		Username string `json:"username"`
	}{user})
}

var homePage = template.Must(template.New("home").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Home</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:30rem;margin:4rem auto;padding:0 1rem}
button{font:inherit;padding:.4rem 1rem}</style></head>
<body><main>
<h1>Hello, {{.User}}</h1>
<p>You are signed in. This page is served only to users with a session.</p>
<p><a href="/password">Change your password</a> · <a href="/sessions">Your sessions</a> · <a href="/totp">Two-step sign-in</a>{{if .Passkeys}} · <a href="/passkeys">Your passkeys</a>{{end}}{{if .Mail}} · <a href="/email">Email address</a>{{end}}</p>
<form method="post" action="/logout"><button type="submit">Sign out</button></form>
</main></body></html>
`))

// home is the application's own page: authn.Username tells who is there.
// It links the email address page with mail, and the passkeys page when
// passkeys are on.
func home(mail, passkeys bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := authn.Username(r.Context())
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		homePage.Execute(w, struct {
			User     string
			Mail     bool
			Passkeys bool
		}{user, mail, passkeys})
	})
}

// newMailer is the SMTP sender of the flags, or nil without -smtp.
func newMailer(addr, security, user, password, from, baseURL string) (authn.Mailer, error) {
	if addr == "" {
		return nil, nil
	}
	if baseURL == "" {
		return nil, fmt.Errorf("-smtp needs -base-url: the links in the mail are built from it")
	}
	sec, err := smtp.ParseSecurity(security)
	if err != nil {
		return nil, err
	}
	return smtp.New(smtp.Config{Addr: addr, From: from, Username: user, Password: password, Security: sec})
}
