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
	"net/http"

	"github.com/minimost/minimost/model"
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

// createSession stores a new session for username and returns its token.
func (a *Authenticator) createSession(ctx context.Context, username string) (string, error) {
	token := newSessionToken()
	now := a.now()
	s := &model.Session{
		TokenHash: tokenHash(token),
		Username:  username,
		CreatedAt: unixSeconds(now),
		LastSeen:  unixSeconds(now),
		ExpiresAt: unixSeconds(now.Add(a.web.lifetime)),
	}
	if _, err := a.db.NewInsert().Model(s).Exec(ctx); err != nil {
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

// sessionToken returns the token of the request's session cookie, or "".
func (a *Authenticator) sessionToken(r *http.Request) string {
	c, err := r.Cookie(a.web.cookieName)
	if err != nil {
		return ""
	}
	return c.Value
}
