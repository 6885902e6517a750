package authn_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/minimost/minimost/authn"
)

// TestUnusableHashNotLogged: a users row whose "hash" is a plaintext
// password (or any unreadable string) is logged and returned as unusable,
// naming the scheme at most, never with its content.
func TestUnusableHashNotLogged(t *testing.T) {
	t.Parallel()
	var log strings.Builder
	a, path := openTest(t, authn.Config{Logger: newTextLogger(&log)})
	secrets := map[string]string{
		"plain":  "Kq9zXvWlPlainSecret",
		"pbkdf2": "pbkdf2:sha256:60x000$Kq9zXvWlSalt$deadbeef",
		"argon":  "$argon2id$v=19$m=Kq9zXvWl,t=2,p=1$S0JQeWNHOURp$Kj2usJtR06nK",
	}
	for name, stored := range secrets {
		if _, err := rawDB(t, path).Exec("INSERT INTO users (username, password_hash) VALUES (?, ?)", name, stored); err != nil {
			t.Fatal(err)
		}
		err := a.Authenticate(context.Background(), name, "Kq9zXvWlPlainSecret")
		if !errors.Is(err, authn.ErrInvalidCredentials) {
			t.Fatalf("%s: %v", name, err)
		}
		if strings.Contains(err.Error(), "Kq9zXvWl") {
			t.Errorf("%s: the error repeats the stored hash: %v", name, err)
		}
	}
	if !strings.Contains(log.String(), "level=ERROR") {
		t.Fatalf("no ERROR line for the unusable hashes:\n%s", log.String())
	}
	if strings.Contains(log.String(), "Kq9zXvWl") {
		t.Errorf("the log repeats a stored hash:\n%s", log.String())
	}
}
