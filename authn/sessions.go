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
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/minimost/minimost/middleware"
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
// locked (errSessionRefused otherwise): see store.createSession. A
// remembered session lasts RememberFor instead of SessionLifetime. The
// sessions it ends for MaxSessionsPerUser are reported as logouts.
func (a *Authenticator) createSession(ctx context.Context, username, verified string, remember bool, client sessionClient) (string, error) {
	token := newSessionToken()
	ended, err := a.store.createSession(ctx, tokenHash(token), username, verified, a.now(), a.lifetimeOf(remember), remember, client, a.maxSessions, a.idleTimeouts())
	if err != nil {
		return "", err
	}
	a.stats.sessionsStarted.Add(1)
	a.emitEnded(ctx, username, ReasonSessionLimit, ended)
	return token, nil
}

// lifetimeOf is the absolute lifetime of a new session: RememberFor for a
// remembered one, SessionLifetime otherwise.
func (a *Authenticator) lifetimeOf(remembered bool) time.Duration {
	if remembered {
		return a.rememberFor
	}
	return a.sessionLifetime
}

// idleOf is the idle timeout of a session: RememberIdleTimeout's for a
// remembered one, SessionIdleTimeout otherwise; 0 means none.
func (a *Authenticator) idleOf(remembered bool) time.Duration {
	if remembered {
		return a.rememberIdle
	}
	return a.sessionIdle
}

// idleTimeouts are the idle timeouts of sessions, as the store reads them.
func (a *Authenticator) idleTimeouts() idleTimeouts {
	return idleTimeouts{normal: a.sessionIdle, remembered: a.rememberIdle}
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
	idle := a.idleOf(s.Remembered)
	if s.ExpiresAt <= now || idle > 0 && s.LastSeen+idle.Seconds() <= now {
		return "", errNoSession
	}
	touchAfter := 60.0
	if idle > 0 {
		touchAfter = min(touchAfter, idle.Seconds()/10)
	}
	if now-s.LastSeen >= touchAfter {
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
	username, err := a.store.endSession(ctx, tokenHash(token))
	if username != "" {
		a.stats.sessionsEnded.Add(1)
	}
	return username, err
}

// DeleteExpiredSessions deletes the sessions past their absolute or idle
// end (a remembered session's own: see HTTPConfig.RememberFor) and returns
// how many it deleted. The Authenticator calls it in the background every
// SessionCleanupInterval; an application that disables that may call it
// itself.
func (a *Authenticator) DeleteExpiredSessions(ctx context.Context) (int64, error) {
	n, err := a.store.deleteExpiredSessions(ctx, a.now(), a.sessionIdle, a.rememberIdle)
	a.stats.sessionsExpired.Add(n)
	return n, err
}

// cleanSessions is the background cleanup of expired sessions.
// The pending logins that expired go with them.
func (a *Authenticator) cleanSessions(ctx context.Context) {
	if _, err := a.DeleteExpiredSessions(ctx); err != nil && ctx.Err() == nil {
		a.logger.ErrorContext(ctx, "authn: session cleanup failed", "error", err)
	}
	if _, err := a.store.deleteExpiredPending(ctx, a.now()); err != nil && ctx.Err() == nil {
		a.logger.ErrorContext(ctx, "authn: pending login cleanup failed", "error", err)
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

// keepCookie makes c, the cookie of a remembered session, last until the
// session's end: without Max-Age or Expires, a cookie ends with the
// browser session, which remember-me exists to outlive. Expires is for the
// clients that ignore Max-Age.
func (h *handlers) keepCookie(c *http.Cookie, end time.Time) {
	c.MaxAge = max(1, int(end.Sub(h.a.now()).Seconds()))
	c.Expires = end.UTC()
}

// warnInsecureCookie logs, once per Authenticator, that the Secure session
// cookie just set for r will not come back: the request came over plain
// HTTP, no trusted proxy says the browser used HTTPS, and the host is not a
// loopback name or address (where browsers keep Secure cookies over HTTP).
// The browser drops such a cookie (Secure, and the __Host- prefix, need
// HTTPS), the login succeeds on the server and the user sees the form
// again, with nothing in the log to say why. Once only: any client can send
// such a request, and must not be able to flood the log with it.
func (h *handlers) warnInsecureCookie(r *http.Request) {
	if !h.secure || r.TLS != nil || h.insecureCookieWarned.Load() || isLoopbackHost(r.Host) || h.proxySaysHTTPS(r) {
		return
	}
	if h.insecureCookieWarned.Swap(true) {
		return // another request was first
	}
	h.a.logger.WarnContext(r.Context(), "authn: Secure session cookie set over plain HTTP; browsers drop it and the login loops",
		"host", truncate(r.Host, 256), "cookie", h.cookieName,
		"fix", "serve HTTPS; or, behind a proxy that terminates TLS, list it in HTTPConfig.TrustedProxies so that its X-Forwarded-Proto: https is believed; or, for local development only, set HTTPConfig.InsecureCookies")
}

// isLoopbackHost reports whether a Host header names this machine:
// "localhost", a name under .localhost, an address in 127.0.0.0/8 or ::1,
// with or without a port. Browsers treat such origins as secure contexts
// and keep Secure cookies over plain HTTP.
func isLoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	// Not ::ffff:127.0.0.1 (netip counts it as loopback), which browsers need
	// not treat as a secure context: better a WARN too many than one missed.
	return err == nil && ip.IsLoopback() && !ip.Is4In6()
}

// proxySaysHTTPS reports whether the request came through a trusted proxy
// (HTTPConfig.TrustedProxies: its peer is one, as middleware.ClientIP
// decides) that says the browser's request was HTTPS, in the last entry of
// X-Forwarded-Proto or of Forwarded (RFC 7239) proto: the one the nearest
// proxy set or appended. A client that is not a trusted proxy is not
// believed whatever it sends.
func (h *handlers) proxySaysHTTPS(r *http.Request) bool {
	if !h.fromTrustedProxy(r) {
		return false
	}
	if proto := lastListEntry(r.Header.Values("X-Forwarded-Proto")); strings.EqualFold(proto, "https") {
		return true
	}
	for pair := range strings.SplitSeq(lastListEntry(r.Header.Values("Forwarded")), ";") {
		key, value, _ := strings.Cut(strings.TrimSpace(pair), "=")
		if strings.EqualFold(strings.TrimSpace(key), "proto") && strings.EqualFold(strings.Trim(strings.TrimSpace(value), `"`), "https") {
			return true
		}
	}
	return false
}

// fromTrustedProxy reports whether the connection's peer is one of
// HTTPConfig.TrustedProxies: only then are the headers a proxy sets about
// the browser's request (X-Forwarded-Proto, X-Forwarded-Uri, ...) believed.
func (h *handlers) fromTrustedProxy(r *http.Request) bool {
	// ResolveClientIP with no trusted proxies is the connection's peer.
	peer := middleware.ResolveClientIP(r, nil)
	return peer.IsValid() && slices.ContainsFunc(h.trusted, func(p netip.Prefix) bool { return p.Contains(peer) })
}

// lastListEntry returns the last element of a comma-separated header list
// that may span several lines, trimmed. A comma inside a quoted string (as
// Forwarded allows) does not split it.
func lastListEntry(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	line := lines[len(lines)-1]
	quoted, start := false, 0
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == '\\' && quoted:
			i++ // an escaped character
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			start = i + 1
		}
	}
	return strings.TrimSpace(line[start:])
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
