package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/password"
	"github.com/minimost/minimost/authn/postgres"
	"github.com/minimost/minimost/examples/internal/demo"
	"golang.org/x/term"
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1 // the operation failed
	exitUsage = 2 // the command line is wrong
)

// env is the outside world of one run, replaceable in tests.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// hasher is the Config.Hasher of the run: nil (the library's default)
	// but in tests, which set a cheap one (every run hashes a dummy
	// password at start-up).
	hasher password.Hasher
}

// command is one subcommand.
type command struct {
	name, args, summary, help string
	flags                     func(*flag.FlagSet) // defines the command's flags
	minArgs, maxArgs          int
	// createsDB is set on the commands that may create the SQLite file
	// (add and the imports); the others refuse a file that does not exist,
	// where a typo in -db would otherwise create an empty database.
	createsDB bool
	// sqliteFile is set on the commands that work on the SQLite file
	// itself (backup, restore): run opens no Authenticator for them, and
	// refuses a PostgreSQL URL.
	sqliteFile bool
	// configure, when set, adjusts the Config of the command's
	// Authenticator from its flags (reset-link's BaseURL).
	configure func(c *call, cfg *authn.Config)
	run       func(ctx context.Context, c *call) error
}

// call is one command being run.
type call struct {
	env
	a    *authn.Authenticator // nil for the commands on the SQLite file
	db   string               // the -db flag
	fs   *flag.FlagSet
	args []string
}

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ msg string }

// Error returns the message for the user.
func (e usageError) Error() string { return e.msg }

func run(ctx context.Context, args []string, e env) int {
	global := flag.NewFlagSet("authctl", flag.ContinueOnError)
	global.SetOutput(e.stderr)
	db := global.String("db", "auth.db", "SQLite database file, or a postgres:// URL")
	global.Usage = func() { printUsage(e.stderr, global) }
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	rest := global.Args()
	if len(rest) == 0 {
		printUsage(e.stderr, global)
		return exitUsage
	}
	if rest[0] == "help" {
		return help(e, global, rest[1:])
	}
	cmd, ok := commands()[rest[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "authctl: unknown command %q; run authctl -h for the list\n", rest[0])
		return exitUsage
	}
	c := &call{env: e, db: *db, fs: flag.NewFlagSet(cmd.name, flag.ContinueOnError)}
	c.fs.SetOutput(e.stderr)
	c.fs.Usage = func() { printCommandHelp(e.stderr, cmd, c.fs) }
	if cmd.flags != nil {
		cmd.flags(c.fs)
	}
	var err error
	if c.args, err = parseInterspersed(c.fs, rest[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if len(c.args) < cmd.minArgs || len(c.args) > cmd.maxArgs {
		fmt.Fprintf(e.stderr, "authctl %s: usage: authctl [-db DB] %s %s\n", cmd.name, cmd.name, cmd.args)
		return exitUsage
	}
	if err := checkDB(*db, cmd); err != nil {
		fmt.Fprintf(e.stderr, "authctl %s: %s\n", cmd.name, escapeControls(err.Error()))
		return exitError
	}
	if !cmd.sqliteFile {
		// The library's own log lines would mix with the tool's messages.
		cfg := authn.Config{Logger: slog.New(slog.DiscardHandler), Hasher: e.hasher}
		if cmd.configure != nil {
			cmd.configure(c, &cfg)
		}
		a, err := demo.Open(ctx, *db, cfg, postgres.Open)
		if err != nil {
			fmt.Fprintf(e.stderr, "authctl: %s\n", escapeControls(err.Error()))
			return exitError
		}
		defer a.Close()
		c.a = a
	}
	if err := cmd.run(ctx, c); err != nil {
		// Errors may hold names, paths and lines from the command line or
		// a file: no control character of theirs reaches the terminal.
		fmt.Fprintf(e.stderr, "authctl %s: %s\n", cmd.name, escapeControls(err.Error()))
		if errors.As(err, new(usageError)) {
			return exitUsage
		}
		return exitError
	}
	return exitOK
}

// checkDB refuses a -db the command cannot use before anything is opened:
// a file: URI (-db takes a path), and, unless the command creates users, a
// SQLite file that does not exist. The check and the open are not atomic:
// a file deleted in between is created empty, as before, which only a
// race with the administrator's own hand can do.
func checkDB(db string, cmd command) error {
	if demo.IsPostgresURL(db) {
		if cmd.sqliteFile {
			return fmt.Errorf("%s works on a SQLite file; for PostgreSQL use pg_dump and pg_restore", cmd.name)
		}
		return nil
	}
	if err := demo.CheckNotURI(db); err != nil {
		return err
	}
	if cmd.createsDB || db == "" { // "": authn.Open's own error
		return nil
	}
	if _, err := os.Stat(db); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no database file %s (check -db; \"authctl add\" or an import creates one)", displaySource(db))
	}
	return nil // other problems (a directory, no permission): authn.Open names them
}

// parseInterspersed parses flags that may come before, between or after
// the positional arguments ("delete alice -y" as well as "delete -y alice").
// "--" ends the flags: every argument after it is positional, so that a
// name starting with "-" can be given ("show -- -foo"). It feeds the flag
// package one flag at a time, because that package consumes a "--" itself
// and would then go on reading the arguments after it as flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for len(args) > 0 {
		arg := args[0]
		switch {
		case arg == "--":
			return append(positional, args[1:]...), nil
		case len(arg) < 2 || arg[0] != '-': // "-" alone is positional too
			positional = append(positional, arg)
			args = args[1:]
			continue
		}
		n := flagArgs(fs, args)
		if err := fs.Parse(args[:n]); err != nil {
			return nil, err
		}
		args = args[n:]
	}
	return positional, nil
}

// flagArgs returns how many arguments the flag at args[0] takes: 2 for a
// flag that needs a value given as the next argument, else 1.
func flagArgs(fs *flag.FlagSet, args []string) int {
	name := strings.TrimLeft(args[0], "-")
	if strings.Contains(name, "=") || len(args) < 2 {
		return 1
	}
	f := fs.Lookup(name)
	if f == nil {
		return 1 // unknown: fs.Parse reports it
	}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return 1
	}
	return 2
}

func printUsage(w io.Writer, global *flag.FlagSet) {
	fmt.Fprint(w, `authctl manages the users of an authn database.

Usage:
  authctl [-db DB] COMMAND [arguments]

Commands:
`)
	for _, name := range commandOrder {
		cmd := commands()[name]
		fmt.Fprintf(w, "  %-16s %s\n", cmd.name, cmd.summary)
	}
	fmt.Fprint(w, "\nGlobal flags:\n")
	global.PrintDefaults()
	fmt.Fprint(w, `
Run "authctl help COMMAND" for a command's flags and examples.
Flags may follow the names; "--" ends them, for a NAME that starts with "-"
(authctl show -- -alice).
Exit status: 0 success, 1 operational error, 2 usage error.
`)
}

func help(e env, global *flag.FlagSet, args []string) int {
	if len(args) != 1 {
		printUsage(e.stderr, global)
		return exitOK
	}
	cmd, ok := commands()[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "authctl: unknown command %q\n", args[0])
		return exitUsage
	}
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	printCommandHelp(e.stderr, cmd, fs)
	return exitOK
}

func printCommandHelp(w io.Writer, cmd command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: authctl [-db DB] %s %s\n\n%s\n", cmd.name, cmd.args, cmd.help)
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprint(w, "\nFlags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
}

// readPassword reads a new password: with a no-echo prompt, twice, when
// standard input is a terminal; else one line of standard input. Never from
// the command line, where other users could read it in the process list.
func (c *call) readPassword(username string) (string, error) {
	if f, ok := c.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(c.stderr, "New password for %s: ", username)
		first, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.stderr)
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		fmt.Fprintf(c.stderr, "Repeat it: ")
		second, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.stderr)
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		if string(first) != string(second) {
			return "", errors.New("the two passwords differ")
		}
		return string(first), nil
	}
	line, err := bufio.NewReader(c.stdin).ReadString('\n')
	if err != nil && (!errors.Is(err, io.EOF) || line == "") {
		return "", errors.New("no password on standard input (pipe one line, or run on a terminal)")
	}
	return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
}

// confirm asks a yes/no question on standard error and reads the answer
// from standard input.
func (c *call) confirm(question string) bool {
	fmt.Fprintf(c.stderr, "%s [y/N] ", question)
	line, _ := bufio.NewReader(c.stdin).ReadString('\n')
	answer := strings.ToLower(strings.TrimSpace(line))
	return answer == "y" || answer == "yes"
}

// displayName returns a username for the terminal: as it is when authn
// allows it (letters, digits, '_' and '-': nothing a terminal interprets),
// else quoted with Go's escapes, so that a name made of escape sequences or
// of fake messages ("\rimported 99 users") shows as what it is.
func displayName(name string) string {
	if authn.CheckUsername(name) == nil || name == "?" {
		return name
	}
	return strconv.Quote(name)
}

// displaySource returns a database or file name for the terminal: a
// postgres:// URL without its password, and any control or other
// non-printing character escaped.
func displaySource(source string) string {
	if demo.IsPostgresURL(source) {
		if u, err := url.Parse(source); err == nil {
			source = u.Redacted()
		} else {
			source = "the PostgreSQL URL"
		}
	}
	return escapeControls(source)
}

// escapeControls replaces every character a terminal could interpret (C0
// and C1 controls, DEL, bidirectional overrides and other non-printing
// characters, invalid UTF-8) with its Go escape, as %q would write it,
// keeping newlines and tabs.
func escapeControls(s string) string {
	safe := func(r rune) bool { return r == '\n' || r == '\t' || r != utf8.RuneError && strconv.IsPrint(r) }
	if !strings.ContainsFunc(s, func(r rune) bool { return !safe(r) }) {
		return s
	}
	var b strings.Builder
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		if safe(r) {
			b.WriteString(s[:size])
		} else {
			q := strconv.Quote(s[:size])
			b.WriteString(q[1 : len(q)-1])
		}
		s = s[size:]
	}
	return b.String()
}
