package authn

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/minimost/minimost/model"
)

// App tokens: what API clients (scripts, CI, git over HTTP) send in place
// of a password. Each is named per user, shown once, and stored only as
// its SHA-256; checking one costs one indexed read (or none: see Reads
// from memory in the package documentation) and no password hash.

// Errors of the app token operations, matched with errors.Is.
var (
	// ErrInvalidTokenName: a token name that is empty, longer than 64
	// characters, not valid UTF-8, with a character that is not printable
	// (a control, a format character such as a bidirectional override, a
	// space other than ' '), or with a space at either end.
	ErrInvalidTokenName = errors.New("authn: invalid token name")
	// ErrTokenExists: CreateToken with a name the user's tokens already have.
	ErrTokenExists = errors.New("authn: token name already taken")
	// ErrTokenNotFound: RevokeToken of a name the user has no token of.
	// errors.Is(err, ErrNotFound) is true for it too.
	ErrTokenNotFound error = tokenNotFound{}
)

// tokenNotFound is ErrTokenNotFound: a kind of ErrNotFound, with its own
// text ("no such user" would mislead).
type tokenNotFound struct{}

func (tokenNotFound) Error() string { return "authn: no such token" }
func (tokenNotFound) Unwrap() error { return ErrNotFound }

const (
	// appTokenPrefix starts every app token, so that BasicAuth tells one
	// from a password without a read, and secret scanners and people
	// recognise one in a file or a log.
	appTokenPrefix = "mmt_"
	// appTokenBytes is the randomness of a token: 256 bits.
	appTokenBytes = 32
	// appTokenLen is the length of a token: the prefix and the
	// unpadded base64url of its bytes.
	appTokenLen = len(appTokenPrefix) + (appTokenBytes*8+5)/6
	// maxTokenNameRunes bounds a token's name.
	maxTokenNameRunes = 64
	// tokenTouchEvery is how often a token's last use is written at most:
	// a busy client must not write on every request.
	tokenTouchEvery = time.Minute
)

// errNoToken: not a live app token (of the user named, for user:token).
var errNoToken = errors.New("authn: no such app token")

// errTokenUserLocked: the token is live but an administrator's Lock stops it.
var errTokenUserLocked = fmt.Errorf("%w: its user is locked", errNoToken)

// TokenInfo describes one app token of a user: never the token itself,
// which only CreateToken ever returns.
type TokenInfo struct {
	// Name tells the user's tokens apart.
	Name string `json:"name"`
	// Created is when CreateToken made it.
	Created time.Time `json:"created"`
	// LastUsed is when it last let a request through, to the minute (a
	// use is written at most once a minute); zero, and left out of JSON,
	// when it was never used.
	LastUsed time.Time `json:"last_used,omitzero"`
}

// CreateToken makes a new app token for username, called name, and
// returns it. The token is shown this once: only its SHA-256 is stored.
// It is "mmt_" and the unpadded base64url of 32 random bytes (47
// characters), and it stays valid until RevokeToken, Delete, an
// administrator's Lock while that lock lasts, or a password hash written
// outside this package.
//
// BasicAuth accepts it in place of the user's password ("user:token"), or
// alone as "Authorization: Bearer TOKEN". A token survives this package's
// changes of password: SetPassword, ChangePassword, ImportUser and the
// re-hash of a login carry it over to the new hash, and a lockout caused
// by failed passwords leaves it working, so that nobody can stop a user's
// API clients by guessing the password. It is bound to the user's hash as
// it is now, though: a hash written outside this package (by the Python
// application, or SQL) stops it, and a user of the same name deleted and
// created again outside inherits none of the old owner's tokens.
//
// name must be 1 to 64 printable characters, no space at either end (else
// ErrInvalidTokenName), and not the name of another working token of the
// user (ErrTokenExists; a token stopped by a hash written outside is
// replaced); an unknown user gives ErrNotFound.
func (a *Authenticator) CreateToken(ctx context.Context, username, name string) (token string, err error) {
	if err := CheckUsername(username); err != nil {
		return "", fmt.Errorf("%w: %w", ErrNotFound, nested(err))
	}
	if err := checkTokenName(name); err != nil {
		return "", err
	}
	token = newAppToken()
	row := &model.Token{TokenHash: tokenHash(token), Username: username, Name: name, CreatedAt: unixSeconds(a.now())}
	inserted, err := a.store.insertToken(ctx, row)
	if err != nil {
		return "", err
	}
	if !inserted {
		return "", a.noUserOr(ctx, username, fmt.Errorf("%w: %s already has a token named %q", ErrTokenExists, username, name))
	}
	a.emit(ctx, Event{Type: EventTokenCreated, Username: username, TokenName: name})
	return token, nil
}

// noUserOr explains a token statement that touched no row: ErrNotFound
// when username has no account, else otherwise (the name's own reason).
func (a *Authenticator) noUserOr(ctx context.Context, username string, otherwise error) error {
	exists, err := a.store.userExists(ctx, username)
	switch {
	case err != nil:
		return err
	case !exists:
		return notFoundOr(ErrNotFound, "", username)
	}
	return otherwise
}

// Tokens returns username's app tokens, the oldest first; ErrNotFound for
// an unknown user.
func (a *Authenticator) Tokens(ctx context.Context, username string) ([]TokenInfo, error) {
	if err := CheckUsername(username); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotFound, nested(err))
	}
	rows, err := a.store.listTokens(ctx, username)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		// No tokens, or no user: only the second is an error.
		exists, err := a.store.userExists(ctx, username)
		switch {
		case err != nil:
			return nil, err
		case !exists:
			return nil, notFoundOr(ErrNotFound, "", username)
		}
	}
	list := make([]TokenInfo, len(rows))
	for i, r := range rows {
		list[i] = TokenInfo{Name: r.Name, Created: fromUnixSeconds(r.CreatedAt)}
		if r.LastUsed != nil {
			list[i].LastUsed = fromUnixSeconds(*r.LastUsed)
		}
	}
	return list, nil
}

// RevokeToken deletes username's app token called name: the next request
// with it is refused. It gives ErrTokenNotFound when the user has no token
// of that name, ErrNotFound for an unknown user (errors.Is(err,
// ErrNotFound) is true for both).
func (a *Authenticator) RevokeToken(ctx context.Context, username, name string) error {
	if err := CheckUsername(username); err != nil {
		return fmt.Errorf("%w: %w", ErrNotFound, nested(err))
	}
	deleted, err := a.store.deleteToken(ctx, username, name)
	if err != nil {
		return err
	}
	if !deleted {
		return a.noUserOr(ctx, username, fmt.Errorf("%w: %s has no token named %q", ErrTokenNotFound, username, name))
	}
	a.emit(ctx, Event{Type: EventTokenRevoked, Username: username, TokenName: name})
	return nil
}

// checkTokenName enforces the rules of a token's name (see
// ErrInvalidTokenName): a name is shown in lists and logs, where a control
// or format character could disguise it.
func checkTokenName(name string) error {
	n := utf8.RuneCountInString(name)
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalidTokenName)
	case len(name) > 4*maxTokenNameRunes || n > maxTokenNameRunes:
		return fmt.Errorf("%w: longer than %d characters", ErrInvalidTokenName, maxTokenNameRunes)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidTokenName)
	case strings.ContainsFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }):
		return fmt.Errorf("%w: only printable characters are allowed", ErrInvalidTokenName)
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("%w: a space at either end", ErrInvalidTokenName)
	}
	return nil
}

// newAppToken returns a new random app token.
func newAppToken() string {
	b := make([]byte, appTokenBytes)
	rand.Read(b) // never fails (crypto/rand, Go 1.24 on)
	return appTokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// isAppToken reports whether s has the shape newAppToken gives, so that a
// password costs no read and garbage no database work. A password of that
// shape is still checked as a password when no token matches.
func isAppToken(s string) bool {
	if len(s) != appTokenLen || !strings.HasPrefix(s, appTokenPrefix) {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s[len(appTokenPrefix):])
	return err == nil && len(b) == appTokenBytes
}

// tokenUser returns the user of a live app token: one indexed read, no
// hash. When want is not "", the token must be want's (user:token). It
// fails with errNoToken for anything else: not a token, unknown or
// revoked, of another user, of a deleted user or of one locked with no end;
// errTokenUserLocked (an errNoToken) when an administrator's Lock holds,
// with the username. A lockout by failed passwords does not stop a token.
// The use is recorded at most once a minute.
func (a *Authenticator) tokenUser(ctx context.Context, token, want string) (string, error) {
	if !isAppToken(token) {
		return "", errNoToken
	}
	h := tokenHash(token)
	row, err := a.store.token(ctx, h)
	if err != nil {
		return "", err
	}
	if want != "" && row.username != want {
		return "", errNoToken
	}
	now := a.now()
	if adminLocked(row, now) {
		return row.username, errTokenUserLocked
	}
	if !row.lastUsed.Valid || unixSeconds(now)-row.lastUsed.Float64 >= tokenTouchEvery.Seconds() {
		if err := a.store.touchToken(ctx, h, now, now.Add(-tokenTouchEvery)); err != nil {
			return "", err
		}
	}
	a.stats.tokenAccepted.Add(1)
	return row.username, nil
}

// adminLocked reports whether an administrator's Lock stops row's token at
// now. The users table stores a lock the same way whoever set it, so Lock
// also records the value it wrote in admin_locks (see model.AdminLock): the
// user's lock is the administrator's while lockout_until still holds
// exactly that value. Failed passwords cannot write over it while it holds
// (a locked account counts no attempts), and whatever ends it (Unlock,
// SetPassword, an import, the Python application, or time) writes another
// value or lets it pass, so a stale record never stops a token. Comparing
// the two floats exactly is sound: both were written from the same
// float64, in the shortest form that reads back the same, into columns of
// the same type.
func adminLocked(row tokenRow, now time.Time) bool {
	return row.adminLock.Valid && row.userLock.Valid &&
		row.adminLock.Float64 == row.userLock.Float64 && lockedAt(row.userLock.Float64, now)
}
