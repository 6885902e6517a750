// Package demo holds what the example servers share and what is not about
// authentication: reading the command line, opening the database named by
// -db, creating a first user, and serving until interrupted or terminated.
package demo

import (
	"context"
	"crypto/rand"
	"errors"
	"expvar"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

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
// so that a SQLite-only program that uses it stays SQLite-only.) A file:
// URI is refused too: -db takes a path, and SQLite's settings are the
// library's to choose.
func Open(ctx context.Context, db string, cfg authn.Config, openPostgres OpenFunc) (*authn.Authenticator, error) {
	if IsPostgresURL(db) {
		if openPostgres == nil {
			return nil, errors.New("-db: this program is built for SQLite only and takes no PostgreSQL URL (examples/login and examples/authctl do)")
		}
		return openPostgres(ctx, db, cfg)
	}
	if err := CheckNotURI(db); err != nil {
		return nil, err
	}
	return authn.Open(ctx, db, cfg)
}

// IsPostgresURL reports whether db, the value of a -db flag, is a
// PostgreSQL URL (postgres:// or postgresql://) rather than a SQLite file
// path.
func IsPostgresURL(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}

// CheckNotURI returns an error when db, the value of a -db flag, is a
// SQLite file: URI rather than a path. authn.Open would take
// "file:auth.db?mode=ro" for the name of a file in the current directory
// and create it; the error says what to write instead.
func CheckNotURI(db string) error {
	if len(db) >= 5 && strings.EqualFold(db[:5], "file:") {
		return fmt.Errorf("-db %s: a file: URI is not accepted; give the database file's path (auth.db, /srv/app/auth.db), or ./%s for a file whose name starts with \"file:\"",
			ShellQuote(db), ShellQuote(db))
	}
	return nil
}

// ParseFlags parses the program's arguments with fs and refuses any that
// are left over. Go's flag package stops at the first argument that is not
// a flag and leaves it and everything after it, flags included, unread:
// "login auth.db -addr :9090" would silently serve the default database on
// the default address. Serving something other than what was asked is
// worse than not starting, so the error names what was not read. Like the
// flag package does with its own errors, ParseFlags prints the error to
// fs.Output() before returning it.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if rest := fs.Args(); len(rest) > 0 {
		quoted := make([]string, len(rest))
		for i, arg := range rest {
			quoted[i] = strconv.Quote(Display(arg)) // no database password in the message
		}
		hint := ""
		if looksLikeDB(rest[0]) {
			hint = fmt.Sprintf(" (did you mean -db %s?)", ShellQuote(Display(rest[0])))
		}
		err := fmt.Errorf("%s takes no arguments, only flags; not read: %s%s. Flags go first, as -name value; run %s -h for the list",
			fs.Name(), strings.Join(quoted, " "), hint, fs.Name())
		fmt.Fprintln(fs.Output(), err)
		return err
	}
	return nil
}

// looksLikeDB reports whether arg, left over on a command line, is likely
// a database meant for -db.
func looksLikeDB(arg string) bool {
	for _, suffix := range []string{".db", ".sqlite", ".sqlite3"} {
		if strings.HasSuffix(arg, suffix) {
			return true
		}
	}
	return IsPostgresURL(arg)
}

// Main runs a server program: it parses args with fs (exit status 2 on a
// usage error), then calls run with a context that ends at the first
// Ctrl-C (SIGINT) or SIGTERM, as a service manager or "docker stop" sends,
// so that both shut down gracefully. A second signal exits at once. The
// exit status is 1 when run fails, else 0.
func Main(fs *flag.FlagSet, args []string, run func(ctx context.Context) error) int {
	if err := ParseFlags(fs, args); err != nil { // printed by ParseFlags
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // from now on a signal has its default effect: exit
	}()
	if err := run(ctx); err != nil {
		log.Print(err)
		return 1
	}
	return 0
}

// Listen listens on addr, the value of the -addr flag. The programs listen
// before they open the database, so that a taken port stops them before
// they create a user and print its password.
func Listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-addr %s: %w (is another server running there? pick another address with -addr)", addr, err)
	}
	return l, nil
}

// CreateUser registers "demo" when the database has no user yet and prints
// its password once to w (it is stored only as a hash), with try, a hint
// that shows how to use it. An empty pw means a random one. When the
// database has users already it creates none and says so, with the
// authctl command that sets demo's password (or creates demo): db is the
// -db value the command is to name.
func CreateUser(ctx context.Context, w io.Writer, a *authn.Authenticator, db, pw string, try func(pw string) string) error {
	users, err := a.ListAccounts(ctx, authn.ListOptions{Limit: 1})
	if err != nil {
		return fmt.Errorf("reading the users: %w", err)
	}
	if len(users) > 0 {
		return existingUsers(ctx, w, a, db)
	}
	if pw == "" {
		pw = rand.Text() // 26 characters, 130 random bits
	}
	if err := a.Register(ctx, "demo", pw); err != nil {
		if errors.Is(err, authn.ErrUserExists) { // another instance was quicker
			return existingUsers(ctx, w, a, db)
		}
		return fmt.Errorf("creating the demo user: %w", err)
	}
	fmt.Fprintf(w, "Created user \"demo\" with password %s (shown only now).\n%s\n", pw, try(pw))
	return nil
}

// existingUsers tells a user who expected a fresh password why there is
// none, and how to get one.
func existingUsers(ctx context.Context, w io.Writer, a *authn.Authenticator, db string) error {
	shown := ShellQuote(Display(db))
	authctl := "go run ./examples/authctl -db " + shown
	_, err := a.Account(ctx, "demo")
	switch {
	case err == nil:
		fmt.Fprintf(w, "The database %s already has users, demo among them: no password is printed (it is stored only as a hash).\n"+
			"To set a new password for demo: %s passwd demo\n", shown, authctl)
	case errors.Is(err, authn.ErrNotFound):
		fmt.Fprintf(w, "The database %s already has users, so no demo user was created.\n"+
			"To create demo: %s add demo\n", shown, authctl)
	default:
		return fmt.Errorf("reading the demo user: %w", err)
	}
	return nil
}

// Display returns db, the value of a -db flag, fit to print: a PostgreSQL
// URL without its password.
func Display(db string) string {
	if IsPostgresURL(db) {
		if u, err := url.Parse(db); err == nil {
			return u.Redacted()
		}
		return "the PostgreSQL URL"
	}
	return db
}

// ShellQuote returns s quoted for a POSIX shell, for commands the programs
// print to be copied: as it is when it holds only characters no shell
// interprets, in single quotes otherwise, and as $'…' with escapes when it
// holds a control character or invalid UTF-8, which must not reach the
// terminal as they are.
func ShellQuote(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@%+=,", r))
	}) {
		return s
	}
	printable := utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return !strconv.IsPrint(r) })
	if printable {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	var b strings.Builder
	b.WriteString("$'")
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\'' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == utf8.RuneError && size == 1, !strconv.IsPrint(r):
			for _, c := range []byte(s[i : i+size]) {
				fmt.Fprintf(&b, `\x%02x`, c)
			}
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	b.WriteString("'")
	return b.String()
}

// Serve serves h on l until ctx ends, then shuts down gracefully: it stops
// accepting, lets the requests in progress finish (5 s at most), and only
// then returns, so that the caller closes the database after the last
// request. The limits are what a server facing the Internet needs.
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	shutdown := make(chan error, 1)
	go func() {
		<-ctx.Done()
		log.Print("shutting down")
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shutdown <- srv.Shutdown(c)
	}()
	log.Printf("listening on http://%s/", l.Addr())
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	// Serve returns as soon as Shutdown begins; wait for it to end.
	if err := <-shutdown; err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}

// PublishStats publishes a.Stats() with expvar under the name "authn" and
// returns the handler the examples mount at GET /debug/vars. A process
// calls it once: expvar.Publish panics on a name published twice.
//
// The handler serves the "authn" variable alone, in expvar's format
// ({"authn": {...}}), rather than expvar.Handler()'s every variable: that
// one includes "cmdline", the program's arguments, where -demo-password and
// the password of a -db postgres:// URL would be readable by anyone who
// can reach the page. The counters say how many logins failed and
// succeeded, nothing about any user. The page needs no authentication and
// is served on the site's own listener, on loopback by default (-addr
// 127.0.0.1:8080); a site reachable from elsewhere should serve it on a
// loopback listener of its own or behind its own authentication.
func PublishStats(a *authn.Authenticator) http.Handler {
	expvar.Publish("authn", expvar.Func(func() any { return a.Stats() }))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintf(w, "{\n%q: %s\n}\n", "authn", expvar.Get("authn"))
	})
}
