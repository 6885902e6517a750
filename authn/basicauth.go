package authn

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// maxAuthorizationBytes bounds the Authorization header that is decoded:
// enough for a 32-byte username and a password of 1,024 bytes.
const maxAuthorizationBytes = 2048

// BasicAuth returns a handler that runs next for requests with valid HTTP
// Basic credentials (RFC 7617), with the username in the context (see
// Username). Any other request gets 401 with a challenge, 429 when its
// client address is over its failure budget, or 503 when the credentials
// could not be checked; next never runs then.
//
// An app token (see CreateToken) is accepted in place of the password,
// "user:token", and alone as "Authorization: Bearer TOKEN". A token costs
// one indexed read and no hash; it works during a lockout caused by failed
// passwords, and stops on the very next request after RevokeToken, Delete
// or Lock. A wrong token is a failure like a wrong password, with the same
// answer: with a username, it is checked as that user's password (so it
// counts toward the user's lockout, and a password that merely looks like a
// token still works); as a Bearer token, it names no account, and it is
// refused after the time a wrong password takes. Either way it spends the
// client's failure budget. Requests let through by a token are counted in
// Stats.TokenAccepted, not reported as events.
//
// A credential verified once is remembered, as an HMAC under a key of this
// process, for BasicAuthCacheTTL: the next requests with it cost one indexed
// read of the user's row and no hash, or no read at all while nothing was
// committed since the last (see Reads from memory in the package
// documentation). That read still sees a lock, a new password or a
// deletion, so they take effect on the very next request.
// Only full verifications are reported as EventLoginSucceeded.
func (a *Authenticator) BasicAuth(next http.Handler) http.Handler { return a.handlers.basicAuth(next) }

// basicAuth is BasicAuth.
func (h *handlers) basicAuth(next http.Handler) http.Handler {
	return h.guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if username, ok := h.basicUser(w, r); ok {
			next.ServeHTTP(w, withUsername(r, username))
		}
	}))
}

// basicUser is the check of BasicAuth, which ForwardAuthHandler shares:
// inside guard, it returns the user whose Basic credentials (a password,
// or an app token in its place) or Bearer app token r carries, or ok false
// once it has answered the request itself (401 with the challenge, 429 or
// 503). It spends and reserves the client's failure budget, uses and fills
// the credential cache and reports events as BasicAuth documents.
func (h *handlers) basicUser(w http.ResponseWriter, r *http.Request) (string, bool) {
	bearer, isBearer := parseBearer(r.Header)
	username, pw, ok := parseBasicAuth(r.Header)
	if h.overBudget(w, r, username) {
		tooManyFailures(w, r)
		return "", false
	}
	if isBearer {
		return h.bearerUser(w, r, bearer)
	}
	if !ok {
		if r.Header.Get("Authorization") != "" { // sent, but malformed: a failure
			if _, err := h.reserve(w, r, h.failures, username); err != nil {
				h.refuseBasic(w, r, err)
				return "", false
			}
			h.a.emit(r.Context(), Event{Type: EventLoginFailed, Reason: ReasonMalformedHeader})
		}
		h.challenge(w)
		return "", false
	}
	if isAppToken(pw) {
		switch user, err := h.a.tokenUser(r.Context(), pw, username); {
		case err == nil:
			return user, true
		case !errors.Is(err, errNoToken):
			h.unavailable(w, r, err)
			return "", false
		}
		// Not a live token of username: checked as a password below,
		// which counts it as a failed attempt like any wrong one.
	}
	err := h.cachedLogin(r.Context(), username, pw)
	if errors.Is(err, errNotCached) {
		// A password will be checked: its claim takes a token of the
		// client's budget first, so that the client's requests in
		// flight cannot overrun it.
		ctx, t, ok := h.attempt(w, r, username)
		if !ok {
			tooManyFailures(w, r)
			return "", false
		}
		err = h.basicLogin(ctx, username, pw)
		if h.settle(w, r, t, username, err); errors.Is(err, errOverBudget) {
			tooManyFailures(w, r)
			return "", false
		}
	}
	switch {
	case err == nil:
		return username, true
	case isClientFailure(err):
		h.challenge(w)
	default:
		h.unavailable(w, r, err)
	}
	return "", false
}

// bearerUser returns the user of a request whose Bearer credential is a
// live app token, or ok false once it has answered the request. basicUser
// has checked the client's budget; a good token spends none, also while it
// is checked, so that an API client's parallel requests are never refused
// for the others in flight. A failure spends the budget after the read
// (guessing 256 bits gains nothing from the few reads in flight past it)
// and is padded to the time of a wrong password: a token names no account,
// so nothing is claimed, and all a guess can learn is no.
func (h *handlers) bearerUser(w http.ResponseWriter, r *http.Request, token string) (string, bool) {
	ctx := r.Context()
	start := time.Now()
	username, err := h.a.tokenUser(ctx, token, "")
	switch {
	case err == nil:
		return username, true
	case errors.Is(err, errNoToken):
		if _, err := h.reserve(w, r, h.failures, ""); err != nil {
			h.refuseBasic(w, r, err)
			return "", false
		}
		reason := ReasonUnknownToken
		switch {
		case !isAppToken(token):
			reason = ReasonMalformedHeader
		case errors.Is(err, errTokenUserLocked):
			reason = ReasonLocked
		}
		h.a.emit(ctx, Event{Type: EventLoginFailed, Username: username, Reason: reason})
		h.a.failureTiming.pad(ctx, start)
		h.challenge(w)
	default:
		h.unavailable(w, r, err)
	}
	return "", false
}

// parseBearer reads an Authorization header of the scheme "Bearer" (RFC
// 6750), in any case, one or more spaces, and one token68: ok is true for
// exactly one such header, not over-long. What the token is, bearerUser
// decides.
func parseBearer(h http.Header) (token string, ok bool) {
	values := h.Values("Authorization")
	if len(values) != 1 || len(values[0]) > maxAuthorizationBytes {
		return "", false
	}
	scheme, token, found := strings.Cut(values[0], " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.Trim(token, " ")
	return token, token != "" && !hasControl(token) && !strings.Contains(token, " ")
}

// challenge answers 401 with the Basic challenge. Every failure, whatever
// its cause, gets exactly these bytes.
func (h *handlers) challenge(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", h.wwwAuthenticate)
	http.Error(w, "unauthorized", http.StatusUnauthorized)
}

// basicChallenge is the WWW-Authenticate value for realm, quoted as RFC 7235
// quotes a string.
func basicChallenge(realm string) string {
	realm = strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(realm)
	return `Basic realm="` + realm + `", charset="UTF-8"`
}

// errNotCached: the credential has to be checked in full.
var errNotCached = errors.New("authn: credential not cached")

// cachedLogin checks a Basic credential verified before against the user's
// current row: one read, no hash. It returns errNotCached when the
// credential is not remembered, or is no longer good (changed, locked or
// deleted), and then it has to go through basicLogin.
func (h *handlers) cachedLogin(ctx context.Context, username, pw string) error {
	c := h.cache
	if c == nil {
		return errNotCached
	}
	verified, ok := c.lookup(username, pw)
	if !ok {
		h.a.stats.basicCacheMisses.Add(1)
		return errNotCached
	}
	row, err := h.a.store.userHash(ctx, username)
	locked := row.until.Valid && lockedAt(row.until.Float64, h.a.now())
	switch {
	case err == nil && !locked && h.a.factorsInUse(row.factors) == 0 && verified == row.stored:
		h.a.stats.basicCacheHits.Add(1)
		return nil
	case err != nil && !errors.Is(err, sql.ErrNoRows):
		return err
	}
	c.forget(username, pw) // changed, locked, deleted or given a second factor: check in full
	h.a.stats.basicCacheMisses.Add(1)
	return errNotCached
}

// basicLogin authenticates a Basic credential in full, through
// authenticate (claim, verify, reset), and remembers it if it is good.
func (h *handlers) basicLogin(ctx context.Context, username, pw string) error {
	p, err := h.a.authenticate(ctx, username, pw, h.newHashWait(), passwordLogin)
	if err != nil {
		return err
	}
	if err := h.a.passwordAlone(ctx, p); err != nil {
		return err // an account with a second factor: a token, not a password
	}
	if h.cache != nil {
		h.cache.add(username, pw, p.hash)
	}
	h.a.emit(ctx, Event{Type: EventLoginSucceeded, Username: username})
	return nil
}

// parseBasicAuth reads the Authorization header as RFC 7617 says: the
// scheme "Basic" in any case, one or more spaces (RFC 7235's 1*SP), one
// token68 of standard base64, decoding to valid UTF-8 "user-id:password"
// split at the first colon, neither part with control characters. Trailing
// spaces are ignored (net/http strips them before a handler sees the
// header). Repeated headers, over-long values and everything else, a tab
// or a byte outside the base64 alphabet included, are refused.
func parseBasicAuth(h http.Header) (username, pw string, ok bool) {
	values := h.Values("Authorization")
	if len(values) != 1 || len(values[0]) > maxAuthorizationBytes {
		return "", "", false
	}
	scheme, token, found := strings.Cut(values[0], " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	token = strings.Trim(token, " ")
	if !isBase64Token(token) {
		return "", "", false
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(token)
	if err != nil || !utf8.Valid(raw) {
		return "", "", false
	}
	username, pw, found = strings.Cut(string(raw), ":")
	if !found || hasControl(username) || hasControl(pw) {
		return "", "", false
	}
	return username, pw, true
}

// isBase64Token reports whether s is made of the standard base64 alphabet
// followed by at most two "=": the subset of RFC 7235's token68 that Basic
// uses. encoding/base64 would skip CR and LF anywhere in its input, so the
// decoder alone accepts more than a token68.
func isBase64Token(s string) bool {
	data := strings.TrimRight(s, "=")
	if len(s)-len(data) > 2 {
		return false
	}
	for i := 0; i < len(data); i++ {
		c := data[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// hasControl reports whether s holds a C0 control character or DEL.
func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// credentialCache remembers verified Basic credentials: the key is
// HMAC-SHA256(process key, username, password), the value the stored hash
// that was verified, and an expiry. The key is random per
// process, so the entries say nothing about the passwords; a request hits
// only when the user's stored hash is still the one verified, so a new
// password misses.
type credentialCache struct {
	ttl  time.Duration
	max  int
	now  func() time.Time
	macs sync.Pool // of *macState: keying an HMAC costs two blocks

	mu      sync.Mutex
	entries map[[sha256.Size]byte]cacheEntry
}

type cacheEntry struct {
	stored  string // the hash that was verified
	expires time.Time
}

// newCredentialCache returns nil, a disabled cache, when ttl is 0.
func newCredentialCache(size int, ttl time.Duration, now func() time.Time) *credentialCache {
	if ttl <= 0 {
		return nil
	}
	key := make([]byte, 32)
	rand.Read(key)
	c := &credentialCache{ttl: ttl, max: size, now: now, entries: make(map[[sha256.Size]byte]cacheEntry)}
	c.macs.New = func() any { return &macState{mac: hmac.New(sha256.New, key)} }
	return c
}

// macState is a keyed HMAC-SHA256 and room for its input and output, so that
// a lookup allocates nothing.
type macState struct {
	mac hash.Hash
	in  []byte
	out [sha256.Size]byte
}

func (c *credentialCache) sum(username, pw string) [sha256.Size]byte {
	st := c.macs.Get().(*macState)
	defer c.macs.Put(st)
	// Length prefixes keep ("ab","c") and ("a","bc") apart.
	in := binary.BigEndian.AppendUint64(st.in[:0], uint64(len(username)))
	in = append(in, username...)
	in = binary.BigEndian.AppendUint64(in, uint64(len(pw)))
	in = append(in, pw...)
	st.mac.Reset()
	st.mac.Write(in)
	clear(in) // the password stays no longer than the request
	st.in = in
	st.mac.Sum(st.out[:0])
	return st.out
}

// lookup returns the hash a credential was verified against.
func (c *credentialCache) lookup(username, pw string) (string, bool) {
	k := c.sum(username, pw)
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if ok && !c.now().Before(e.expires) {
		delete(c.entries, k)
		return "", false
	}
	return e.stored, ok
}

func (c *credentialCache) forget(username, pw string) {
	k := c.sum(username, pw)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, k)
}

func (c *credentialCache) add(username, pw, stored string) {
	k := c.sum(username, pw)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		c.evict()
	}
	c.entries[k] = cacheEntry{stored: stored, expires: c.now().Add(c.ttl)}
}

// evict drops the expired entries, and if the cache is still full, an
// eighth of it in random map order: a miss only costs a hash.
func (c *credentialCache) evict() {
	now := c.now()
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	for k := range c.entries {
		if len(c.entries) < c.max-c.max/8 {
			break
		}
		delete(c.entries, k)
	}
}
