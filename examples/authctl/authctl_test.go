package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/password"
	"github.com/minimost/minimost/internal/testdb"
)

// result is what one run of the tool did.
type result struct {
	code           int
	stdout, stderr string
}

// authctl runs the tool in-process with stdin as standard input and
// testdb.FastHasher (TestDefaultHasher checks the tool's own default).
func authctl(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return authctlWith(t, testdb.FastHasher, stdin, args...)
}

// authctlWith runs the tool in-process with hasher (nil: the library's
// default).
func authctlWith(t *testing.T, hasher password.Hasher, stdin string, args ...string) result {
	t.Helper()
	var out, errOut strings.Builder
	code := run(context.Background(), args, env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut, hasher: hasher})
	return result{code, out.String(), errOut.String()}
}

func (r result) want(t *testing.T, code int, stderrHas string) {
	t.Helper()
	if r.code != code || !strings.Contains(r.stderr, stderrHas) {
		t.Fatalf("exit %d, stderr %q; want exit %d and stderr containing %q (stdout %q)", r.code, r.stderr, code, stderrHas, r.stdout)
	}
}

// login checks a password through the library, as an application would.
func login(t *testing.T, db, name, pw string) error {
	t.Helper()
	a := (&testdb.DB{Name: "sqlite", URL: db}).Open(t, authn.Config{Hasher: nil})
	defer a.Close()
	return a.Authenticate(context.Background(), name, pw)
}

func TestAccountCommands(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "auth.db")
	authctl(t, "alice's long passphrase\n", "-db", db, "add", "alice").want(t, 0, "created user alice")
	authctl(t, "bob's long passphrase", "-db", db, "add", "bob").want(t, 0, "created user bob") // no final newline
	if err := login(t, db, "alice", "alice's long passphrase"); err != nil {
		t.Fatalf("alice cannot log in after add: %v", err)
	}

	// Errors name the user and the problem; stdout stays empty.
	for _, tc := range []struct {
		stdin string
		args  []string
		code  int
		msg   string
	}{
		{"another long passphrase\n", []string{"add", "alice"}, 1, "username already taken: alice"},
		{"short\n", []string{"add", "carol"}, 1, "password rejected: shorter than 15 characters"},
		{"carol carol carol\n", []string{"add", "carol!"}, 1, "invalid username"},
		{"", []string{"add", "carol"}, 1, "no password on standard input"},
		{"", []string{"unlock", "nobody"}, 1, "no such user"},
		{"", []string{"show", "nobody"}, 1, "no such user: nobody"},
		{"another long passphrase\n", []string{"passwd", "nobody"}, 1, "no such user"},
		{"", []string{"delete", "-y", "nobody"}, 1, "no such user"},
		{"", []string{"lock", "alice", "soon"}, 2, `DURATION "soon"`},
		{"", []string{"lock"}, 2, "usage: authctl [-db DB] lock NAME [DURATION]"},
		{"", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"", []string{"list", "extra"}, 2, "usage"},
		{"", []string{"list", "-bogus"}, 2, "flag provided but not defined"},
	} {
		r := authctl(t, tc.stdin, append([]string{"-db", db}, tc.args...)...)
		r.want(t, tc.code, tc.msg)
		if r.stdout != "" {
			t.Errorf("%v printed %q on stdout", tc.args, r.stdout)
		}
	}

	// lock, list, show, unlock.
	authctl(t, "", "-db", db, "lock", "bob", "2h").want(t, 0, "locked bob until")
	r := authctl(t, "", "-db", db, "list")
	r.want(t, 0, "")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasPrefix(lines[1], "alice ") ||
		!strings.HasPrefix(lines[2], "bob ") || !strings.Contains(lines[2], "pbkdf2") || !strings.Contains(lines[2], "Z") ||
		!strings.Contains(lines[1], " - ") {
		t.Fatalf("list:\n%s", r.stdout)
	}
	r = authctl(t, "", "-db", db, "list", "-locked", "-json")
	var locked []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &locked); err != nil || len(locked) != 1 || locked[0]["username"] != "bob" || locked[0]["locked_until"] == nil {
		t.Fatalf("list -locked -json: %v\n%s", err, r.stdout)
	}
	r = authctl(t, "", "-db", db, "show", "bob")
	if r.code != 0 || !strings.Contains(r.stdout, "name:            bob") || strings.Contains(r.stdout, "locked until:    -") {
		t.Fatalf("show bob:\n%s%s", r.stdout, r.stderr)
	}
	if err := login(t, db, "bob", "bob's long passphrase"); !errors.Is(err, authn.ErrLocked) {
		t.Fatalf("bob after lock: %v", err)
	}
	authctl(t, "", "-db", db, "unlock", "bob").want(t, 0, "unlocked bob")
	if err := login(t, db, "bob", "bob's long passphrase"); err != nil {
		t.Fatalf("bob after unlock: %v", err)
	}

	// passwd.
	authctl(t, "alice's second passphrase\n", "-db", db, "passwd", "alice").want(t, 0, "password of alice changed")
	if err := login(t, db, "alice", "alice's second passphrase"); err != nil {
		t.Fatalf("alice after passwd: %v", err)
	}

	// delete asks first.
	authctl(t, "n\n", "-db", db, "delete", "bob").want(t, 1, "not confirmed; nothing deleted")
	authctl(t, "", "-db", db, "delete", "bob").want(t, 1, "not confirmed")
	authctl(t, "y\n", "-db", db, "delete", "bob").want(t, 0, "deleted bob")
	authctl(t, "", "-db", db, "delete", "alice", "-y").want(t, 0, "deleted alice") // flag after the name
	if r := authctl(t, "", "-db", db, "list", "-json"); strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("list after deleting everyone: %q", r.stdout)
	}
}

// TestDefaultHasher: run as a user runs it, the tool hashes with the
// library's default (the other tests give it a cheap hasher): a password it
// sets needs no rehash by that default, while one set with the cheap hasher
// does.
func TestDefaultHasher(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "auth.db")
	authctlWith(t, nil, "alice's long passphrase\n", "-db", db, "add", "alice").want(t, 0, "created user alice")
	authctl(t, "bob's long passphrase\n", "-db", db, "add", "bob").want(t, 0, "created user bob")
	for name, want := range map[string]bool{"alice": false, "bob": true} {
		r := authctlWith(t, nil, "", "-db", db, "show", "-json", name)
		var acc map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &acc); err != nil || acc["scheme"] != "pbkdf2" || acc["needs_rehash"] != want {
			t.Errorf("show -json %s: %v, want scheme pbkdf2 and needs_rehash %v\n%s%s", name, err, want, r.stdout, r.stderr)
		}
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	r := authctl(t, "", "-h")
	r.want(t, 0, "Commands:")
	for _, name := range commandOrder {
		if !strings.Contains(r.stderr, "  "+name+" ") {
			t.Errorf("-h does not list %s", name)
		}
		h := authctl(t, "", "help", name)
		h.want(t, 0, "Usage: authctl [-db DB] "+name)
		if !strings.Contains(h.stderr, "Example") {
			t.Errorf("help %s has no example", name)
		}
	}
	authctl(t, "").want(t, 2, "Usage:")
	authctl(t, "", "list", "-h").want(t, 0, "-locked")
}

// TestImportHtpasswd imports testdata/users.htpasswd, made by Apache's
// "htpasswd -B" (bcrypt) with an MD5 and a SHA-1 line, a comment, a broken
// line and a name authn does not allow. The bcrypt users then log in.
func TestImportHtpasswd(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "auth.db")
	r := authctl(t, "", "-db", db, "import-htpasswd", "testdata/users.htpasswd")
	r.want(t, 1, "imported 2 users from testdata/users.htpasswd, skipped 4")
	for _, msg := range []string{
		"users.htpasswd:3: md5user: skipped: Apache MD5 ($apr1$) hashes are not supported",
		"users.htpasswd:4: shauser: skipped: SHA-1 ({SHA}) hashes are not supported",
		"users.htpasswd:7: ?: skipped: not a name:hash line",
		`users.htpasswd:8: "bad name": skipped: invalid username`, // quoted: not a valid name
	} {
		if !strings.Contains(r.stderr, msg) {
			t.Errorf("no %q in:\n%s", msg, r.stderr)
		}
	}
	for name, pw := range map[string]string{"alice": "alice's htpasswd passphrase", "bob_2": "bob's htpasswd passphrase"} {
		if err := login(t, db, name, pw); err != nil {
			t.Errorf("%s cannot log in after the import: %v", name, err)
		}
	}
	// Logging in upgraded alice's bcrypt hash; importing again skips her.
	r = authctl(t, "", "-db", db, "import-htpasswd", "testdata/users.htpasswd")
	r.want(t, 1, "alice: skipped: already present (use -replace to overwrite)")

	authctl(t, "", "-db", db, "import-htpasswd", "testdata/missing.htpasswd").want(t, 1, "no such file")
	dir := t.TempDir()
	authctl(t, "", "-db", db, "import-htpasswd", dir).want(t, 1, "is a directory")
}

// TestImportHtpasswdFresh makes a file with the htpasswd on this machine,
// when there is one, and imports it.
func TestImportHtpasswdFresh(t *testing.T) {
	t.Parallel()
	htpasswd, err := exec.LookPath("htpasswd")
	if err != nil {
		t.Skip("htpasswd (Debian's apache2-utils) not installed; testdata/users.htpasswd covers its output")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "fresh.htpasswd")
	if out, err := exec.Command(htpasswd, "-B", "-b", "-c", file, "carol", "carol's fresh passphrase").CombinedOutput(); err != nil {
		t.Fatalf("htpasswd: %v: %s", err, out)
	}
	db := filepath.Join(dir, "auth.db")
	authctl(t, "", "-db", db, "import-htpasswd", file).want(t, 0, "imported 1 users")
	if err := login(t, db, "carol", "carol's fresh passphrase"); err != nil {
		t.Fatalf("carol: %v", err)
	}
}

// TestImportPythonDB copies the Python application's auth.db, lockout
// state included, and leaves the source untouched.
func TestImportPythonDB(t *testing.T) {
	t.Parallel()
	dump, err := os.ReadFile("../../authn/testdata/minimost-auth.sql")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "python-auth.db")
	raw := testdb.RawSQLite(t, src)
	if _, err := raw.DB.Exec(string(dump)); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(src)

	db := filepath.Join(dir, "auth.db")
	authctl(t, "", "-db", db, "import-db", src).want(t, 0, "imported 4 users")
	r := authctl(t, "", "-db", db, "list", "-json")
	var users []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &users); err != nil || len(users) != 4 {
		t.Fatalf("list after import: %v\n%s", err, r.stdout)
	}
	if users[1]["username"] != "bob_2" || users[1]["failed_attempts"] != 3.0 || users[2]["locked_until"] != "2100-01-01T00:00:00Z" {
		t.Fatalf("state not copied: %v", users)
	}
	if err := login(t, db, "alice", "alice's long passphrase"); err != nil {
		t.Fatalf("alice after import: %v", err)
	}
	if after, _ := os.ReadFile(src); string(after) != string(before) {
		t.Fatal("import-db changed the source database")
	}

	// Again: present names are skipped, or replaced with -replace.
	authctl(t, "", "-db", db, "import-db", src).want(t, 1, "bob_2: skipped: already present")
	authctl(t, "", "-db", db, "import-db", "-replace", src).want(t, 0, "imported 4 users")
	authctl(t, "", "-db", db, "import-db", filepath.Join(dir, "missing.db")).want(t, 1, "no such file")
	garbage := filepath.Join(dir, "garbage.db")
	os.WriteFile(garbage, []byte(strings.Repeat("garbage ", 100)), 0o600)
	authctl(t, "", "-db", db, "import-db", garbage).want(t, 1, "not a database")
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	pg := testdb.Postgres(t)
	authctl(t, "pg user passphrase\n", "-db", pg.URL, "add", "pguser").want(t, 0, "created user pguser")
	if r := authctl(t, "", "-db", pg.URL, "list"); r.code != 0 || !strings.Contains(r.stdout, "pguser") {
		t.Fatalf("list on PostgreSQL: %+v", r)
	}
	other := filepath.Join(t.TempDir(), "auth.db")
	authctl(t, "sqlite user passphrase\n", "-db", other, "add", "sqliteuser").want(t, 0, "created")
	authctl(t, "", "-db", pg.URL, "import-db", other).want(t, 0, "imported 1 users")
}

// TestImportLockedForever: a Python auth.db whose lockout_until is 1e300 or
// +Inf (an administrator's way of disabling an account) imports with the
// value as it is, the user cannot log in, and list and show say "forever".
func TestImportLockedForever(t *testing.T) {
	t.Parallel()
	dump, err := os.ReadFile("../../authn/testdata/minimost-auth.sql")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "python-auth.db")
	raw := testdb.RawSQLite(t, src)
	if _, err := raw.DB.Exec(string(dump)); err != nil {
		t.Fatal(err)
	}
	// As Python's sqlite3 stores float("inf") and 1e300: REAL values.
	if _, err := raw.DB.Exec("UPDATE users SET lockout_until = 1e300 WHERE username = 'alice'; UPDATE users SET lockout_until = 9e999 WHERE username = 'dave_nulls'"); err != nil {
		t.Fatal(err)
	}
	raw.Close()

	db := filepath.Join(dir, "auth.db")
	authctl(t, "", "-db", db, "import-db", src).want(t, 0, "imported 4 users")
	var stored []string
	rows, err := testdb.RawSQLite(t, db).DB.Query("SELECT username, typeof(lockout_until), quote(lockout_until) FROM users WHERE username IN ('alice', 'dave_nulls') ORDER BY username")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name, typ, value string
		if err := rows.Scan(&name, &typ, &value); err != nil {
			t.Fatal(err)
		}
		stored = append(stored, name+" "+typ+" "+value)
	}
	rows.Close()
	// SQLite quotes +Inf as 9.0e+999.
	if want := []string{"alice real 1.0e+300", "dave_nulls real 9.0e+999"}; strings.Join(stored, ",") != strings.Join(want, ",") {
		t.Errorf("stored after import: %q, want %q", stored, want)
	}
	if err := login(t, db, "alice", "alice's long passphrase"); !errors.Is(err, authn.ErrLocked) {
		t.Errorf("alice (1e300) after import: %v, want locked", err)
	}

	r := authctl(t, "", "-db", db, "list")
	for _, name := range []string{"alice", "dave_nulls"} {
		if !regexp.MustCompile(`(?m)^` + name + ` +0 +forever `).MatchString(r.stdout) {
			t.Errorf("list does not show %s locked forever:\n%s", name, r.stdout)
		}
	}
	r = authctl(t, "", "-db", db, "list", "-locked")
	if !strings.Contains(r.stdout, "alice") || !strings.Contains(r.stdout, "dave_nulls") {
		t.Errorf("list -locked leaves out the users locked forever:\n%s", r.stdout)
	}
	r = authctl(t, "", "-db", db, "show", "alice")
	if !strings.Contains(r.stdout, "locked until:    forever\n") {
		t.Errorf("show alice:\n%s%s", r.stdout, r.stderr)
	}
	r = authctl(t, "", "-db", db, "show", "-json", "dave_nulls")
	var acc map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &acc); err != nil || acc["locked_forever"] != true || acc["locked_until"] != "9999-12-31T23:59:59Z" {
		t.Errorf("show -json dave_nulls: %v\n%s", err, r.stdout)
	}
}

// TestNoTerminalEscapes: names, lines and file names with terminal escapes
// (an OSC title, a screen clear, a carriage return that overwrites the line
// with fake text, a bell, a C1 CSI) reach the terminal quoted, and neither a
// "hash" that is a plaintext password nor a database password is printed.
func TestNoTerminalEscapes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "evil\x1b[2J.htpasswd")
	lines := []string{
		"\x1b]0;pwned\a:$2y$05$NhshH5Jxvu9X.7gKQ3l/Fup55myGRY0GwBhM46qmA./okMleSTn3e",
		"\x1b[2J\rimported 99 users from users.htpasswd, skipped 0:x",
		"carol\u009b2J:x",
		"mallory:Kq9zXvWlPlainSecret",
		"\x07\x1b[1A no colon \x1b[K",
	}
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "auth.db")
	runs := []result{
		authctl(t, "", "-db", db, "import-htpasswd", file),
		authctl(t, "", "-db", db, "show", "\x1b]0;pwned\a"),
		authctl(t, "", "-db", db, "delete", "-y", "\x1b[2J"),
		authctl(t, "", "-db", db, "lock", "x\ry", "\x1b[2J"),
		authctl(t, "", "-db", db, "import-db", "postgres://admin:S3cretPw@127.0.0.1:1/auth?connect_timeout=2"),
		authctl(t, "", "-db", db, "import-htpasswd", filepath.Join(dir, "missing\x1b]0;x\a")),
	}
	for i, r := range runs {
		out := r.stdout + r.stderr
		if j := strings.IndexFunc(out, func(c rune) bool {
			return c != '\n' && c != '\t' && (c < 0x20 || c >= 0x7f && c < 0xa0)
		}); j >= 0 {
			t.Errorf("run %d printed a control character %q at %d:\n%s", i, out[j], j, out)
		}
		for _, secret := range []string{"Kq9zXvWl", "S3cretPw"} {
			if strings.Contains(out, secret) {
				t.Errorf("run %d printed the secret %s:\n%s", i, secret, out)
			}
		}
	}
	// The report still says which line was skipped, and why.
	if want := `:1: "\x1b]0;pwned\a": skipped: invalid username`; !strings.Contains(runs[0].stderr, want) {
		t.Errorf("no %q in:\n%s", want, runs[0].stderr)
	}
	if want := `:4: mallory: skipped: import mallory: password: unsupported hash format`; !strings.Contains(runs[0].stderr, want) {
		t.Errorf("no %q in:\n%s", want, runs[0].stderr)
	}
}

// TestDoubleDash: "--" ends the flags, so that names starting with "-"
// (which authn allows) can be given; everything after it is a name, even
// when it looks like a flag.
func TestDoubleDash(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "auth.db")
	authctl(t, "dash user passphrase\n", "-db", db, "add", "--", "-foo").want(t, 0, "created user -foo")
	authctl(t, "dash user passphrase\n", "-db", db, "add", "--", "-x").want(t, 0, "created user -x")
	if r := authctl(t, "", "-db", db, "show", "--", "-foo"); r.code != 0 || !strings.Contains(r.stdout, "name:            -foo") {
		t.Errorf("show -- -foo: %+v", r)
	}
	if r := authctl(t, "", "-db", db, "show", "-json", "--", "-foo"); r.code != 0 || !strings.Contains(r.stdout, `"username": "-foo"`) {
		t.Errorf("show -json -- -foo: %+v", r)
	}
	authctl(t, "", "-db", db, "show", "-foo").want(t, 2, "flag provided but not defined: -foo")
	// After "--", "-y" is a second name, not the flag: nothing is deleted.
	authctl(t, "", "-db", db, "delete", "--", "-x", "-y").want(t, 2, "usage")
	authctl(t, "", "-db", db, "lock", "--", "-x", "1h").want(t, 0, "locked -x until")
	authctl(t, "", "-db", db, "delete", "-y", "--", "-x").want(t, 0, "deleted -x")
	if r := authctl(t, "", "-db", db, "list", "-json"); !strings.Contains(r.stdout, `"-foo"`) || strings.Contains(r.stdout, `"-x"`) {
		t.Errorf("list after deleting -x:\n%s", r.stdout)
	}
}

// TestMissingDatabase: a command that reads or changes users refuses a
// -db file that does not exist (a typo would otherwise create an empty
// database and report success), names the path, exits 1 and creates
// nothing; add and the imports create the file.
func TestMissingDatabase(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	typo := filepath.Join(dir, "atuh.db")
	for _, args := range [][]string{
		{"list"}, {"list", "-locked", "-json"}, {"show", "alice"}, {"lock", "alice", "1h"}, {"unlock", "alice"},
		{"passwd", "alice"}, {"delete", "-y", "alice"}, {"sessions", "alice"}, {"sessions", "-json", "alice"}, {"logout", "alice"},
		{"token", "add", "alice", "ci"}, {"token", "list", "alice"}, {"token", "revoke", "alice", "ci"},
	} {
		r := authctl(t, "alice's long passphrase\n", append([]string{"-db", typo}, args...)...)
		r.want(t, 1, "no database file "+typo)
		if !strings.Contains(r.stderr, "authctl "+args[0]+": ") || r.stdout != "" {
			t.Errorf("%v: stdout %q, stderr %q", args, r.stdout, r.stderr)
		}
		if _, err := os.Stat(typo); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%v created %s (%v)", args, typo, err)
		}
	}
	// A name with a terminal escape is shown escaped.
	authctl(t, "", "-db", filepath.Join(dir, "x\x1b[2J.db"), "list").want(t, 1, `no database file `+filepath.Join(dir, `x\x1b[2J.db`))

	// add creates the file, and the other commands then work on it.
	db := filepath.Join(dir, "auth.db")
	authctl(t, "alice's long passphrase\n", "-db", db, "add", "alice").want(t, 0, "created user alice")
	authctl(t, "", "-db", db, "show", "alice").want(t, 0, "")
	for _, imp := range []struct{ db, cmd, src string }{
		{filepath.Join(dir, "from-htpasswd.db"), "import-htpasswd", "testdata/users.htpasswd"},
		{filepath.Join(dir, "from-db.db"), "import-db", db},
	} {
		authctl(t, "", "-db", imp.db, imp.cmd, imp.src).want(t, map[string]int{"import-htpasswd": 1, "import-db": 0}[imp.cmd], "imported")
		if _, err := os.Stat(imp.db); err != nil {
			t.Errorf("%s did not create its -db: %v", imp.cmd, err)
		}
	}
	// Help needs no database.
	authctl(t, "", "-db", typo, "help", "list").want(t, 0, "Usage")
}

// TestFileURI: -db takes a path; a SQLite file: URI is refused with a
// message saying so, for every command, and creates nothing.
func TestFileURI(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir) // a relative "file:…" would be created here
	for _, args := range [][]string{{"list"}, {"add", "alice"}, {"import-htpasswd", "users.htpasswd"}} {
		for _, db := range []string{"file:auth.db", "file:auth.db?mode=rwc", "FILE:" + filepath.Join(dir, "auth.db")} {
			r := authctl(t, "alice's long passphrase\n", append([]string{"-db", db}, args...)...)
			r.want(t, 1, "a file: URI is not accepted; give the database file's path")
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("file: URIs created %v", entries)
	}
}

// TestSessionCommands: "sessions" lists a user's sessions (table and
// JSON) and "logout" ends them all, refused on the very next request,
// saying how many; on both databases.
func TestSessionCommands(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		for _, name := range []string{"alice", "bob"} {
			authctl(t, name+"'s long passphrase\n", "-db", db.URL, "add", name).want(t, 0, "created user "+name)
		}
		// The application, a process of its own.
		a := db.Open(t, authn.Config{HTTP: authn.HTTPConfig{InsecureCookies: true}})
		login := func(name, ua string) *http.Cookie {
			t.Helper()
			r := httptest.NewRequest("POST", "/login", strings.NewReader(`{"username":"`+name+`","password":"`+name+`'s long passphrase"}`))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("User-Agent", ua)
			w := httptest.NewRecorder()
			a.LoginHandler().ServeHTTP(w, r)
			if w.Code != 200 || len(w.Result().Cookies()) != 1 {
				t.Fatalf("login of %s: %d", name, w.Code)
			}
			return w.Result().Cookies()[0]
		}
		status := func(c *http.Cookie) int {
			r := httptest.NewRequest("GET", "/app", nil)
			r.Header.Set("Accept", "application/json")
			r.AddCookie(c)
			w := httptest.NewRecorder()
			a.RequireSession(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(w, r)
			return w.Code
		}
		alice1, alice2, bob := login("alice", "Firefox/1"), login("alice", "Evil\tAgent\u202e/2"), login("bob", "Bob/1")

		r := authctl(t, "", "-db", db.URL, "sessions", "alice")
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if r.code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(r.stdout, "Firefox/1") ||
			!strings.Contains(r.stdout, "EvilAgent/2") || !strings.Contains(r.stdout, "192.0.2.0/24") || strings.Contains(r.stdout, "Bob/1") {
			t.Fatalf("sessions alice:\n%s%s", r.stdout, r.stderr)
		}
		for _, c := range []*http.Cookie{alice1, alice2} {
			if strings.Contains(r.stdout, c.Value) {
				t.Fatal("sessions shows a token")
			}
		}
		r = authctl(t, "", "-db", db.URL, "sessions", "-json", "alice")
		var list []map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 2 || list[0]["id"] == "" || list[0]["last_seen"] == nil {
			t.Fatalf("sessions -json: %v\n%s", err, r.stdout)
		}

		authctl(t, "", "-db", db.URL, "logout", "alice").want(t, 0, "ended 2 sessions of alice")
		if status(alice1) != 401 || status(alice2) != 401 {
			t.Fatal("alice's sessions work after authctl logout")
		}
		if status(bob) != 200 {
			t.Fatal("bob's session ended with alice's")
		}
		r = authctl(t, "", "-db", db.URL, "sessions", "-json", "alice")
		if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
			t.Fatalf("sessions -json after logout: %+v", r)
		}
		authctl(t, "", "-db", db.URL, "logout", "alice").want(t, 0, "ended 0 sessions of alice")
		authctl(t, "", "-db", db.URL, "logout", "nobody").want(t, 1, "no such user: nobody")
		authctl(t, "", "-db", db.URL, "sessions", "nobody").want(t, 1, "no such user: nobody")
		authctl(t, "", "-db", db.URL, "logout").want(t, 2, "usage: authctl [-db DB] logout NAME")
	})
}

// TestTokenCommands: "token add" prints the token alone on standard
// output, and the token then works for the application (another process);
// "token list" shows it (table and JSON) with its last use, never the
// token; "token revoke" stops it on the very next request. Errors and
// usage mistakes get clear messages; on both databases.
func TestTokenCommands(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		authctl(t, "alice's long passphrase\n", "-db", db.URL, "add", "alice").want(t, 0, "created user alice")
		a := db.Open(t, authn.Config{})
		status := func(token string) int {
			r := httptest.NewRequest("GET", "/api", nil)
			r.Header.Set("Authorization", "Bearer "+token)
			w := httptest.NewRecorder()
			a.BasicAuth(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(w, r)
			return w.Code
		}

		r := authctl(t, "", "-db", db.URL, "token", "add", "alice", "ci")
		r.want(t, 0, "created token ci of alice; it is shown only this once")
		token := strings.TrimSuffix(r.stdout, "\n")
		if !regexp.MustCompile(`^mmt_[A-Za-z0-9_-]{43}\n$`).MatchString(r.stdout) {
			t.Fatalf("token add printed %q", r.stdout)
		}
		if got := status(token); got != 200 {
			t.Fatalf("the new token: %d", got)
		}

		r = authctl(t, "", "-db", db.URL, "token", "list", "alice")
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if r.code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasPrefix(lines[1], "ci ") ||
			strings.HasSuffix(lines[1], " -") || strings.Contains(r.stdout, token[4:]) {
			t.Fatalf("token list:\n%s%s", r.stdout, r.stderr)
		}
		r = authctl(t, "", "-db", db.URL, "token", "list", "-json", "alice")
		var list []map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 || list[0]["name"] != "ci" ||
			list[0]["created"] == nil || list[0]["last_used"] == nil {
			t.Fatalf("token list -json: %v\n%s", err, r.stdout)
		}
		authctl(t, "", "-db", db.URL, "token", "add", "alice", "unused").want(t, 0, "created token unused")
		r = authctl(t, "", "-db", db.URL, "token", "list", "alice")
		if !regexp.MustCompile(`(?m)^unused .* -$`).MatchString(r.stdout) {
			t.Fatalf("a token never used shows no \"-\":\n%s", r.stdout)
		}

		for _, tc := range []struct {
			args []string
			code int
			msg  string
		}{
			{[]string{"token", "add", "alice", "ci"}, 1, `token name already taken: alice already has a token named "ci"`},
			{[]string{"token", "add", "nobody", "ci"}, 1, "no such user: nobody"},
			{[]string{"token", "add", "alice", " "}, 1, "invalid token name"},
			{[]string{"token", "add", "alice", "a\x1b[2Jb"}, 1, `invalid token name`},
			{[]string{"token", "list", "nobody"}, 1, "no such user: nobody"},
			{[]string{"token", "revoke", "alice", "nope"}, 1, `no such token: alice has no token named "nope"`},
			{[]string{"token", "revoke", "nobody", "ci"}, 1, "no such user: nobody"},
			{[]string{"token", "add", "alice"}, 2, "usage: authctl [-db DB] token add NAME TOKEN-NAME"},
			{[]string{"token", "list", "alice", "ci"}, 2, "usage: authctl [-db DB] token list [-json] NAME"},
			{[]string{"token", "frob", "alice"}, 2, `unknown token command "frob"`},
			{[]string{"token", "add", "-json", "alice", "x"}, 2, "-json is a flag of token list only"},
			{[]string{"token"}, 2, "usage: authctl [-db DB] token"},
		} {
			r := authctl(t, "", append([]string{"-db", db.URL}, tc.args...)...)
			r.want(t, tc.code, tc.msg)
			if r.stdout != "" || strings.Contains(r.stderr, "\x1b") {
				t.Errorf("%v: stdout %q, stderr %q", tc.args, r.stdout, r.stderr)
			}
		}

		authctl(t, "", "-db", db.URL, "token", "revoke", "alice", "ci").want(t, 0, "revoked token ci of alice")
		if got := status(token); got != 401 {
			t.Fatalf("the revoked token: %d, want 401", got)
		}
		r = authctl(t, "", "-db", db.URL, "token", "list", "alice")
		if strings.Contains(r.stdout, "ci ") || !strings.Contains(r.stdout, "unused") {
			t.Fatalf("token list after revoke:\n%s", r.stdout)
		}
	})
}

// TestListAcrossPages: list, which writes each page (1,000 users) as it
// reads it, writes every user once, in name order, as a table and as JSON.
func TestListAcrossPages(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "auth.db")
	a := (&testdb.DB{Name: "sqlite", URL: db}).Open(t, authn.Config{Hasher: testdb.FastHasher})
	const n = 2345
	var want []string
	for i := range n {
		name := fmt.Sprintf("u%05d", i)
		if err := a.ImportUser(context.Background(), authn.UserRecord{Username: name, PasswordHash: "pbkdf2:sha256:1$salt$" + strings.Repeat("0", 64)}, false); err != nil {
			t.Fatal(err)
		}
		want = append(want, name)
	}
	a.Close()

	r := authctl(t, "", "-db", db, "list")
	r.want(t, 0, "")
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != n+1 || !strings.HasPrefix(lines[0], "NAME ") {
		t.Fatalf("list: %d lines, want a header and %d rows", len(lines), n)
	}
	for i, line := range lines[1:] {
		if f := strings.Fields(line); len(f) != 5 || f[0] != want[i] {
			t.Fatalf("row %d: %q, want %s first of 5 fields", i, line, want[i])
		}
	}

	r = authctl(t, "", "-db", db, "list", "-json")
	r.want(t, 0, "")
	var got []struct{ Username string }
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("list -json: %v", err)
	}
	if len(got) != n || got[0].Username != want[0] || got[n-1].Username != want[n-1] {
		t.Fatalf("list -json: %d users, first %v, want %d", len(got), got[:1], n)
	}
}
