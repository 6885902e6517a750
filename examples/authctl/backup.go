package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/minimost/minimost/authn"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/sqliteshim"
	"modernc.org/sqlite"
)

// busyTimeout is how long backup and restore wait for a server's write to
// end, in milliseconds: authn.Open's own wait.
const busyTimeout = "10000"

const backupHelp = `Writes a consistent copy of the SQLite database to FILE, a new file (mode
0600; an existing FILE is refused), while servers go on using the database:
SQLite's VACUUM INTO copies one snapshot of it, the commits not yet
checkpointed from the -wal file included. The copy is then read back and
checked, and the number of its users is shown.

The key that seals the TOTP secrets (auth.db.key beside the database, once a
user has enrolled) is not in the copy: keep a copy of it apart from the
database's, since a copy of the database alone must not give the secrets,
and a database restored without it needs "2fa reset" for every user with
TOTP.

PostgreSQL: use pg_dump.

Example:
  authctl -db /srv/app/auth.db backup /srv/backup/auth-$(date +%F).db`

const restoreHelp = `Replaces the whole content of the database with FILE, a copy made by
"backup" (or another SQLite file with a users table of the Python
application's schema), after asking unless -y is given. Servers may run: the
copy is written through SQLite, in one transaction, into the live file, so
that every process sees it at its next statement (and none sees half of it).

FILE is checked first, on a copy of its own, and refused, with nothing
changed, when it is not a SQLite database, is damaged, has no users table, or
has a -wal or -journal file beside it (copied while in use: make copies with
"backup"). Tables of this version that FILE lacks are added.

Everything comes back as it was in FILE: users, hashes, locks and app tokens,
also tokens revoked since (each is named, to be revoked again). Sessions do
not: every session ends, since those in FILE may have been ended since.

PostgreSQL: use pg_restore.

Example:
  authctl -db /srv/app/auth.db restore /srv/backup/auth-2026-11-28.db`

// backup writes a consistent copy of the SQLite database c.db to c.args[0],
// a file it creates.
func backup(ctx context.Context, c *call) error {
	live, file, err := absPaths(c.db, c.args[0])
	if err != nil {
		return err
	}
	// The copy holds every hash: nobody else's to read (VACUUM INTO would
	// create it with the umask's mode). An existing file is never written
	// over: it may be the only good copy.
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists: backup writes a new file only (remove it, or choose another name)", displaySource(c.args[0]))
	}
	if err != nil {
		return err
	}
	f.Close()
	users, err := writeCopy(ctx, live, file)
	if err != nil {
		os.Remove(file) // the empty or partial file this run created
		return err
	}
	fmt.Fprintf(c.stderr, "wrote a copy of %s to %s: %d users\n", displaySource(c.db), displaySource(c.args[0]), users)
	return nil
}

// writeCopy copies the database live into the empty file, syncs it, and
// checks what it wrote. It returns the number of users of the copy.
func writeCopy(ctx context.Context, live, file string) (int, error) {
	db, err := openSQLite(live, "rw")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	// VACUUM INTO reads one snapshot, in one read transaction: writers in
	// other processes go on, and the copy holds no half of their commits.
	// It accepts an empty file as its target.
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", file); err != nil {
		return 0, fmt.Errorf("copying the database: %w", err)
	}
	// SQLite does not sync what VACUUM INTO wrote.
	if err := syncFile(file); err != nil {
		return 0, fmt.Errorf("syncing the copy: %w", err)
	}
	if err := syncFile(filepath.Dir(file)); err != nil {
		return 0, fmt.Errorf("syncing the copy's directory: %w", err)
	}
	copyDB, err := openSQLite(file, "ro")
	if err != nil {
		return 0, err
	}
	defer copyDB.Close()
	if err := checkDatabase(ctx, copyDB); err != nil {
		return 0, fmt.Errorf("the copy: %w", err)
	}
	return countUsers(ctx, copyDB)
}

// restore replaces the content of the SQLite database c.db with the copy
// c.args[0].
func restore(ctx context.Context, c *call) error {
	live, file, err := absPaths(c.db, c.args[0])
	if err != nil {
		return err
	}
	name := displaySource(c.args[0])
	staged, cleanup, err := stage(file, live, name)
	if err != nil {
		return err
	}
	defer cleanup()
	prep, err := prepare(ctx, c, live, staged, name)
	if err != nil {
		return err
	}
	if !c.flag("y") {
		now := "the users"
		if prep.liveUsers >= 0 {
			now = fmt.Sprintf("the %d users", prep.liveUsers)
		}
		if !c.confirm(fmt.Sprintf("Replace %s of %s with the %d users of %s, and end every session?", now, displaySource(c.db), prep.users, name)) {
			return errors.New("not confirmed; nothing restored")
		}
	}
	if err := restoreInto(ctx, live, staged); err != nil {
		return fmt.Errorf("restoring %s: %w", name, err)
	}
	fmt.Fprintf(c.stderr, "restored %s into %s: %d users; every session ended\n", name, displaySource(c.db), prep.users)
	for _, tok := range prep.revivedTokens {
		fmt.Fprintf(c.stderr, "note: app token %s of %s is back (revoked or deleted after the copy was made); revoke it again if it should stay revoked: authctl token revoke %s %s\n",
			tableCell(tok[1]), displayName(tok[0]), displayName(tok[0]), tableCell(tok[1]))
	}
	return nil
}

// stage copies the file to restore, byte for byte, into a new private
// directory beside the live database, where it can be checked and made
// ready without changing the file itself. cleanup removes the directory.
func stage(file, live, name string) (staged string, cleanup func(), err error) {
	fi, err := os.Stat(file)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil, fmt.Errorf("no file %s", name)
	}
	if err != nil {
		return "", nil, err
	}
	if !fi.Mode().IsRegular() {
		return "", nil, fmt.Errorf("%s is not a regular file", name)
	}
	if lfi, err := os.Stat(live); err == nil && os.SameFile(fi, lfi) {
		return "", nil, fmt.Errorf("%s is the database itself", name)
	}
	// A -wal or hot -journal file holds commits (or half a transaction)
	// that the file alone lacks: copied without it, the database would
	// lose them, or be torn.
	for _, suffix := range []string{"-wal", "-journal"} {
		if _, err := os.Stat(file + suffix); err == nil {
			return "", nil, fmt.Errorf("%s has a %s file beside it: it is in use, or was copied while in use, and the file alone may lack commits; make copies with \"authctl backup\"",
				name, suffix)
		}
	}
	dir, err := os.MkdirTemp(filepath.Dir(live), ".authctl-restore-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	staged = filepath.Join(dir, "restore.db")
	if err := copyFile(staged, file); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("copying %s: %w", name, err)
	}
	return staged, cleanup, nil
}

// prepared is what prepare learnt of a staged copy.
type prepared struct {
	users     int // in the copy
	liveUsers int // in the live database, or -1 when it cannot be read
	// revivedTokens are the app tokens (user, token name) of the copy that
	// the live database no longer has.
	revivedTokens [][2]string
}

// prepare checks the staged copy and makes it ready to be written into
// the live database: with the live database's page size (which SQLite's
// backup into a WAL database requires), the tables and columns of this
// version (authn adds those missing, as at a server's start), in a
// rollback journal (one file for the backup to read), and with no session.
func prepare(ctx context.Context, c *call, live, staged, name string) (prepared, error) {
	p := prepared{liveUsers: -1}
	liveDB, err := openSQLite(live, "rw")
	if err != nil {
		return p, err
	}
	defer liveDB.Close()
	var pageSize int
	if err := liveDB.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		return p, fmt.Errorf("reading %s: %w", displaySource(c.db), err)
	}
	if n, err := countUsers(ctx, liveDB); err == nil { // only for the question
		p.liveUsers = n
	}
	if err := checkStaged(ctx, staged, pageSize); err != nil {
		return p, fmt.Errorf("%s: %w", name, err)
	}
	if err := addTables(ctx, c, staged); err != nil {
		return p, fmt.Errorf("%s is not an authn database: %w", name, err)
	}
	db, err := openSQLite(staged, "rw")
	if err != nil {
		return p, err
	}
	defer db.Close()
	for _, stmt := range []string{"PRAGMA journal_mode=DELETE", "DELETE FROM sessions"} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return p, fmt.Errorf("%s: %w", name, err)
		}
	}
	if p.users, err = countUsers(ctx, db); err != nil {
		return p, fmt.Errorf("%s: %w", name, err)
	}
	if p.revivedTokens, err = revivedTokens(ctx, liveDB, db); err != nil {
		fmt.Fprintf(c.stderr, "note: could not compare the app tokens of %s and %s: %s\n", name, displaySource(c.db), escapeControls(err.Error()))
	}
	return p, nil
}

// addTables gives the staged copy the tables and columns of this version
// that it lacks, through authn.NewOwned on a pool of its own: this private
// file needs none of what authn.Open adds for a shared one (its file
// watch, reads from memory).
func addTables(ctx context.Context, c *call, staged string) error {
	db, err := openSQLite(staged, "rw")
	if err != nil {
		return err
	}
	a, err := authn.NewOwned(ctx, bun.NewDB(db, sqlitedialect.New()), authn.Config{Logger: slog.New(slog.DiscardHandler), Hasher: c.hasher})
	if err != nil {
		return err // NewOwned closed db
	}
	return a.Close()
}

// checkStaged checks the staged copy (see checkDatabase) and gives it the
// page size pageSize.
func checkStaged(ctx context.Context, staged string, pageSize int) error {
	db, err := openSQLite(staged, "rw")
	if err != nil {
		return err
	}
	defer db.Close()
	if err := checkDatabase(ctx, db); err != nil {
		return err
	}
	var have int
	if err := db.QueryRowContext(ctx, "PRAGMA page_size").Scan(&have); err != nil {
		return err
	}
	if have == pageSize {
		return nil
	}
	// A new page size applies at the next VACUUM, which WAL mode forbids.
	for _, stmt := range []string{"PRAGMA journal_mode=DELETE", fmt.Sprintf("PRAGMA page_size=%d", pageSize), "VACUUM"} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("changing its page size from %d to %d: %w", have, pageSize, err)
		}
	}
	return nil
}

// revivedTokens returns the tokens (user, token name) of the copy whose
// hash the live database does not have (none when it has no tokens table).
func revivedTokens(ctx context.Context, liveDB, copyDB *sql.DB) ([][2]string, error) {
	have := make(map[string]bool)
	var tables int
	if err := liveDB.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'tokens'").Scan(&tables); err != nil {
		return nil, err
	}
	if tables > 0 {
		rows, err := liveDB.QueryContext(ctx, "SELECT token_hash FROM tokens")
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var h string
			if err := rows.Scan(&h); err != nil {
				rows.Close()
				return nil, err
			}
			have[h] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	rows, err := copyDB.QueryContext(ctx, "SELECT username, name, token_hash FROM tokens ORDER BY username, name")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var back [][2]string
	for rows.Next() {
		var user, name, h string
		if err := rows.Scan(&user, &name, &h); err != nil {
			return nil, err
		}
		if !have[h] {
			back = append(back, [2]string{user, name})
		}
	}
	return back, rows.Err()
}

// restoreInto writes the database staged over the live one with SQLite's
// online backup API, in one step: one write transaction of the live
// database, committed through its WAL like any other, which keeps its
// journal mode and changes its schema cookie, so that every connection of
// every process reads the new content at its next statement. The file is
// never replaced (its inode, its locks and the servers' descriptors stay).
func restoreInto(ctx context.Context, live, staged string) error {
	db, err := openSQLite(live, "rw")
	if err != nil {
		return err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		r, ok := dc.(interface {
			NewRestore(string) (*sqlite.Backup, error)
		})
		if !ok {
			return fmt.Errorf("restore needs the modernc.org/sqlite driver; this build has %s", sqliteshim.DriverName())
		}
		b, err := r.NewRestore(fileURI(staged))
		if err != nil {
			return err
		}
		if _, err := b.Step(-1); err != nil {
			b.Finish()
			// The step's transaction was rolled back.
			return fmt.Errorf("%w (nothing was changed)", err)
		}
		return b.Finish()
	})
}

// checkDatabase fails unless db is a SQLite database that SQLite's
// quick_check finds whole, with a users table of the columns authn reads.
func checkDatabase(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return fmt.Errorf("not a SQLite database, or damaged: %w", err)
	}
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			rows.Close()
			return fmt.Errorf("not a SQLite database, or damaged: %w", err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("not a SQLite database, or damaged: %w", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("damaged (SQLite's quick_check: %s)", strings.Join(problems, "; "))
	}
	var tables int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'users'").Scan(&tables); err != nil {
		return err
	}
	if tables == 0 {
		return errors.New("no users table: not an authn database")
	}
	if _, err := db.ExecContext(ctx, "SELECT username, password_hash, failed_attempts, lockout_until FROM users LIMIT 0"); err != nil {
		return fmt.Errorf("its users table is not the one authn reads: %w", err)
	}
	return nil
}

// countUsers returns the number of rows of db's users table.
func countUsers(ctx context.Context, db *sql.DB) (int, error) {
	var n int
	err := db.QueryRowContext(ctx, "SELECT count(*) FROM users").Scan(&n)
	return n, err
}

// openSQLite opens the SQLite file at the absolute path abs, which must
// exist, in mode "ro" or "rw", waiting for other writers as authn.Open
// does.
func openSQLite(abs, mode string) (*sql.DB, error) {
	q := url.Values{"mode": {mode}}
	if sqliteshim.DriverName() == "sqlite3" { // mattn/go-sqlite3 spells its settings so
		q.Set("_busy_timeout", busyTimeout)
	} else {
		q.Set("_pragma", "busy_timeout("+busyTimeout+")")
	}
	db, err := sql.Open(sqliteshim.ShimName, fileURI(abs)+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1) // one connection: the PRAGMAs hold for every statement
	return db, nil
}

// fileURI returns the file: URI of the absolute path abs, as SQLite reads
// one: it decodes %XX, and '?' and '#' would end the path.
func fileURI(abs string) string {
	r := strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23")
	return "file:" + r.Replace(filepath.ToSlash(abs))
}

// absPaths returns the absolute paths of the database and of the file.
func absPaths(db, file string) (string, string, error) {
	liveAbs, err := filepath.Abs(db)
	if err != nil {
		return "", "", err
	}
	fileAbs, err := filepath.Abs(file)
	if err != nil {
		return "", "", err
	}
	return liveAbs, fileAbs, nil
}

// copyFile copies src into dst, a new file of mode 0600.
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// syncFile flushes the file or directory at path to stable storage.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
