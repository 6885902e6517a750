package authn_test

import (
	"context"
	"testing"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
)

// TestImportReplaceDoesNotReviveTokens: a user deleted behind the
// library's back (the Python application deletes the users row and knows
// nothing of tokens) leaves its tokens, refused while the name is free.
// ImportUser then writes a user of that name: with replace as without, the
// new owner of the name must not inherit the old owner's tokens, in either
// form.
func TestImportReplaceDoesNotReviveTokens(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		for _, replace := range []bool{false, true} {
			s := newTokenSite(t, db, authn.Config{})
			ctx := context.Background()
			token := newToken(t, s.a, "alice", "ci")
			hash := readUser(t, db.Raw, "alice").Hash
			if _, err := db.Raw.ExecContext(ctx, "DELETE FROM users WHERE username = 'alice'"); err != nil {
				t.Fatal(err)
			}
			c := clientFrom("127.0.0.2")
			if got := s.get(t, c, bearer(token)); got.code != 401 {
				t.Fatalf("replace %v: token of a deleted user: %d, want 401", replace, got.code)
			}
			if err := s.a.ImportUser(ctx, authn.UserRecord{Username: "alice", PasswordHash: hash}, replace); err != nil {
				t.Fatalf("replace %v: ImportUser: %v", replace, err)
			}
			if got := s.get(t, c, bearer(token)); got.code != 401 {
				t.Fatalf("replace %v: the old token after the import: %d %q, want 401", replace, got.code, got.body)
			}
			if got := s.get(t, c, basicAuthHeader("alice", token)); got.code != 401 {
				t.Fatalf("replace %v: alice:old token after the import: %d %q, want 401", replace, got.code, got.body)
			}
			if list, err := s.a.Tokens(ctx, "alice"); err != nil || len(list) != 0 {
				t.Fatalf("replace %v: the imported alice's tokens: %+v %v", replace, list, err)
			}
			if err := s.a.Delete(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
		}
	})
}
