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
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/minimost/minimost/model"
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
// A credential verified once is remembered, as an HMAC under a key of this
// process, for BasicAuthCacheTTL: the next requests with it cost one indexed
// read of the user's row and no hash. That read still sees a lock, a new
// password or a deletion, so they take effect on the very next request.
// Only full verifications are reported as EventLoginSucceeded.
func (a *Authenticator) BasicAuth(next http.Handler) http.Handler {
	return a.guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		username, pw, ok := parseBasicAuth(r.Header)
		if a.overBudget(w, r, username) {
			writeError(w, r, http.StatusTooManyRequests, "too many failed attempts, try again later")
			return
		}
		if !ok {
			if r.Header.Get("Authorization") != "" { // sent, but malformed
				a.failed(r)
				a.emit(r.Context(), Event{Type: EventLoginFailed, Reason: ReasonMalformedHeader})
			}
			a.challenge(w)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), a.web.hashWait)
		defer cancel()
		switch err := a.basicLogin(ctx, username, pw); {
		case err == nil:
			next.ServeHTTP(w, withUsername(r, username))
		case isClientFailure(err):
			a.failed(r)
			a.challenge(w)
		default:
			a.unavailable(w, r, err)
		}
	}))
}

// challenge answers 401 with the Basic challenge. Every failure, whatever
// its cause, gets exactly these bytes.
func (a *Authenticator) challenge(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Basic realm="`+quoteRealm(a.web.realm)+`", charset="UTF-8"`)
	http.Error(w, "unauthorized", http.StatusUnauthorized)
}

func quoteRealm(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

// basicLogin authenticates a Basic credential. A credential verified
// before is checked against the user's current row (one read); any other
// goes through authenticate (claim, verify, reset).
func (a *Authenticator) basicLogin(ctx context.Context, username, pw string) error {
	c := a.basicAuth
	if c != nil {
		if verified, ok := c.lookup(username, pw); ok {
			stored, locked, err := a.currentHash(ctx, username)
			switch {
			case err == nil && !locked && verified == hashDigest(stored):
				return nil
			case err != nil && !errors.Is(err, sql.ErrNoRows):
				return err
			}
			c.forget(username, pw) // changed, locked or deleted: check in full
		}
	}
	stored, err := a.authenticate(ctx, username, pw)
	if err == nil && c != nil {
		c.add(username, pw, stored)
	}
	return err
}

// currentHash reads a user's hash and whether the user is locked now: one
// read by primary key.
func (a *Authenticator) currentHash(ctx context.Context, username string) (stored string, locked bool, err error) {
	var until sql.NullFloat64
	err = a.db.NewSelect().Model((*model.User)(nil)).Column("password_hash", "lockout_until").
		Where("username = ?", username).Scan(ctx, &stored, &until)
	return stored, until.Valid && until.Float64 > unixSeconds(a.now()), err
}

// parseBasicAuth reads the Authorization header as RFC 7617 says: the
// scheme "Basic" in any case, one token68 of standard base64, decoding to
// valid UTF-8 "user-id:password" split at the first colon, neither part
// with control characters. Repeated headers, over-long values and
// everything else are refused.
func parseBasicAuth(h http.Header) (username, pw string, ok bool) {
	values := h.Values("Authorization")
	if len(values) != 1 || len(values[0]) > maxAuthorizationBytes {
		return "", "", false
	}
	scheme, token, found := strings.Cut(values[0], " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(strings.Trim(token, " "))
	if err != nil || !utf8.Valid(raw) {
		return "", "", false
	}
	username, pw, found = strings.Cut(string(raw), ":")
	if !found || hasControl(username) || hasControl(pw) {
		return "", "", false
	}
	return username, pw, true
}

// hasControl reports whether s holds a C0 control character or DEL.
func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// credentialCache remembers verified Basic credentials: the key is
// HMAC-SHA256(process key, username, password), the value a digest of the
// stored hash that was verified, and an expiry. The key is random per
// process, so the entries say nothing about the passwords; a request hits
// only when the user's stored hash is still the one verified, so a new
// password misses.
type credentialCache struct {
	key [32]byte
	ttl time.Duration
	max int
	now func() time.Time

	mu      sync.Mutex
	entries map[[sha256.Size]byte]cacheEntry
}

type cacheEntry struct {
	stored  [sha256.Size]byte // hashDigest of the verified hash
	expires time.Time
}

// newCredentialCache returns nil, a disabled cache, when ttl is 0.
func newCredentialCache(size int, ttl time.Duration, now func() time.Time) *credentialCache {
	if ttl <= 0 {
		return nil
	}
	c := &credentialCache{ttl: ttl, max: size, now: now, entries: make(map[[sha256.Size]byte]cacheEntry)}
	rand.Read(c.key[:])
	return c
}

func hashDigest(stored string) [sha256.Size]byte { return sha256.Sum256([]byte(stored)) }

func (c *credentialCache) sum(username, pw string) [sha256.Size]byte {
	m := hmac.New(sha256.New, c.key[:])
	for _, s := range []string{username, pw} {
		// Length prefixes keep ("ab","c") and ("a","bc") apart.
		m.Write(binary.BigEndian.AppendUint64(nil, uint64(len(s))))
		m.Write([]byte(s))
	}
	var out [sha256.Size]byte
	m.Sum(out[:0])
	return out
}

// lookup returns the digest of the hash a credential was verified against.
func (c *credentialCache) lookup(username, pw string) ([sha256.Size]byte, bool) {
	k := c.sum(username, pw)
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if ok && !c.now().Before(e.expires) {
		delete(c.entries, k)
		return [sha256.Size]byte{}, false
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
	c.entries[k] = cacheEntry{stored: hashDigest(stored), expires: c.now().Add(c.ttl)}
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
