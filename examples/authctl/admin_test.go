package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
)

// untouchedStdin is a standard input that notes whether anything read it.
type untouchedStdin struct{ read bool }

func (r *untouchedStdin) Read([]byte) (int, error) {
	r.read = true
	return 0, io.EOF
}

// TestAddChecksNameFirst: "add" refuses an invalid name, or one taken (also
// in another case), before it reads a password: nobody types one twice for
// nothing.
func TestAddChecksNameFirst(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "auth.db")
	authctl(t, "alice's long passphrase\n", "-db", db, "add", "alice").want(t, 0, "created user alice")
	for _, tc := range []struct{ name, msg string }{
		{"alice", "username already taken: alice"},
		{"Alice", "username already taken: Alice"},
		{"carol!", "invalid username"},
		{strings.Repeat("c", 33), "invalid username"},
	} {
		stdin := &untouchedStdin{}
		var out, errOut strings.Builder
		code := run(context.Background(), []string{"-db", db, "add", tc.name},
			env{stdin: stdin, stdout: &out, stderr: &errOut, hasher: testdb.FastHasher})
		r := result{code, out.String(), errOut.String()}
		r.want(t, 1, tc.msg)
		if stdin.read {
			t.Errorf("add %s: standard input was read before the name was refused", tc.name)
		}
	}
}

// TestLockDays: "lock" takes days (7d) and "forever", a lock with no end
// that list, list -locked, show and show -json call forever and that
// unlock ends; other durations are usage errors that lock nothing.
func TestLockDays(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "auth.db")
	authctl(t, "bob's long passphrase\n", "-db", db, "add", "bob").want(t, 0, "created user bob")

	authctl(t, "", "-db", db, "lock", "bob", "7d").want(t, 0, "locked bob until")
	r := authctl(t, "", "-db", db, "show", "-json", "bob")
	var acc struct {
		LockedUntil   time.Time `json:"locked_until"`
		LockedForever bool      `json:"locked_forever"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &acc); err != nil {
		t.Fatalf("show -json bob: %v\n%s", err, r.stdout)
	}
	if d := time.Until(acc.LockedUntil); d < 7*24*time.Hour-time.Minute || d > 7*24*time.Hour || acc.LockedForever {
		t.Errorf("after lock 7d: locked until %v (in %v), forever %v; want in 7 days", acc.LockedUntil, d, acc.LockedForever)
	}

	authctl(t, "", "-db", db, "lock", "bob", "forever").want(t, 0, "locked bob forever")
	r = authctl(t, "", "-db", db, "list")
	if !regexp.MustCompile(`(?m)^bob +0 +forever `).MatchString(r.stdout) {
		t.Errorf("list does not show bob locked forever:\n%s", r.stdout)
	}
	if r := authctl(t, "", "-db", db, "list", "-locked"); !strings.Contains(r.stdout, "bob") {
		t.Errorf("list -locked leaves bob out:\n%s", r.stdout)
	}
	if r := authctl(t, "", "-db", db, "show", "bob"); !strings.Contains(r.stdout, "locked until:    forever\n") {
		t.Errorf("show bob:\n%s%s", r.stdout, r.stderr)
	}
	r = authctl(t, "", "-db", db, "show", "-json", "bob")
	if err := json.Unmarshal([]byte(r.stdout), &acc); err != nil || !acc.LockedForever {
		t.Errorf("show -json bob: %v\n%s", err, r.stdout)
	}
	if err := login(t, db, "bob", "bob's long passphrase"); !errors.Is(err, authn.ErrLocked) {
		t.Errorf("bob locked forever logs in: %v", err)
	}
	authctl(t, "", "-db", db, "unlock", "bob").want(t, 0, "unlocked bob")
	if err := login(t, db, "bob", "bob's long passphrase"); err != nil {
		t.Errorf("bob after unlock: %v", err)
	}

	for _, bad := range []string{"0d", "d", "1.5d", "+0d", "7days", "7D", "106752d", "Forever", "forever2", "0", "0s"} {
		authctl(t, "", "-db", db, "lock", "bob", bad).want(t, 2, fmt.Sprintf("DURATION %q", bad))
	}
	if r := authctl(t, "", "-db", db, "show", "bob"); !strings.Contains(r.stdout, "locked until:    -\n") {
		t.Errorf("a refused DURATION locked bob:\n%s", r.stdout)
	}
}

// server is an application on the database file, opened by authn.Open as
// a server would open it, serving Basic auth and sessions.
type server struct {
	t *testing.T
	a *authn.Authenticator
}

func newServer(t *testing.T, db string) *server {
	return &server{t, (&testdb.DB{Name: "sqlite", URL: db}).Open(t, authn.Config{HTTP: authn.HTTPConfig{InsecureCookies: true}})}
}

// basic is the status of a request with Basic credentials, or with
// "Bearer TOKEN" when user is "".
func (s *server) basic(user, pw string) int {
	r := httptest.NewRequest("GET", "/", nil)
	if user == "" {
		r.Header.Set("Authorization", "Bearer "+pw)
	} else {
		r.SetBasicAuth(user, pw)
	}
	w := httptest.NewRecorder()
	s.a.BasicAuth(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(w, r)
	return w.Code
}

// login signs in and returns the session cookie.
func (s *server) login(user, pw string) *http.Cookie {
	s.t.Helper()
	r := httptest.NewRequest("POST", "/login", strings.NewReader(`{"username":"`+user+`","password":"`+pw+`"}`))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	s.a.LoginHandler().ServeHTTP(w, r)
	if w.Code != 200 || len(w.Result().Cookies()) != 1 {
		s.t.Fatalf("login of %s: %d", user, w.Code)
	}
	return w.Result().Cookies()[0]
}

// session is the status of a request with the cookie.
func (s *server) session(c *http.Cookie) int {
	r := httptest.NewRequest("GET", "/app", nil)
	r.Header.Set("Accept", "application/json")
	r.AddCookie(c)
	w := httptest.NewRecorder()
	s.a.RequireSession(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(w, r)
	return w.Code
}

// expect checks the status of each request, named by what it carries.
func (s *server) expect(when string, want map[string]int, got map[string]int) {
	s.t.Helper()
	for what, code := range want {
		if got[what] != code {
			s.t.Errorf("%s: %s answered %d, want %d", when, what, got[what], code)
		}
	}
}

const (
	alicePW    = "alice's long passphrase"
	aliceNewPW = "alice's new long passphrase"
	bobPW      = "bob's long passphrase"
	carolPW    = "carol's long passphrase"
	davePW     = "dave's long passphrase"
)

// TestBackupRestore: "backup" copies the database while a server uses it
// (its last commit, still in the -wal file, included) into a new file of
// mode 0600, and never over an existing file; "restore" brings the copy
// back into the live file while the server runs, and the server's very next
// requests see it: users deleted since are back, users added since are
// gone, passwords and app tokens are as they were, and every session has
// ended. The copy itself is not changed.
func TestBackupRestore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	db, copyFile := filepath.Join(dir, "auth.db"), filepath.Join(dir, "backup", "auth-copy.db")
	if err := os.Mkdir(filepath.Dir(copyFile), 0o700); err != nil {
		t.Fatal(err)
	}
	authctl(t, alicePW+"\n", "-db", db, "add", "alice").want(t, 0, "created user alice")
	authctl(t, bobPW+"\n", "-db", db, "add", "bob").want(t, 0, "created user bob")
	s := newServer(t, db)
	token, err := s.a.CreateToken(ctx, "alice", "ci")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.a.Register(ctx, "carol", carolPW); err != nil { // in the -wal file
		t.Fatal(err)
	}
	cookie := s.login("alice", alicePW)
	state := func() map[string]int {
		return map[string]int{
			"alice": s.basic("alice", alicePW), "alice's new password": s.basic("alice", aliceNewPW),
			"bob": s.basic("bob", bobPW), "carol": s.basic("carol", carolPW), "dave": s.basic("dave", davePW),
			"alice's token": s.basic("", token), "alice's session": s.session(cookie),
		}
	}
	s.expect("before the backup", map[string]int{"alice": 200, "alice's new password": 401, "bob": 200, "carol": 200,
		"dave": 401, "alice's token": 200, "alice's session": 200}, state())

	authctl(t, "", "-db", db, "backup", copyFile).want(t, 0, "wrote a copy of "+db+" to "+copyFile+": 3 users")
	fi, err := os.Stat(copyFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the copy: %v, %v; want mode 0600", fi, err)
	}
	if got := usernames(t, copyFile); !slices.Equal(got, []string{"alice", "bob", "carol"}) {
		t.Errorf("the copy holds %v, want alice, bob and carol", got)
	}
	copied, err := os.ReadFile(copyFile)
	if err != nil {
		t.Fatal(err)
	}
	authctl(t, "", "-db", db, "backup", copyFile).want(t, 1, "exists: backup writes a new file only")

	// Changes after the copy, seen by the server.
	authctl(t, "", "-db", db, "delete", "-y", "bob").want(t, 0, "deleted bob")
	authctl(t, davePW+"\n", "-db", db, "add", "dave").want(t, 0, "created user dave")
	authctl(t, aliceNewPW+"\n", "-db", db, "passwd", "alice").want(t, 0, "password of alice changed")
	authctl(t, "", "-db", db, "token", "revoke", "alice", "ci").want(t, 0, "revoked token ci of alice")
	cookie = s.login("alice", aliceNewPW)
	s.expect("after the changes", map[string]int{"alice": 401, "alice's new password": 200, "bob": 401, "carol": 200,
		"dave": 200, "alice's token": 401, "alice's session": 200}, state())

	authctl(t, "", "-db", db, "restore", copyFile).want(t, 1, "not confirmed; nothing restored")
	s.expect("after a restore not confirmed", map[string]int{"alice": 401, "alice's new password": 200, "bob": 401,
		"dave": 200, "alice's token": 401, "alice's session": 200}, state())

	r := authctl(t, "", "-db", db, "restore", "-y", copyFile)
	r.want(t, 0, "restored "+copyFile+" into "+db+": 3 users; every session ended")
	if !strings.Contains(r.stderr, "app token ci of alice is back") {
		t.Errorf("restore does not name the token it brings back:\n%s", r.stderr)
	}
	s.expect("after the restore", map[string]int{"alice": 200, "alice's new password": 401, "bob": 200, "carol": 200,
		"dave": 401, "alice's token": 200, "alice's session": 401}, state())
	if _, err := s.a.Account(ctx, "dave"); !errors.Is(err, authn.ErrNotFound) {
		t.Errorf("dave after the restore: %v, want ErrNotFound", err)
	}
	if after, err := os.ReadFile(copyFile); err != nil || !bytes.Equal(after, copied) {
		t.Errorf("restore changed the copy (%v)", err)
	}
	requireNoLeftovers(t, dir, "backup")
	if got := usernames(t, db); !slices.Equal(got, []string{"alice", "bob", "carol"}) {
		t.Errorf("the database holds %v after the restore, want alice, bob and carol", got)
	}
	// The server goes on writing to the file it has open.
	if err := s.a.Register(ctx, "erin", "erin's long passphrase"); err != nil {
		t.Fatal(err)
	}
	if r := authctl(t, "", "-db", db, "list"); !strings.Contains(r.stdout, "erin") {
		t.Errorf("a registration after the restore is not in the file:\n%s", r.stdout)
	}
}

// requireNoLeftovers fails the test if dir holds anything but the database
// auth.db (with its -wal and -shm) and the names in keep: a restore's
// staging directory, say.
func requireNoLeftovers(t *testing.T, dir string, keep ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if name := e.Name(); !strings.HasPrefix(name, "auth.db") && !slices.Contains(keep, name) {
			t.Errorf("left behind in the database's directory: %s", name)
		}
	}
}

// TestRestoreRefuses: a FILE that is no authn database, or that cannot be
// restored whole, is refused with a message that says why, and neither the
// database nor a running server's answers change; nothing is left behind.
// Backup and restore refuse a PostgreSQL database.
func TestRestoreRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "auth.db")
	authctl(t, alicePW+"\n", "-db", db, "add", "alice").want(t, 0, "created user alice")
	s := newServer(t, db)
	cookie := s.login("alice", alicePW)
	files := t.TempDir()
	write := func(name string, content []byte) string {
		t.Helper()
		path := filepath.Join(files, name)
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	sqliteFile := func(name, sql string) string {
		t.Helper()
		path := filepath.Join(files, name)
		raw := testdb.RawSQLite(t, path)
		if _, err := raw.ExecContext(ctx, sql); err != nil {
			t.Fatal(err)
		}
		raw.Close()
		return path
	}
	good := filepath.Join(files, "good.db")
	authctl(t, "", "-db", db, "backup", good).want(t, 0, "1 users")
	goodBytes, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	damaged := bytes.Clone(goodBytes)
	for i := 4096; i < len(damaged); i++ { // every page but the first, the schema's
		damaged[i] = byte(i * 7)
	}
	inUse := write("in-use.db", goodBytes)
	write("in-use.db-wal", []byte("frames"))
	junk := make([]byte, 8192)
	for i := range junk {
		junk[i] = byte(i * 13)
	}

	for _, tc := range []struct{ what, file, msg string }{
		{"garbage", write("garbage.db", junk), "garbage.db: not a SQLite database, or damaged"},
		{"a text file", write("notes.txt", []byte("alice:secret\n")), "notes.txt: not a SQLite database, or damaged"},
		{"an empty file", write("empty.db", nil), "empty.db: no users table: not an authn database"},
		{"no users table", sqliteFile("other.db", "CREATE TABLE accounts (name TEXT)"), "other.db: no users table: not an authn database"},
		{"another users table", sqliteFile("users.db", "CREATE TABLE users (name TEXT)"), "users.db: its users table is not the one authn reads"},
		{"damaged", write("damaged.db", damaged), "damaged.db: "},
		{"a -wal beside it", inUse, "in-use.db has a -wal file beside it"},
		{"the database itself", db, "is the database itself"},
		{"no such file", filepath.Join(files, "nothing.db"), "no file " + filepath.Join(files, "nothing.db")},
		{"a directory", files, "is not a regular file"},
	} {
		before := authctl(t, "", "-db", db, "list", "-json").stdout
		authctl(t, "", "-db", db, "restore", "-y", tc.file).want(t, 1, tc.msg)
		if after := authctl(t, "", "-db", db, "list", "-json").stdout; after != before {
			t.Errorf("%s: the database changed:\n%s\nthen\n%s", tc.what, before, after)
		}
		s.expect("after refusing "+tc.what, map[string]int{"alice": 200, "session": 200},
			map[string]int{"alice": s.basic("alice", alicePW), "session": s.session(cookie)})
		requireNoLeftovers(t, dir)
	}
	if after, err := os.ReadFile(good); err != nil || !bytes.Equal(after, goodBytes) {
		t.Errorf("the refusals changed the good copy (%v)", err)
	}

	pg := "postgres://postgres@127.0.0.1:1/none"
	authctl(t, "", "-db", pg, "backup", filepath.Join(files, "pg.db")).want(t, 1, "backup works on a SQLite file; for PostgreSQL use pg_dump")
	authctl(t, "", "-db", pg, "restore", "-y", good).want(t, 1, "restore works on a SQLite file; for PostgreSQL use pg_dump and pg_restore")
	authctl(t, "", "-db", filepath.Join(files, "missing.db"), "backup", filepath.Join(files, "x.db")).want(t, 1, "no database file")
	if _, err := os.Stat(filepath.Join(files, "x.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("backup of a missing database left a file: %v", err)
	}
}

// usernames reads the names in a SQLite file's users table through SQLite
// alone, read-only: authn.Open would change the file (WAL, tables).
func usernames(t *testing.T, path string) []string {
	t.Helper()
	db, err := openSQLite(path, "ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT username FROM users ORDER BY username")
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}
