package authn

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"net/http"
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/minimost/minimost/model"
)

// SessionInfo is what a user may see of one of their sessions: when it
// started, was last used and ends, and which device it is. It never holds
// the token, nor its stored hash.
type SessionInfo struct {
	// ID names the session to its user, to end it with SessionsHandler.
	// It is the first 128 bits, in hex, of a SHA-256 of the stored hash of
	// the session's token: stable for the session's life and the same on
	// every instance sharing the database, but no credential, and no way
	// back to the token or its stored hash (which is itself no credential:
	// the cookie holds the token).
	ID string `json:"id"`
	// Created is when the session started: the login.
	Created time.Time `json:"created"`
	// LastSeen is when the session was last used, to the minute (a use is
	// recorded at most once a minute, or once a tenth of the idle timeout).
	LastSeen time.Time `json:"last_seen"`
	// Expires is when the session ends if it is not used again: its
	// absolute end (HTTPConfig.SessionLifetime after the login, RememberFor
	// for a remembered session) or its idle end (HTTPConfig.SessionIdleTimeout
	// after LastSeen, RememberIdleTimeout for a remembered session),
	// whichever comes first.
	Expires time.Time `json:"expires"`
	// Current is set by SessionsHandler on the session of the request
	// itself; Sessions leaves it false.
	Current bool `json:"current"`
	// ClientNetwork is the network the login came from, as the handlers
	// resolved the client's address (see HTTPConfig.TrustedProxies), cut
	// to its /24 for IPv4 and its /48 for IPv6 ("203.0.113.0/24"): enough
	// for a user to tell home from elsewhere, not the address itself. ""
	// when unknown (a session made before this was stored).
	ClientNetwork string `json:"client_network,omitempty"`
	// UserAgent is the User-Agent the login came with, cut to
	// maxUserAgentBytes (256) bytes, without control, format (such as
	// bidirectional overrides) or other non-printing characters and
	// invalid UTF-8. It is what the client said: anyone may send
	// anything. "" when unknown.
	UserAgent string `json:"user_agent,omitempty"`
	// Device is a readable name of the client, read from UserAgent:
	// "Firefox on Linux", "Safari on iPhone", "Chrome on Android", "curl".
	// It names the common browsers (Chrome, Edge, Firefox, Safari, Opera,
	// Samsung Internet, ...) and systems (Windows, macOS, Linux, Android,
	// iPhone, iPad, ChromeOS, ...); a client that is none of them is named
	// by the first product of its User-Agent ("curl", "python-requests"),
	// when that is a plain name. It is at most 64 bytes of letters,
	// digits, spaces and "-_.+", "" when nothing could be read, and, like
	// UserAgent, only what the client claimed to be.
	Device string `json:"device,omitempty"`
}

// maxUserAgentBytes bounds the User-Agent a session stores.
const maxUserAgentBytes = 256

// Sessions returns the live sessions of username (past neither their
// absolute nor their idle end), the last used first, or ErrNotFound when
// there is no such user. An application may show them to the user; an
// administrator sees them with "authctl sessions".
func (a *Authenticator) Sessions(ctx context.Context, username string) ([]SessionInfo, error) {
	if _, err := a.store.user(ctx, username); err != nil {
		return nil, err
	}
	return a.liveSessions(ctx, username, "")
}

// liveSessions returns the live sessions of username, the last used first,
// marking the one of the token hash current.
func (a *Authenticator) liveSessions(ctx context.Context, username, current string) ([]SessionInfo, error) {
	rows, err := a.store.listSessions(ctx, username, a.now(), a.idleTimeouts())
	if err != nil {
		return nil, err
	}
	return a.sessionInfos(rows, current), nil
}

// EndSessions ends all of username's sessions and returns how many it
// ended: the next request with any of them is refused. It fails with
// ErrNotFound when there is no such user and no session under that name.
// Each session ended is reported as an EventLogout with ReasonEndSessions.
// A login that completes meanwhile keeps its new session.
func (a *Authenticator) EndSessions(ctx context.Context, username string) (int, error) {
	n, err := a.store.endSessionsOf(ctx, username, "")
	if err != nil {
		return 0, err
	}
	if n == 0 {
		if _, err := a.store.user(ctx, username); err != nil {
			return 0, err
		}
	}
	a.emitEnded(ctx, username, ReasonEndSessions, n)
	return int(n), nil
}

// sessionInfos turns stored sessions into what their user sees, marking
// the one of the token hash current.
func (a *Authenticator) sessionInfos(rows []model.Session, current string) []SessionInfo {
	out := make([]SessionInfo, len(rows))
	for i, s := range rows {
		lastSeen := fromUnixSeconds(s.LastSeen)
		ua := cleanUserAgent(s.UserAgent)
		out[i] = SessionInfo{
			ID:            sessionID(s.TokenHash),
			Created:       fromUnixSeconds(s.CreatedAt),
			LastSeen:      lastSeen,
			Expires:       a.sessionEnd(s),
			Current:       current != "" && s.TokenHash == current,
			ClientNetwork: storedNetwork(s.ClientNet),
			UserAgent:     ua,
			Device:        deviceName(ua),
		}
	}
	return out
}

// sessionEnd is when the stored session s ends if it is not used again:
// its absolute end, or its idle end (by its own idle timeout, see idleOf),
// whichever comes first.
func (a *Authenticator) sessionEnd(s model.Session) time.Time {
	end := fromUnixSeconds(s.ExpiresAt)
	if idle := a.idleOf(s.Remembered); idle > 0 {
		end = minTime(end, fromUnixSeconds(s.LastSeen).Add(idle))
	}
	return end
}

// endSessionByID ends the live session of username whose ID is id, and
// reports whether there was one and whether it was the one of the token
// hash current. Another user's session is not found, as an unknown one.
func (a *Authenticator) endSessionByID(ctx context.Context, username, id, current string) (found, wasCurrent bool, err error) {
	rows, err := a.store.listSessions(ctx, username, a.now(), a.idleTimeouts())
	if err != nil {
		return false, false, err
	}
	for _, s := range rows {
		if sessionID(s.TokenHash) != id {
			continue
		}
		found, err := a.store.endSessionOf(ctx, username, s.TokenHash)
		if err != nil || !found {
			return false, false, err // !found: ended meanwhile
		}
		a.emitEnded(ctx, username, ReasonEndedByUser, 1)
		return true, s.TokenHash == current, nil
	}
	return false, false, nil
}

// endOtherSessions ends the sessions of username but the one of the token
// hash current, and returns how many it ended.
func (a *Authenticator) endOtherSessions(ctx context.Context, username, current string) (int64, error) {
	n, err := a.store.endSessionsOf(ctx, username, current)
	if err != nil {
		return 0, err
	}
	a.emitEnded(ctx, username, ReasonEndedByUser, n)
	return n, nil
}

// emitEnded reports n sessions of username ended, one EventLogout each,
// and counts them in Stats.SessionsEnded.
func (a *Authenticator) emitEnded(ctx context.Context, username string, reason Reason, n int64) {
	a.stats.sessionsEnded.Add(n)
	for range n {
		a.emit(ctx, Event{Type: EventLogout, Username: username, Reason: reason})
	}
}

// sessionID is the ID of the session whose token has the stored hash
// tokenHash (see SessionInfo.ID). The prefix keeps it apart from any other
// SHA-256 of the same text.
func sessionID(tokenHash string) string {
	sum := sha256.Sum256([]byte("authn session id\x00" + tokenHash))
	return hex.EncodeToString(sum[:16])
}

// validSessionID reports whether id has the shape sessionID gives: 32
// lower-case hex digits.
func validSessionID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := range len(id) {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// sessionClient is what a new session stores of the client that made it
// (see SessionInfo.ClientNetwork and SessionInfo.UserAgent).
type sessionClient struct{ net, agent string }

// newSessionClient returns what a session made by r stores of its client.
func newSessionClient(r *http.Request) sessionClient {
	return sessionClient{net: clientNetwork(clientAddr(r.Context())), agent: cleanUserAgent(r.Header.Get("User-Agent"))}
}

// clientNetwork returns the network of ip as a session stores it: its /24
// for IPv4 (an IPv4-mapped IPv6 address too), its /48 for IPv6, "" for no
// address.
func clientNetwork(ip netip.Addr) string {
	if !ip.IsValid() {
		return ""
	}
	ip = ip.Unmap()
	bits := 48
	if ip.Is4() {
		bits = 24
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return ""
	}
	return p.String()
}

// storedNetwork returns the client_net column of a session as SessionInfo
// shows it: a network in its canonical form, or "" for anything else (a row
// written behind the library's back may hold any text). The User-Agent is
// cleaned again on the way out for the same reason.
func storedNetwork(s string) string {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return ""
	}
	return p.String()
}

// cleanUserAgent returns a User-Agent as a session stores it: only
// graphic characters (letters, marks, numbers, punctuation, symbols and
// spaces; no control or format character, no invalid UTF-8), trimmed, at
// most maxUserAgentBytes bytes, cut between characters.
func cleanUserAgent(ua string) string {
	var b strings.Builder
	for _, r := range ua {
		if r == utf8.RuneError || !unicode.IsGraphic(r) {
			continue // RuneError: invalid UTF-8, or a U+FFFD sent as such
		}
		if b.Len()+utf8.RuneLen(r) > maxUserAgentBytes {
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

// fromUnixSeconds reads a stored time (see unixSeconds), to the
// microsecond.
func fromUnixSeconds(s float64) time.Time {
	return time.UnixMicro(int64(math.Round(s * 1e6))).UTC() // round: most decimals are not exact in binary
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
