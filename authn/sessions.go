package authn

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/minimost/minimost/model"
	"github.com/uptrace/bun/dialect"
)

// errNoSession: no cookie, a malformed one, or an unknown or expired token.
var errNoSession = errors.New("authn: no valid session")

// sessionTokenBytes is the size of a session token: 256 random bits.
const sessionTokenBytes = 32

// newSessionToken returns a new random token as the cookie carries it.
func newSessionToken() string {
	b := make([]byte, sessionTokenBytes)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// tokenHash is what the sessions table stores of a token: its SHA-256, so
// that a copy of the database does not let anyone resume a session. A fast
// hash is enough: the token has 256 random bits, nothing to guess.
func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// validToken reports whether token has the shape newSessionToken gives, so
// that garbage cookies cost no database read.
func validToken(token string) bool {
	b, err := base64.RawURLEncoding.Strict().DecodeString(token)
	return err == nil && len(b) == sessionTokenBytes
}

// errSessionRefused: the account changed between the password check and
// the session (a new password, a lock, a deletion); no session was made.
var errSessionRefused = errors.New("authn: account changed before the session started")

// createSession stores a new session for username and returns its token,
// provided the user's row still has the hash just verified and is not
// locked: one statement, so a password change, a Lock or a deletion that
// lands after the password check leaves no live session behind. On
// PostgreSQL the row is read FOR SHARE, so that such a change in flight is
// waited for and then seen; SQLite runs one writer at a time.
func (a *Authenticator) createSession(ctx context.Context, username, verified string) (string, error) {
	token := newSessionToken()
	now := a.now()
	query := `INSERT INTO sessions (token_hash, username, created_at, last_seen, expires_at)
SELECT ?, username, ?, ?, ? FROM users
WHERE username = ? AND password_hash = ? AND (` + unlockedSQL + `)`
	if a.db.Dialect().Name() == dialect.PG {
		query += " FOR SHARE"
	}
	res, err := a.db.ExecContext(ctx, query,
		tokenHash(token), unixSeconds(now), unixSeconds(now), unixSeconds(now.Add(a.web.lifetime)),
		username, verified, unixSeconds(now), float64(minLockSeconds))
	if err := oneRow(res, err); errors.Is(err, ErrNotFound) {
		return "", errSessionRefused
	} else if err != nil {
		return "", fmt.Errorf("authn: creating a session: %w", err)
	}
	return token, nil
}

// sessionUser returns the user of a live session, or errNoSession. It
// records the use when the last one is older than a minute (or a tenth of
// the idle timeout), so that a busy session does not write on every
// request.
func (a *Authenticator) sessionUser(ctx context.Context, token string) (string, error) {
	if !validToken(token) {
		return "", errNoSession
	}
	h := tokenHash(token)
	var s model.Session
	err := a.hot.session.QueryRowContext(a.hot.context(ctx), h).Scan(&s.Username, &s.LastSeen, &s.ExpiresAt)
	if errors.Is(err, sql.ErrNoRows) {
		return "", errNoSession
	}
	if err != nil {
		return "", fmt.Errorf("authn: reading a session: %w", err)
	}
	now := unixSeconds(a.now())
	if s.ExpiresAt <= now || s.LastSeen+a.web.idle.Seconds() <= now {
		return "", errNoSession
	}
	if now-s.LastSeen >= min(60, a.web.idle.Seconds()/10) {
		_, err := a.db.NewUpdate().Model((*model.Session)(nil)).Set("last_seen = ?", now).
			Where("token_hash = ?", h).Exec(ctx)
		if err != nil {
			return "", fmt.Errorf("authn: recording a session's use: %w", err)
		}
	}
	return s.Username, nil
}

// endSession deletes a session and returns its user ("" if there was none).
func (a *Authenticator) endSession(ctx context.Context, token string) (string, error) {
	if !validToken(token) {
		return "", nil
	}
	var username string
	err := a.db.NewDelete().Model((*model.Session)(nil)).Where("token_hash = ?", tokenHash(token)).
		Returning("username").Scan(ctx, &username)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("authn: ending a session: %w", err)
	}
	return username, nil
}

// DeleteExpiredSessions deletes the sessions past their absolute or idle
// end and returns how many it deleted. The Authenticator calls it in the
// background every SessionCleanupInterval; an application that disables
// that may call it itself.
func (a *Authenticator) DeleteExpiredSessions(ctx context.Context) (int64, error) {
	if err := a.checkFile(); err != nil {
		return 0, err
	}
	now := unixSeconds(a.now())
	res, err := a.db.NewDelete().Model((*model.Session)(nil)).
		Where("expires_at <= ? OR last_seen <= ?", now, now-a.web.idle.Seconds()).Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("authn: deleting expired sessions: %w", err)
	}
	return res.RowsAffected()
}

// cleanSessions is the background cleanup of expired sessions.
func (a *Authenticator) cleanSessions(ctx context.Context) {
	if _, err := a.DeleteExpiredSessions(ctx); err != nil && ctx.Err() == nil {
		a.logger.ErrorContext(ctx, "authn: session cleanup failed", "error", err)
	}
}

// sessionCookie returns the cookie that carries token; an empty token
// clears it.
func (a *Authenticator) sessionCookie(token string) *http.Cookie {
	c := &http.Cookie{
		Name:     a.web.cookieName,
		Value:    token,
		Path:     "/",
		HttpOnly: true,
		Secure:   a.web.secure,
		SameSite: http.SameSiteLaxMode,
	}
	if token == "" {
		c.MaxAge = -1
	}
	return c
}

// sessionToken returns the token of the request's session cookie, or ""
// when there is none or more than one. Two cookies of one name mean that one
// was set from elsewhere (a sibling subdomain tossing its own, when the name
// lacks the __Host- prefix), and nothing says which is ours: both are
// refused.
func (a *Authenticator) sessionToken(r *http.Request) string {
	cookies := r.CookiesNamed(a.web.cookieName)
	if len(cookies) != 1 {
		return ""
	}
	return cookies[0].Value
}

// endSessions ends the session of every cookie of the session's name that
// the request carries, one or several.
func (a *Authenticator) endSessions(ctx context.Context, r *http.Request) error {
	for _, c := range r.CookiesNamed(a.web.cookieName) {
		if _, err := a.endSession(ctx, c.Value); err != nil {
			return err
		}
	}
	return nil
}

// clearTossedCookies expires, when the request carried more than one cookie
// of the session's name, the ones that another host may have set: a cookie
// with a Domain attribute is replaced only by one with the same Domain, so
// one is sent for each parent domain of the request's host. The caller
// clears or sets the host's own cookie. A __Host- cookie cannot have a
// Domain, so it never needs this.
func (a *Authenticator) clearTossedCookies(w http.ResponseWriter, r *http.Request) {
	if len(r.CookiesNamed(a.web.cookieName)) < 2 || strings.HasPrefix(a.web.cookieName, "__Host-") {
		return
	}
	for _, domain := range parentDomains(r.Host) {
		c := a.sessionCookie("")
		c.Domain = domain
		http.SetCookie(w, c)
	}
}

// parentDomains returns host's domain and its parents with at least two
// labels ("a.b.example.com" gives a.b.example.com, b.example.com and
// example.com), or nothing for an IP address or a one-label name.
func parentDomains(host string) []string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	var domains []string
	for strings.Count(host, ".") >= 1 && len(domains) < 8 {
		domains = append(domains, host)
		_, host, _ = strings.Cut(host, ".")
	}
	return domains
}
