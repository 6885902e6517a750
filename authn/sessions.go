package authn

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"strings"
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
// locked (errSessionRefused otherwise): see store.createSession.
func (a *Authenticator) createSession(ctx context.Context, username, verified string) (string, error) {
	token := newSessionToken()
	if err := a.store.createSession(ctx, tokenHash(token), username, verified, a.now(), a.sessionLifetime); err != nil {
		return "", err
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
	s, err := a.store.session(ctx, h)
	if err != nil {
		return "", err
	}
	t := a.now()
	now := unixSeconds(t)
	if s.ExpiresAt <= now || s.LastSeen+a.sessionIdle.Seconds() <= now {
		return "", errNoSession
	}
	if now-s.LastSeen >= min(60, a.sessionIdle.Seconds()/10) {
		if err := a.store.touchSession(ctx, h, t); err != nil {
			return "", err
		}
	}
	return s.Username, nil
}

// endSession deletes a session and returns its user ("" if there was none).
func (a *Authenticator) endSession(ctx context.Context, token string) (string, error) {
	if !validToken(token) {
		return "", nil
	}
	return a.store.endSession(ctx, tokenHash(token))
}

// DeleteExpiredSessions deletes the sessions past their absolute or idle
// end and returns how many it deleted. The Authenticator calls it in the
// background every SessionCleanupInterval; an application that disables
// that may call it itself.
func (a *Authenticator) DeleteExpiredSessions(ctx context.Context) (int64, error) {
	return a.store.deleteExpiredSessions(ctx, a.now(), a.sessionIdle)
}

// cleanSessions is the background cleanup of expired sessions.
func (a *Authenticator) cleanSessions(ctx context.Context) {
	if _, err := a.DeleteExpiredSessions(ctx); err != nil && ctx.Err() == nil {
		a.logger.ErrorContext(ctx, "authn: session cleanup failed", "error", err)
	}
}

// sessionCookie returns the cookie that carries token; an empty token
// clears it.
func (h *handlers) sessionCookie(token string) *http.Cookie {
	c := &http.Cookie{
		Name:     h.cookieName,
		Value:    token,
		Path:     "/",
		HttpOnly: true,
		Secure:   h.secure,
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
func (h *handlers) sessionToken(r *http.Request) string {
	cookies := r.CookiesNamed(h.cookieName)
	if len(cookies) != 1 {
		return ""
	}
	return cookies[0].Value
}

// endSessions ends the session of every cookie of the session's name that
// the request carries, one or several, and returns the users of the
// sessions it ended.
func (h *handlers) endSessions(ctx context.Context, r *http.Request) ([]string, error) {
	var users []string
	for _, c := range r.CookiesNamed(h.cookieName) {
		username, err := h.a.endSession(ctx, c.Value)
		if err != nil {
			return users, err
		}
		if username != "" {
			users = append(users, username)
		}
	}
	return users, nil
}

// clearTossedCookies expires, when the request carried more than one cookie
// of the session's name, the ones that another host may have set: a cookie
// with a Domain attribute is replaced only by one with the same Domain, so
// one is sent for each parent domain of the request's host. The caller
// clears or sets the host's own cookie. A __Host- cookie cannot have a
// Domain, so it never needs this.
func (h *handlers) clearTossedCookies(w http.ResponseWriter, r *http.Request) {
	if len(r.CookiesNamed(h.cookieName)) < 2 || strings.HasPrefix(h.cookieName, "__Host-") {
		return
	}
	for _, domain := range parentDomains(r.Host) {
		c := h.sessionCookie("")
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
