package authn_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/password"
)

// TestHasherPasswordLimit: with bcrypt, which reads 72 bytes, a longer
// password is a client's mistake: 400 naming the rule in bytes, no ERROR
// line, and the form says the limit up front.
func TestHasherPasswordLimit(t *testing.T) {
	t.Parallel()
	var log strings.Builder
	a, _ := openTest(t, authn.Config{Hasher: password.Bcrypt{Cost: 4}, Logger: newTextLogger(&log)})
	h := a.RegisterHandler()

	long := strings.Repeat("Kq9zXvWl ", 14)[:121] // 121 bytes, 121 characters: within MaxLength
	body := `{"username":"carol","password":"` + long + `"}`
	r := httptest.NewRequest("POST", "/register", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 400 || !strings.Contains(w.Body.String(), "72 bytes") {
		t.Errorf("register with a 121-byte password: %d %s; want 400 naming 72 bytes", w.Code, w.Body)
	}
	if strings.Contains(log.String(), "level=ERROR") {
		t.Errorf("a client's mistake logged as an error:\n%s", log.String())
	}

	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/register", nil))
	if !strings.Contains(w.Body.String(), `maxlength="72"`) || !strings.Contains(w.Body.String(), "72 bytes") {
		t.Errorf("the form does not give the 72-byte limit:\n%s", w.Body)
	}
	if err := a.Register(context.Background(), "carol", strings.Repeat("é", 40)); !errors.Is(err, authn.ErrInvalidPassword) {
		t.Errorf("40 characters of 2 bytes: %v, want ErrInvalidPassword", err)
	}
	if err := a.Register(context.Background(), "carol", long[:71]+"Z"); err != nil {
		t.Errorf("72 bytes: %v", err)
	}
}

// hidingHasher wraps a Hasher and hides its optional methods, as an
// application's wrapper (metrics, a pepper) may.
type hidingHasher struct{ password.Hasher }

// TestHasherRefusalIsInvalidPassword: a Hasher that refuses a password
// without declaring its limit up front still gives ErrInvalidPassword, from
// Register and SetPassword; a re-hash it refuses at login keeps the old hash
// and the login succeeds.
func TestHasherRefusalIsInvalidPassword(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, path := openTest(t, authn.Config{Hasher: hidingHasher{password.Bcrypt{Cost: 4}}})
	long := strings.Repeat("Kq9zXvWl ", 14)[:121]
	if err := a.Register(ctx, "carol", long); !errors.Is(err, authn.ErrInvalidPassword) {
		t.Errorf("Register: %v, want ErrInvalidPassword wrapping password.ErrPasswordTooLong", err)
	}
	if err := a.Register(ctx, "carol", "carol's long passphrase"); err != nil {
		t.Fatal(err)
	}
	if err := a.SetPassword(ctx, "carol", long); !errors.Is(err, authn.ErrInvalidPassword) {
		t.Errorf("SetPassword: %v, want ErrInvalidPassword", err)
	}

	// A PBKDF2 user with a long password logs in; the bcrypt re-hash is
	// refused and the old hash stays.
	old, err := password.PBKDF2{Iterations: 1000}.Hash(long)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rawDB(t, path).Exec("INSERT INTO users (username, password_hash) VALUES ('dave', ?)", old); err != nil {
		t.Fatal(err)
	}
	if err := a.Authenticate(ctx, "dave", long); err != nil {
		t.Fatalf("login whose re-hash is refused: %v", err)
	}
	if got := readUser(t, rawDB(t, path), "dave").Hash; got != old {
		t.Errorf("hash changed to %.20s…", got)
	}
}
