package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver of openReadOnly
	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/examples/internal/demo"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/sqliteshim"
)

// commandOrder is the order of the help text.
var commandOrder = []string{"add", "passwd", "unlock", "lock", "delete", "list", "show", "sessions", "logout", "token", "2fa", "passkeys", "email", "reset-link", "import-htpasswd", "import-db", "backup", "restore"}

func commands() map[string]command {
	return map[string]command{
		"add": {
			name: "add", createsDB: true, args: "NAME", minArgs: 1, maxArgs: 1,
			summary: "create a user (password from a prompt or standard input)",
			help: `Creates the user NAME. The password is read with a no-echo prompt (asked
twice) when standard input is a terminal, else as one line of standard input.
It must meet the password policy. It is never taken from the command line.

Examples:
  authctl add alice
  printf '%s\n' "$PASSWORD" | authctl -db /srv/app/auth.db add alice`,
			run: func(ctx context.Context, c *call) error {
				// The name first: a taken or invalid one is refused before
				// anyone types a password twice for nothing.
				if err := c.a.CheckNewUsername(ctx, c.args[0]); err != nil {
					return err
				}
				pw, err := c.readPassword(c.args[0])
				if err != nil {
					return err
				}
				if err := c.a.Register(ctx, c.args[0], pw); err != nil {
					return err
				}
				fmt.Fprintf(c.stderr, "created user %s\n", c.args[0])
				return nil
			},
		},
		"passwd": {
			name: "passwd", args: "NAME", minArgs: 1, maxArgs: 1,
			summary: "set a user's password; ends the user's sessions and lock",
			help: `Sets a new password for NAME, read like "add" reads it. The failure counter
and any lock are cleared, and all of NAME's sessions end.

Example:
  authctl passwd alice`,
			run: func(ctx context.Context, c *call) error {
				if _, err := c.a.Account(ctx, c.args[0]); err != nil {
					return err // before asking for a password nobody needs
				}
				pw, err := c.readPassword(c.args[0])
				if err != nil {
					return err
				}
				if err := c.a.SetPassword(ctx, c.args[0], pw); err != nil {
					return err
				}
				fmt.Fprintf(c.stderr, "password of %s changed\n", c.args[0])
				return nil
			},
		},
		"unlock": {
			name: "unlock", args: "NAME", minArgs: 1, maxArgs: 1,
			summary: "clear a user's lock and failure counter",
			help:    "Clears NAME's lock and failure counter.\n\nExample:\n  authctl unlock alice",
			run: func(ctx context.Context, c *call) error {
				if err := c.a.Unlock(ctx, c.args[0]); err != nil {
					return err
				}
				fmt.Fprintf(c.stderr, "unlocked %s\n", c.args[0])
				return nil
			},
		},
		"lock": {
			name: "lock", args: "NAME [DURATION]", minArgs: 1, maxArgs: 2,
			summary: "lock a user for DURATION (default 15m) or forever and end the user's sessions",
			help: `Locks NAME: logins are refused until the lock ends or "unlock" or "passwd"
is run, and all of NAME's sessions end, also a login in progress. NAME's app
tokens are refused while the lock lasts.
DURATION is a Go duration such as 90m or 24h, or a whole number of days such
as 7d; the default is the lockout duration, 15 minutes. "forever" locks with
no end (until "unlock" or "passwd"), as the Python application disables an
account; "list" and "show" then say forever.

Examples:
  authctl lock mallory
  authctl lock mallory 7d
  authctl lock mallory forever`,
			run: func(ctx context.Context, c *call) error {
				d := time.Duration(0)
				if len(c.args) == 2 {
					var err error
					if d, err = parseLockDuration(c.args[1]); err != nil {
						return err
					}
				}
				if err := c.a.Lock(ctx, c.args[0], d); err != nil {
					return err
				}
				acc, err := c.a.Account(ctx, c.args[0])
				if err != nil {
					return err
				}
				if acc.LockedForever {
					fmt.Fprintf(c.stderr, "locked %s forever (until unlock or passwd)\n", c.args[0])
					return nil
				}
				fmt.Fprintf(c.stderr, "locked %s until %s\n", c.args[0], or(lockedUntil(acc), "-"))
				return nil
			},
		},
		"delete": {
			name: "delete", args: "[-y] NAME", minArgs: 1, maxArgs: 1,
			summary: "delete a user, the user's sessions and tokens (asks first)",
			flags:   func(fs *flag.FlagSet) { fs.Bool("y", false, "do not ask for confirmation") },
			help: `Deletes NAME, all of NAME's sessions and app tokens, after asking on the
terminal unless -y is given.

Examples:
  authctl delete bob
  authctl delete -y bob`,
			run: func(ctx context.Context, c *call) error {
				name := c.args[0]
				if _, err := c.a.Account(ctx, name); err != nil {
					return err
				}
				if !c.flag("y") && !c.confirm("Delete user "+name+" and end their sessions?") {
					return errors.New("not confirmed; nothing deleted")
				}
				if err := c.a.Delete(ctx, name); err != nil {
					return err
				}
				fmt.Fprintf(c.stderr, "deleted %s\n", name)
				return nil
			},
		},
		"list": {
			name: "list", args: "[-locked] [-json]", maxArgs: 0,
			summary: "list users: name, failed attempts, locked until, hash scheme",
			flags: func(fs *flag.FlagSet) {
				fs.Bool("locked", false, "only the users locked now")
				fs.Bool("json", false, "one JSON array instead of a table")
			},
			help: `Lists the users in name order, with their failed attempts, the end of their
lock ("-" when not locked, "forever" when the stored lock is no time, such as
Python's float("inf"): locked until unlocked), their hash scheme, and whether
the next login will re-hash the password with the current default.

Examples:
  authctl list
  authctl list -locked
  authctl list -json | jq -r '.[].username'`,
			run: func(ctx context.Context, c *call) error {
				if c.flag("json") {
					return listJSON(ctx, c)
				}
				return listTable(ctx, c)
			},
		},
		"show": {
			name: "show", args: "[-json] NAME", minArgs: 1, maxArgs: 1,
			summary: "show one user",
			flags:   func(fs *flag.FlagSet) { fs.Bool("json", false, "JSON instead of text") },
			help:    "Shows NAME's failed attempts, lock and hash scheme.\n\nExample:\n  authctl show alice",
			run: func(ctx context.Context, c *call) error {
				acc, err := c.a.Account(ctx, c.args[0])
				if err != nil {
					return err
				}
				if c.flag("json") {
					return writeJSON(c.stdout, accountsJSON([]authn.Account{acc})[0])
				}
				fmt.Fprintf(c.stdout, "name:            %s\nfailed attempts: %d\nlocked until:    %s\nhash scheme:     %s\nneeds rehash:    %v\n",
					displayName(acc.Username), acc.FailedAttempts, or(lockedUntil(acc), "-"), or(acc.Scheme, "unknown"), acc.NeedsRehash)
				return nil
			},
		},
		"sessions": {
			name: "sessions", args: "[-json] NAME", minArgs: 1, maxArgs: 1,
			summary: "list a user's live sessions: when made and last used, network, browser",
			flags:   func(fs *flag.FlagSet) { fs.Bool("json", false, "one JSON array instead of a table") },
			help: `Lists NAME's live sessions, the last used first: each one's ID (as the
user's sessions page shows it), when it started, was last used (to the
minute) and ends unless used again, the network it signed in from (the
address cut to /24 or /48) and the start of its browser's User-Agent.

Examples:
  authctl sessions alice
  authctl sessions -json alice | jq length`,
			run: func(ctx context.Context, c *call) error {
				list, err := c.a.Sessions(ctx, c.args[0])
				if err != nil {
					return err
				}
				if c.flag("json") {
					return writeJSON(c.stdout, list)
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tCREATED\tLAST SEEN\tEXPIRES\tNETWORK\tUSER AGENT")
				for _, s := range list {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Created.UTC().Format(time.RFC3339),
						s.LastSeen.UTC().Format(time.RFC3339), s.Expires.UTC().Format(time.RFC3339),
						or(tableCell(s.ClientNetwork), "-"), or(tableCell(s.UserAgent), "-"))
				}
				return tw.Flush()
			},
		},
		"logout": {
			name: "logout", args: "NAME", minArgs: 1, maxArgs: 1,
			summary: "end all of a user's sessions (the password stays)",
			help: `Ends all of NAME's sessions: each browser signed in as NAME is refused on
its next request and must sign in again. The password, the failure counter
and any lock stay as they are (use "passwd" or "lock" after a leak). Says
how many sessions ended.

Example:
  authctl logout alice`,
			run: func(ctx context.Context, c *call) error {
				n, err := c.a.EndSessions(ctx, c.args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(c.stderr, "ended %d sessions of %s\n", n, displayName(c.args[0]))
				return nil
			},
		},
		"email": {
			name: "email", args: "[-remove] NAME [ADDRESS]", minArgs: 1, maxArgs: 2,
			summary: "show, set or remove a user's verified email address (where reset links go)",
			flags:   func(fs *flag.FlagSet) { fs.Bool("remove", false, "remove NAME's address") },
			help: `Shows NAME's verified email address, the one password reset links are mailed
to ("-" when there is none). With ADDRESS, sets it, verified at once: the
administrator's word stands for the link a user follows. An address belongs
to one account: one that another account verified is refused. With -remove,
deletes it (NAME then cannot reset a forgotten password by mail).

Examples:
  authctl email alice
  authctl email alice alice@example.com
  authctl email -remove alice`,
			run: func(ctx context.Context, c *call) error {
				name, r := c.args[0], c.a.Recovery()
				switch {
				case c.flag("remove") && len(c.args) == 2:
					return usageError{"-remove takes no ADDRESS"}
				case c.flag("remove"):
					if _, err := c.a.Account(ctx, name); err != nil {
						return err
					}
					if err := r.RemoveEmail(ctx, name); err != nil {
						return err
					}
					fmt.Fprintf(c.stderr, "removed the address of %s\n", name)
					return nil
				case len(c.args) == 2:
					if err := r.SetEmail(ctx, name, c.args[1]); err != nil {
						return err
					}
					fmt.Fprintf(c.stderr, "the address of %s is %s\n", name, c.args[1])
					return nil
				}
				address, err := r.Email(ctx, name)
				if err != nil {
					return err
				}
				fmt.Fprintln(c.stdout, or(address, "-"))
				return nil
			},
		},
		"reset-link": {
			name: "reset-link", args: "-base-url URL NAME", minArgs: 1, maxArgs: 1,
			summary: "print a one-time password reset link for a user (no mail)",
			flags: func(fs *flag.FlagSet) {
				fs.String("base-url", "", "the URL at which browsers reach the login routes, prefix included (https://example.com/auth)")
			},
			configure: func(c *call, cfg *authn.Config) {
				cfg.HTTP.BaseURL = c.fs.Lookup("base-url").Value.String()
			},
			help: `Makes a password reset link for NAME and prints it, alone, on standard output,
without mail: hand it to the user. It works once, for 30 minutes, while NAME's
password stays the same; only the newest link of an account works. Following
it, the user chooses the new password: an administrator never does. Every
session of NAME ends then, with its app tokens. -base-url is required: the
address of the site's routes as browsers see it, the routes' prefix included
(https://example.com for routes at the root, https://example.com/auth under
/auth), https, or http for localhost.

Example:
  authctl reset-link -base-url https://example.com alice`,
			run: func(ctx context.Context, c *call) error {
				if c.fs.Lookup("base-url").Value.String() == "" {
					return usageError{"reset-link needs -base-url"}
				}
				link, err := c.a.Recovery().ResetLink(ctx, c.args[0])
				if err != nil {
					return err
				}
				fmt.Fprintln(c.stdout, link)
				return nil
			},
		},
		"2fa": {
			name: "2fa", args: "[-json] NAME | reset NAME", minArgs: 1, maxArgs: 2,
			summary: "show a user's second factor (TOTP), or remove it",
			flags:   func(fs *flag.FlagSet) { fs.Bool("json", false, "show: JSON instead of text") },
			help: `2fa NAME shows whether NAME signs in with a second factor (TOTP, an
authenticator app's code, after the password), an enrolment waiting for its
first code, and how many recovery codes are left.

2fa reset NAME removes NAME's second factor and recovery codes and ends
NAME's sessions: NAME signs in with the password alone and may enrol again.
For a user who lost both the device and the recovery codes, or after the
key that seals the TOTP secrets was lost (auth.db.key beside a SQLite
database, or Config.SecretKey).

Examples:
  authctl 2fa alice
  authctl 2fa reset alice`,
			run: run2FA,
		},
		"token": {
			name: "token", args: "add NAME TOKEN-NAME | list [-json] NAME | revoke NAME TOKEN-NAME", minArgs: 2, maxArgs: 3,
			summary: "make, list or revoke a user's app tokens (passwords for API clients)",
			flags:   func(fs *flag.FlagSet) { fs.Bool("json", false, "list: one JSON array instead of a table") },
			help: `App tokens let scripts and API clients authenticate as a user without the
user's password: BasicAuth accepts one in place of the password (NAME:TOKEN)
or as "Authorization: Bearer TOKEN". A token keeps working when the password
changes or failed passwords lock the account; "lock", "delete" and
"token revoke" stop it at once.

  token add NAME TOKEN-NAME   makes a token for NAME and prints it, alone, on
                              standard output: it is shown this once, only
                              its SHA-256 is stored. TOKEN-NAME (1 to 64
                              printable characters) tells NAME's tokens apart.
  token list NAME             lists NAME's tokens: name, created, last used
                              (to the minute; "-" when never).
  token revoke NAME TOKEN-NAME  deletes the token: its next request is refused.

Examples:
  authctl token add alice ci > ci-token
  authctl token list alice
  authctl token list -json alice | jq -r '.[].name'
  authctl token revoke alice ci`,
			run: runToken,
		},
		"passkeys": {
			name: "passkeys", args: "[-json] NAME | remove NAME PASSKEY", minArgs: 1, maxArgs: 3,
			summary: "list or remove a user's passkeys",
			flags:   func(fs *flag.FlagSet) { fs.Bool("json", false, "list: one JSON array instead of a table") },
			help: `Passkeys sign a user in without a password (see HTTPConfig.WebAuthnRPID);
users add them on the passkeys page, signed in and with their password.

  passkeys NAME                 lists NAME's passkeys: ID, name, created, last
                                used ("-" when never), synced.
  passkeys remove NAME PASSKEY  removes NAME's passkey PASSKEY (its ID, or its
                                name): it signs in no more, from the next
                                request on.

A lockout by failed passwords does not stop a passkey; "lock" and "delete" do.

Examples:
  authctl passkeys alice
  authctl passkeys remove alice "work laptop"`,
			run: runPasskeys,
		},
		"backup": {
			name: "backup", sqliteFile: true, args: "FILE", minArgs: 1, maxArgs: 1,
			summary: "write a consistent copy of the SQLite database to FILE, servers running",
			help:    backupHelp,
			run:     backup,
		},
		"restore": {
			name: "restore", sqliteFile: true, args: "[-y] FILE", minArgs: 1, maxArgs: 1,
			summary: "replace the SQLite database's content with a copy, servers running (asks first)",
			flags:   func(fs *flag.FlagSet) { fs.Bool("y", false, "do not ask for confirmation") },
			help:    restoreHelp,
			run:     restore,
		},
		"import-htpasswd": {
			name: "import-htpasswd", createsDB: true, args: "[-replace] FILE", minArgs: 1, maxArgs: 1,
			summary: "create users from an Apache htpasswd file (bcrypt lines)",
			flags:   func(fs *flag.FlagSet) { fs.Bool("replace", false, "replace users already present") },
			help: `Creates a user for each "name:hash" line of FILE with the hash as it is, so
the users keep their passwords. bcrypt lines ($2y$, as "htpasswd -B" writes)
and the other formats authn reads are imported; other lines (MD5 $apr1$,
{SHA}, crypt) and names authn does not allow are reported with their line
number and skipped. Names already present are reported and skipped unless
-replace. The exit status is 1 when any line was not imported.

Example:
  htpasswd -B -c users.htpasswd alice
  authctl import-htpasswd users.htpasswd`,
			run: func(ctx context.Context, c *call) error {
				f, err := os.Open(c.args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				return c.importRecords(ctx, c.args[0], htpasswdRecords(f))
			},
		},
		"import-db": {
			name: "import-db", createsDB: true, args: "[-replace] OTHER", minArgs: 1, maxArgs: 1,
			summary: "copy the users of another database (such as the Python app's auth.db)",
			flags:   func(fs *flag.FlagSet) { fs.Bool("replace", false, "replace users already present") },
			help: `Copies every user of OTHER, a SQLite file or a postgres:// URL with a users
table of the Python application's schema, with their hashes, failure counters
and locks. OTHER is only read (a SQLite file is opened read-only). Names
already present are reported and skipped unless -replace. The exit status is
1 when any user was not imported.

Example:
  authctl -db auth-new.db import-db /srv/minimost/auth.db`,
			run: func(ctx context.Context, c *call) error {
				other, err := openReadOnly(c.args[0])
				if err != nil {
					return err
				}
				defer other.Close()
				return c.importRecords(ctx, c.args[0], func(yield func(record, error) bool) {
					err := authn.ReadUsers(ctx, other, func(rec authn.UserRecord) error {
						if !yield(record{UserRecord: rec}, nil) {
							return errStop
						}
						return nil
					})
					if err != nil && !errors.Is(err, errStop) {
						yield(record{}, err)
					}
				})
			},
		},
	}
}

// maxLockDays is the most days "lock" takes: the longest time.Duration.
const maxLockDays = math.MaxInt64 / int64(24*time.Hour)

// parseLockDuration reads the DURATION of "lock": a positive Go duration
// (90m, 24h), a positive whole number of days (7d), which Go's durations
// lack, or "forever" (authn.Forever).
func parseLockDuration(s string) (time.Duration, error) {
	if s == "forever" {
		return authn.Forever, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.ParseInt(days, 10, 64); err == nil && n > 0 && n <= maxLockDays {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	return 0, usageError{fmt.Sprintf("DURATION %q is not a positive duration such as 90m, 24h or 7d, nor forever", s)}
}

// run2FA runs "2fa NAME" and "2fa reset NAME".
func run2FA(ctx context.Context, c *call) error {
	if len(c.args) == 2 {
		if c.args[0] != "reset" {
			return usageError{fmt.Sprintf("unknown 2fa command %q; use authctl 2fa NAME or authctl 2fa reset NAME", c.args[0])}
		}
		if c.flag("json") {
			return usageError{"-json is a flag of 2fa NAME only"}
		}
		if err := c.a.TOTP().Reset(ctx, c.args[1]); err != nil {
			return err
		}
		fmt.Fprintf(c.stderr, "removed the second factor of %s and ended their sessions\n", displayName(c.args[1]))
		return nil
	}
	st, err := c.a.TOTP().Status(ctx, c.args[0])
	if err != nil {
		return err
	}
	if c.flag("json") {
		return writeJSON(c.stdout, st)
	}
	state := "off"
	switch {
	case st.Enabled:
		state = "on (TOTP)"
	case st.Pending:
		state = "off (an enrolment waits for its first code)"
	}
	fmt.Fprintf(c.stdout, "name:                %s\nsecond factor:       %s\n", displayName(c.args[0]), state)
	if st.Enabled {
		fmt.Fprintf(c.stdout, "recovery codes left: %d\n", st.RecoveryCodesLeft)
	}
	return nil
}

// runToken runs "token add", "token list" and "token revoke".
func runToken(ctx context.Context, c *call) error {
	sub, args := c.args[0], c.args[1:]
	want := map[string]int{"add": 2, "list": 1, "revoke": 2}
	n, ok := want[sub]
	switch {
	case !ok:
		return usageError{fmt.Sprintf("unknown token command %q; use add, list or revoke", sub)}
	case len(args) != n:
		return usageError{"usage: authctl [-db DB] token " + map[string]string{
			"add": "add NAME TOKEN-NAME", "list": "list [-json] NAME", "revoke": "revoke NAME TOKEN-NAME"}[sub]}
	case c.flag("json") && sub != "list":
		return usageError{"-json is a flag of token list only"}
	}
	switch sub {
	case "add":
		token, err := c.a.CreateToken(ctx, args[0], args[1])
		if err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, token)
		fmt.Fprintf(c.stderr, "created token %s of %s; it is shown only this once\n", tableCell(args[1]), displayName(args[0]))
		return nil
	case "revoke":
		if err := c.a.RevokeToken(ctx, args[0], args[1]); err != nil {
			return err
		}
		fmt.Fprintf(c.stderr, "revoked token %s of %s\n", tableCell(args[1]), displayName(args[0]))
		return nil
	}
	list, err := c.a.Tokens(ctx, args[0])
	if err != nil {
		return err
	}
	if c.flag("json") {
		return writeJSON(c.stdout, list)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCREATED\tLAST USED")
	for _, tok := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", tableCell(tok.Name), tok.Created.UTC().Format(time.RFC3339), timeOrDash(tok.LastUsed))
	}
	return tw.Flush()
}

// runPasskeys runs "passkeys NAME" and "passkeys remove NAME PASSKEY".
func runPasskeys(ctx context.Context, c *call) error {
	pk := c.a.Passkeys()
	if c.args[0] == "remove" && len(c.args) == 3 {
		if c.flag("json") {
			return usageError{"-json is a flag of the list only"}
		}
		username, which := c.args[1], c.args[2]
		list, err := pk.List(ctx, username)
		if err != nil {
			return err
		}
		id := which
		for _, k := range list {
			if k.ID != which && k.Name == which {
				id = k.ID
			}
		}
		if err := pk.Delete(ctx, username, id); err != nil {
			return err
		}
		fmt.Fprintf(c.stderr, "removed passkey %s of %s\n", tableCell(which), displayName(username))
		return nil
	}
	if len(c.args) != 1 {
		return usageError{"usage: authctl [-db DB] passkeys [-json] NAME | passkeys remove NAME PASSKEY"}
	}
	list, err := pk.List(ctx, c.args[0])
	if err != nil {
		return err
	}
	if c.flag("json") {
		return writeJSON(c.stdout, list)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tCREATED\tLAST USED\tSYNCED")
	for _, k := range list {
		last := timeOrDash(k.LastUsed)
		synced := "no"
		if k.BackupState {
			synced = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, tableCell(k.Name), k.Created.UTC().Format(time.RFC3339), last, synced)
	}
	return tw.Flush()
}

func (c *call) flag(name string) bool {
	f := c.fs.Lookup(name)
	return f != nil && f.Value.String() == "true"
}

// eachPage pages through every account (or every locked one), in name
// order, a page at a time, so that a list of a million users is written as
// it is read rather than held in memory.
func eachPage(ctx context.Context, a *authn.Authenticator, lockedOnly bool, f func([]authn.Account) error) error {
	opts := authn.ListOptions{Limit: 1000, LockedOnly: lockedOnly}
	for {
		page, err := a.ListAccounts(ctx, opts)
		if err != nil {
			return err
		}
		if err := f(page); err != nil {
			return err
		}
		if len(page) < opts.Limit {
			return nil
		}
		opts.After = page[len(page)-1].Username
	}
}

// listTable writes the accounts as a table, streamed: the columns have
// fixed widths (a valid name has at most authn.MaxUsernameLength
// characters; a quoted invalid one may push its row), since a table whose
// widths fit its longest cell could not be written before its last row.
func listTable(ctx context.Context, c *call) error {
	w := bufio.NewWriterSize(c.stdout, 64<<10)
	const row = "%-*s  %-6v  %-20s  %-8s  %s\n"
	fmt.Fprintf(w, row, authn.MaxUsernameLength, "NAME", "FAILED", "LOCKED UNTIL", "SCHEME", "REHASH")
	err := eachPage(ctx, c.a, c.flag("locked"), func(page []authn.Account) error {
		for _, acc := range page {
			fmt.Fprintf(w, row, authn.MaxUsernameLength, displayName(acc.Username), acc.FailedAttempts,
				or(lockedUntil(acc), "-"), or(acc.Scheme, "unknown"), yesNo(acc.NeedsRehash))
		}
		return nil
	})
	if err != nil {
		return err
	}
	return w.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// listJSON writes the accounts as one JSON array, streamed, in the layout
// of writeJSON.
func listJSON(ctx context.Context, c *call) error {
	w := bufio.NewWriterSize(c.stdout, 64<<10)
	sep := "[\n  "
	err := eachPage(ctx, c.a, c.flag("locked"), func(page []authn.Account) error {
		for _, acc := range accountsJSON(page) {
			b, err := json.MarshalIndent(acc, "  ", "  ")
			if err != nil {
				return err
			}
			w.WriteString(sep)
			w.Write(b)
			sep = ",\n  "
		}
		return nil
	})
	if err != nil {
		return err
	}
	if sep == "[\n  " {
		w.WriteString("[]\n") // as writeJSON writes an empty list
	} else {
		w.WriteString("\n]\n")
	}
	return w.Flush()
}

type accountJSON struct {
	Username       string     `json:"username"`
	FailedAttempts int        `json:"failed_attempts"`
	LockedUntil    *time.Time `json:"locked_until"` // null when not locked; 9999-12-31T23:59:59Z when forever
	LockedForever  bool       `json:"locked_forever,omitempty"`
	Scheme         string     `json:"scheme"`
	NeedsRehash    bool       `json:"needs_rehash"`
}

func accountsJSON(accounts []authn.Account) []accountJSON {
	out := make([]accountJSON, len(accounts))
	for i, acc := range accounts {
		out[i] = accountJSON{Username: acc.Username, FailedAttempts: acc.FailedAttempts, LockedForever: acc.LockedForever,
			Scheme: acc.Scheme, NeedsRehash: acc.NeedsRehash}
		if !acc.LockedUntil.IsZero() {
			t := acc.LockedUntil.UTC()
			out[i].LockedUntil = &t
		}
	}
	return out
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// lockedUntil is the end of acc's lock for people: "" when not locked,
// "forever" for a lock with no end (a stored Inf, NaN or 1e300).
func lockedUntil(acc authn.Account) string {
	switch {
	case acc.LockedForever:
		return "forever"
	case acc.LockedUntil.IsZero():
		return ""
	}
	return acc.LockedUntil.UTC().Format(time.RFC3339)
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// record is one user to import, or the reason one line could not be read.
type record struct {
	authn.UserRecord
	line    int    // the line number in a file, or 0
	problem string // why it cannot be imported, or ""
}

var errStop = errors.New("stop")

// importRecords imports every record, reports each one that is not
// imported, and fails when any was not.
func (c *call) importRecords(ctx context.Context, source string, records func(yield func(record, error) bool)) error {
	imported, skipped := 0, 0
	var readErr error
	records(func(r record, err error) bool {
		if err != nil {
			readErr = err
			return false
		}
		where := displaySource(source)
		if r.line > 0 {
			where = fmt.Sprintf("%s:%d", where, r.line)
		}
		if r.problem == "" {
			err = c.a.ImportUser(ctx, r.UserRecord, c.flag("replace"))
			switch {
			case errors.Is(err, authn.ErrUserExists):
				r.problem = "already present (use -replace to overwrite)"
			case err != nil:
				r.problem = strings.TrimPrefix(err.Error(), "authn: ")
			}
		}
		if r.problem != "" {
			skipped++
			fmt.Fprintf(c.stderr, "%s: %s: skipped: %s\n", where, displayName(or(r.Username, "?")), escapeControls(r.problem))
			return ctx.Err() == nil
		}
		imported++
		return ctx.Err() == nil
	})
	fmt.Fprintf(c.stderr, "imported %d users from %s, skipped %d\n", imported, displaySource(source), skipped)
	switch {
	case readErr != nil:
		return fmt.Errorf("reading %s: %w", displaySource(source), readErr)
	case ctx.Err() != nil:
		return ctx.Err()
	case skipped > 0:
		return fmt.Errorf("%d of %d users not imported", skipped, imported+skipped)
	}
	return nil
}

// htpasswdRecords reads "name:hash" lines; blank lines and # comments are
// passed over.
func htpasswdRecords(r io.Reader) func(yield func(record, error) bool) {
	return func(yield func(record, error) bool) {
		sc := bufio.NewScanner(r)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimRight(sc.Text(), "\r")
			if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			rec := record{line: n}
			name, hash, ok := strings.Cut(line, ":")
			switch {
			case !ok:
				rec.problem = "not a name:hash line"
			case hash == "":
				rec.Username, rec.problem = name, "empty hash"
			default:
				rec.Username, rec.PasswordHash = name, hash
				if scheme := htpasswdScheme(hash); scheme != "" {
					rec.problem = scheme + " hashes are not supported; set a new password with \"authctl passwd\""
				}
			}
			if !yield(rec, nil) {
				return
			}
		}
		if err := sc.Err(); err != nil {
			yield(record{}, err)
		}
	}
}

// htpasswdScheme names the weak formats htpasswd can also write, for a
// clearer message than "unsupported".
func htpasswdScheme(hash string) string {
	switch {
	case strings.HasPrefix(hash, "$apr1$"):
		return "Apache MD5 ($apr1$)"
	case strings.HasPrefix(hash, "{SHA}"):
		return "SHA-1 ({SHA})"
	case strings.HasPrefix(hash, "$1$"):
		return "MD5-crypt ($1$)"
	case strings.HasPrefix(hash, "$5$"), strings.HasPrefix(hash, "$6$"):
		return "SHA-crypt"
	}
	return ""
}

// openReadOnly opens another database for reading only: a SQLite file in
// read-only mode (it must exist), or PostgreSQL.
func openReadOnly(dsn string) (*bun.DB, error) {
	if demo.IsPostgresURL(dsn) {
		sqldb, err := sql.Open("pgx", dsn)
		if err != nil {
			return nil, err
		}
		return bun.NewDB(sqldb, pgdialect.New()), nil
	}
	abs, err := filepath.Abs(dsn)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, err
	}
	u := url.URL{Scheme: "file", Path: abs, RawQuery: "mode=ro&_pragma=busy_timeout(5000)"}
	sqldb, err := sql.Open(sqliteshim.ShimName, u.String())
	if err != nil {
		return nil, err
	}
	return bun.NewDB(sqldb, sqlitedialect.New()), nil
}

// tableCell returns s for one cell of a table: escaped as escapeControls
// does, and its tabs and newlines too, which would break the columns (the
// library stores neither, but a row written behind its back may hold
// them).
func tableCell(s string) string {
	return strings.NewReplacer("\t", `\t`, "\n", `\n`).Replace(escapeControls(s))
}

// timeOrDash is t in UTC as RFC 3339, or "-" for the zero time (never).
func timeOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
