package authn_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/minimost/minimost/middleware"
)

// A software authenticator: what a pkClient and a passkey provider do in a
// WebAuthn ceremony (an ECDSA P-256 key, clientDataJSON and
// authenticatorData built and signed by hand), so that the ceremonies run
// through HTTP with real bytes and no pkClient.

// testOrigin is the origin the tests' passkeys are used from: the
// Authenticator's WebAuthnOrigins, whatever port the test server has.
const testOrigin = "http://localhost"

var b64 = base64.RawURLEncoding

type softKey struct {
	key        *ecdsa.PrivateKey
	id         []byte
	userHandle []byte
	count      uint32 // 0: the authenticator keeps no counter
	counting   bool
	origin     string
	rpID       string
}

func newSoftKey(t testing.TB) *softKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 16)
	rand.Read(id)
	return &softKey{key: k, id: id, origin: testOrigin, rpID: "localhost"}
}

// options is the part of the server's ceremony options the authenticator reads.
type options struct {
	PublicKey struct {
		Challenge string `json:"challenge"`
		User      struct {
			ID string `json:"id"`
		} `json:"user"`
		RPID string `json:"rpId"`
		RP   struct {
			ID string `json:"id"`
		} `json:"rp"`
		AllowCredentials []struct {
			ID string `json:"id"`
		} `json:"allowCredentials"`
		ExcludeCredentials []struct {
			ID string `json:"id"`
		} `json:"excludeCredentials"`
	} `json:"publicKey"`
}

func parseOptions(t testing.TB, body []byte) options {
	t.Helper()
	var o options
	if err := json.Unmarshal(body, &o); err != nil || o.PublicKey.Challenge == "" {
		t.Fatalf("ceremony options %s: %v", body, err)
	}
	return o
}

func (k *softKey) clientData(typ, challenge string) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": k.origin, "crossOrigin": false})
	return b
}

func (k *softKey) authData(flags byte, attested []byte) []byte {
	rp := sha256.Sum256([]byte(k.rpID))
	var d bytes.Buffer
	d.Write(rp[:])
	d.WriteByte(flags)
	binary.Write(&d, binary.BigEndian, k.count)
	d.Write(attested)
	return d.Bytes()
}

const (
	flagUP = 0x01
	flagUV = 0x04
	flagBE = 0x08
	flagBS = 0x10
	flagAT = 0x40
)

// create answers a registration's options: the JSON of the
// PublicKeyCredential a pkClient sends.
func (k *softKey) create(t testing.TB, body []byte) json.RawMessage {
	t.Helper()
	o := parseOptions(t, body)
	var err error
	if k.userHandle, err = b64.DecodeString(o.PublicKey.User.ID); err != nil {
		t.Fatalf("user.id %q: %v", o.PublicKey.User.ID, err)
	}
	pub, _ := k.key.PublicKey.Bytes()
	cose, err := webauthncbor.Marshal(webauthncose.EC2PublicKeyData{
		PublicKeyData: webauthncose.PublicKeyData{KeyType: int64(webauthncose.EllipticKey), Algorithm: int64(webauthncose.AlgES256)},
		Curve:         int64(webauthncose.P256), XCoord: pub[1:33], YCoord: pub[33:],
	})
	if err != nil {
		t.Fatal(err)
	}
	var att bytes.Buffer
	att.Write(make([]byte, 16)) // AAGUID
	binary.Write(&att, binary.BigEndian, uint16(len(k.id)))
	att.Write(k.id)
	att.Write(cose)
	if k.counting {
		k.count++
	}
	obj, err := webauthncbor.Marshal(map[string]any{
		"fmt": "none", "attStmt": map[string]any{}, "authData": k.authData(flagUP|flagUV|flagBE|flagBS|flagAT, att.Bytes()),
	})
	if err != nil {
		t.Fatal(err)
	}
	cred, _ := json.Marshal(map[string]any{
		"id": b64.EncodeToString(k.id), "rawId": b64.EncodeToString(k.id), "type": "public-key",
		"clientExtensionResults": map[string]any{},
		"response": map[string]any{
			"clientDataJSON":    b64.EncodeToString(k.clientData("webauthn.create", o.PublicKey.Challenge)),
			"attestationObject": b64.EncodeToString(obj),
			"transports":        []string{"internal", "hybrid"},
		},
	})
	return cred
}

// get answers a sign-in's options.
func (k *softKey) get(t testing.TB, body []byte) json.RawMessage {
	t.Helper()
	o := parseOptions(t, body)
	if k.counting {
		k.count++
	}
	auth := k.authData(flagUP|flagUV|flagBE|flagBS, nil)
	cd := k.clientData("webauthn.get", o.PublicKey.Challenge)
	h := sha256.Sum256(cd)
	digest := sha256.Sum256(append(append([]byte{}, auth...), h[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, k.key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	cred, _ := json.Marshal(map[string]any{
		"id": b64.EncodeToString(k.id), "rawId": b64.EncodeToString(k.id), "type": "public-key",
		"clientExtensionResults": map[string]any{},
		"response": map[string]any{
			"clientDataJSON":    b64.EncodeToString(cd),
			"authenticatorData": b64.EncodeToString(auth),
			"signature":         b64.EncodeToString(sig),
			"userHandle":        b64.EncodeToString(k.userHandle),
		},
	})
	return cred
}

// pkConfig is a Config with passkeys on for the tests' origin.
func pkConfig() authn.Config {
	return authn.Config{HTTP: authn.HTTPConfig{
		InsecureCookies: true, WebAuthnRPID: "localhost", WebAuthnOrigins: []string{testOrigin},
	}}
}

// pkServer serves a's Routes.
func pkServer(t testing.TB, a *authn.Authenticator) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(a.Routes())
	t.Cleanup(srv.Close)
	return srv
}

// pkClient is a client with cookies, that follows no redirect.
type pkClient struct {
	t      testing.TB
	client *http.Client
}

func newPKClient(t testing.TB) *pkClient {
	jar, _ := cookiejar.New(nil)
	return &pkClient{t: t, client: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

// post sends v as JSON and returns the status and body.
func (b *pkClient) post(url string, v any) (int, []byte) {
	b.t.Helper()
	body, _ := json.Marshal(v)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	res, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return res.StatusCode, out
}

func (b *pkClient) get(url string) (int, []byte) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", "application/json")
	res, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return res.StatusCode, out
}

const pkPassword = "correct horse battery staple"

// signUp registers username with a.Register and signs in on srv.
func signUp(t testing.TB, a *authn.Authenticator, srv *httptest.Server, username string) *pkClient {
	t.Helper()
	if err := a.Register(context.Background(), username, pkPassword); err != nil {
		t.Fatal(err)
	}
	b := newPKClient(t)
	if st, body := b.post(srv.URL+"/login", map[string]string{"username": username, "password": pkPassword}); st != http.StatusOK {
		t.Fatalf("login: %d %s", st, body)
	}
	return b
}

// addPasskey registers k as a passkey named name through b's session on
// srv: begun on begin's server, finished on srv.
func addPasskey(t testing.TB, b *pkClient, begin, finish string, k *softKey, name string) {
	t.Helper()
	st, opts := b.post(begin+"/passkeys/begin", map[string]string{"password": pkPassword})
	if st != http.StatusOK {
		t.Fatalf("passkeys/begin: %d %s", st, opts)
	}
	st, body := b.post(finish+"/passkeys/finish", map[string]any{"name": name, "credential": k.create(t, opts)})
	if st != http.StatusCreated {
		t.Fatalf("passkeys/finish: %d %s", st, body)
	}
}

// passkeySignIn signs in with k without a password, begun on begin's
// server and finished on finish's, in a new client; it returns the status
// and body of the finish, and the client.
func passkeySignIn(t testing.TB, begin, finish string, k *softKey) (int, []byte, *pkClient) {
	t.Helper()
	b := newPKClient(t)
	st, opts := b.post(begin+"/passkey/begin", struct{}{})
	if st != http.StatusOK {
		t.Fatalf("passkey/begin: %d %s", st, opts)
	}
	st, body := b.post(finish+"/passkey/finish", map[string]any{"credential": k.get(t, opts), "next": "/app/"})
	return st, body, b
}

func TestPasskeyRegisterAndSignIn(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		a := db.Open(t, pkConfig())
		srv := pkServer(t, a)
		b := signUp(t, a, srv, "alice")
		k := newSoftKey(t)
		k.counting = true
		addPasskey(t, b, srv.URL, srv.URL, k, "laptop")

		list, err := a.Passkeys().List(ctx, "alice")
		if err != nil || len(list) != 1 || list[0].Name != "laptop" || list[0].ID != b64.EncodeToString(k.id) ||
			!list[0].BackupEligible || !list[0].BackupState || !list[0].LastUsed.IsZero() || list[0].SignCount != 1 {
			t.Fatalf("List = %+v, %v", list, err)
		}
		st, body, c := passkeySignIn(t, srv.URL, srv.URL, k)
		if st != http.StatusOK || !strings.Contains(string(body), `"username":"alice"`) || !strings.Contains(string(body), `"redirect":"/app/"`) {
			t.Fatalf("passkey sign-in: %d %s", st, body)
		}
		// The session works: the passkeys page lists it.
		if st, body := c.get(srv.URL + "/passkeys"); st != http.StatusOK || !strings.Contains(string(body), `"name":"laptop"`) {
			t.Fatalf("GET /passkeys with the passkey's session: %d %s", st, body)
		}
		list, _ = a.Passkeys().List(ctx, "alice")
		if list[0].LastUsed.IsZero() || list[0].SignCount != 2 {
			t.Fatalf("after a sign-in: %+v", list[0])
		}
		// Rename and delete, over HTTP.
		if st, body := c.post(srv.URL+"/passkeys", map[string]string{"action": "rename", "id": list[0].ID, "name": "work laptop"}); st != http.StatusNoContent {
			t.Fatalf("rename: %d %s", st, body)
		}
		if st, _ := c.post(srv.URL+"/passkeys", map[string]string{"action": "delete", "id": "nope"}); st != http.StatusNotFound {
			t.Fatalf("delete of an unknown ID: %d", st)
		}
		if st, _ := c.post(srv.URL+"/passkeys", map[string]string{"action": "delete", "id": list[0].ID}); st != http.StatusNoContent {
			t.Fatalf("delete: %d", st)
		}
		if list, err := a.Passkeys().List(ctx, "alice"); err != nil || len(list) != 0 {
			t.Fatalf("List after delete = %+v, %v", list, err)
		}
	})
}

// A challenge is used once: the same assertion sent twice, or two
// requests with the same handle at once, sign in once.
func TestPasskeyChallengeUsedTwice(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		cfg := pkConfig()
		cfg.HTTP.Throttle = middleware.NewThrottle(middleware.ThrottleConfig{Burst: 1000})
		a := db.Open(t, cfg)
		srv := pkServer(t, a)
		k := newSoftKey(t)
		addPasskey(t, signUp(t, a, srv, "alice"), srv.URL, srv.URL, k, "k")
		for round := 0; round < 3; round++ {
			b := newPKClient(t)
			_, opts := b.post(srv.URL+"/passkey/begin", struct{}{})
			handle := cookieOf(t, b, srv.URL, "passkey-login")
			cred := k.get(t, opts)
			// Parallel requests with the same handle and the same assertion.
			const n = 8
			var wg sync.WaitGroup
			statuses := make(chan int, n)
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := newPKClient(t)
					setCookie(t, c, srv.URL, "passkey-login", handle)
					st, _ := c.post(srv.URL+"/passkey/finish", map[string]any{"credential": cred})
					statuses <- st
				}()
			}
			wg.Wait()
			close(statuses)
			ok := 0
			for st := range statuses {
				switch st {
				case http.StatusOK:
					ok++
				case http.StatusUnauthorized:
				default:
					t.Fatalf("status %d", st)
				}
			}
			if ok != 1 {
				t.Fatalf("round %d: %d of %d requests with one challenge signed in, want 1", round, ok, n)
			}
		}
	})
}

func cookieOf(t testing.TB, b *pkClient, rawURL, name string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, rawURL, nil)
	for _, c := range b.client.Jar.Cookies(req.URL) {
		if c.Name == name {
			return c.Value
		}
	}
	t.Fatalf("no cookie %s", name)
	return ""
}

func setCookie(t testing.TB, b *pkClient, rawURL, name, value string) {
	req, _ := http.NewRequest(http.MethodGet, rawURL, nil)
	b.client.Jar.SetCookies(req.URL, []*http.Cookie{{Name: name, Value: value, Path: "/"}})
}

// A ceremony begun on one instance finishes on another: registration and
// sign-in.
func TestPasskeyCrossInstance(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a1, a2 := db.Open(t, pkConfig()), db.Open(t, pkConfig())
		s1, s2 := pkServer(t, a1), pkServer(t, a2)
		b := signUp(t, a1, s1, "alice")
		k := newSoftKey(t)
		addPasskey(t, b, s1.URL, s2.URL, k, "phone")
		if st, body, _ := passkeySignIn(t, s2.URL, s1.URL, k); st != http.StatusOK {
			t.Fatalf("sign-in begun on 2, finished on 1: %d %s", st, body)
		}
		if st, body, _ := passkeySignIn(t, s1.URL, s2.URL, k); st != http.StatusOK {
			t.Fatalf("sign-in begun on 1, finished on 2: %d %s", st, body)
		}
	})
}

// An assertion for a deleted credential is refused, on every instance,
// also when the ceremony began before the deletion.
func TestPasskeyDeletedCredential(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		a1, a2 := db.Open(t, pkConfig()), db.Open(t, pkConfig())
		s1, s2 := pkServer(t, a1), pkServer(t, a2)
		k := newSoftKey(t)
		addPasskey(t, signUp(t, a1, s1, "alice"), s1.URL, s1.URL, k, "k")
		b := newPKClient(t)
		_, opts := b.post(s2.URL+"/passkey/begin", struct{}{})
		cred := k.get(t, opts)
		list, _ := a1.Passkeys().List(ctx, "alice")
		if err := a1.Passkeys().Delete(ctx, "alice", list[0].ID); err != nil {
			t.Fatal(err)
		}
		if st, body := b.post(s2.URL+"/passkey/finish", map[string]any{"credential": cred}); st != http.StatusUnauthorized || !strings.Contains(string(body), "passkey sign-in failed") {
			t.Fatalf("a deleted passkey: %d %s", st, body)
		}
		if st, _, _ := passkeySignIn(t, s1.URL, s1.URL, k); st != http.StatusUnauthorized {
			t.Fatalf("a deleted passkey, new ceremony: %d", st)
		}
		if err := a1.Passkeys().Delete(ctx, "alice", list[0].ID); !errors.Is(err, authn.ErrPasskeyNotFound) {
			t.Fatalf("Delete twice: %v", err)
		}
	})
}

// A sign count that does not go up, where the authenticator counts, is
// refused and logged.
func TestPasskeySignCountBackwards(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		logs := &pkLog{}
		cfg := pkConfig()
		cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
		a := db.Open(t, cfg)
		srv := pkServer(t, a)
		k := newSoftKey(t)
		k.counting = true
		addPasskey(t, signUp(t, a, srv, "alice"), srv.URL, srv.URL, k, "k")
		for i := 0; i < 2; i++ {
			if st, body, _ := passkeySignIn(t, srv.URL, srv.URL, k); st != http.StatusOK {
				t.Fatalf("sign-in %d: %d %s", i, st, body)
			}
		}
		clone := *k
		clone.count = 1 // a copy of the key with an older counter
		if st, _, _ := passkeySignIn(t, srv.URL, srv.URL, &clone); st != http.StatusUnauthorized {
			t.Fatalf("a sign count that went back: %d", st)
		}
		if !strings.Contains(logs.String(), "passkey sign count did not go up") {
			t.Fatalf("not logged:\n%s", logs)
		}
		// The same count again is refused too.
		clone.count = k.count - 1
		if st, _, _ := passkeySignIn(t, srv.URL, srv.URL, &clone); st != http.StatusUnauthorized {
			t.Fatalf("the same sign count again: %d", st)
		}
		if st, _, _ := passkeySignIn(t, srv.URL, srv.URL, k); st != http.StatusOK {
			t.Fatalf("the real key, counting on: %d", st)
		}
	})
}

// An unknown credential gets the answer of a known one with a wrong
// signature: nobody learns which credentials (or names) exist.
func TestPasskeyUnknownCredentialSameAnswer(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a := db.Open(t, pkConfig())
		srv := pkServer(t, a)
		k := newSoftKey(t)
		addPasskey(t, signUp(t, a, srv, "alice"), srv.URL, srv.URL, k, "k")
		forged := *k // the right ID and user handle, another key
		forged.key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		unknown := newSoftKey(t)
		unknown.userHandle = make([]byte, 32)
		rand.Read(unknown.userHandle)
		answer := func(k *softKey) (int, http.Header, string) {
			b := newPKClient(t)
			_, opts := b.post(srv.URL+"/passkey/begin", struct{}{})
			body, _ := json.Marshal(map[string]any{"credential": k.get(t, opts)})
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/passkey/finish", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			res, err := b.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			out, _ := io.ReadAll(res.Body)
			res.Header.Del("Date")
			return res.StatusCode, res.Header, string(out)
		}
		s1, h1, b1 := answer(&forged)
		s2, h2, b2 := answer(unknown)
		if s1 != http.StatusUnauthorized || s1 != s2 || b1 != b2 || !sameHeaders(h1, h2) {
			t.Fatalf("known credential, wrong key: %d %v %s\nunknown credential: %d %v %s", s1, h1, b1, s2, h2, b2)
		}
	})
}

func sameHeaders(a, b http.Header) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// The rules of a passkey sign-in: a lockout by failed passwords does not
// stop it; an administrator's Lock (in time or forever) and Delete do; a
// password written outside the library unbinds it, SetPassword does not.
func TestPasskeyLockRules(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		cfg := pkConfig()
		cfg.LockoutThreshold = 3
		a := db.Open(t, cfg)
		srv := pkServer(t, a)
		k := newSoftKey(t)
		addPasskey(t, signUp(t, a, srv, "alice"), srv.URL, srv.URL, k, "k")
		for i := 0; i < 3; i++ {
			a.Authenticate(ctx, "alice", "wrong password, guessed")
		}
		if acc, _ := a.Account(ctx, "alice"); acc.LockedUntil.IsZero() {
			t.Fatal("not locked by failed passwords")
		}
		if st, body, _ := passkeySignIn(t, srv.URL, srv.URL, k); st != http.StatusOK {
			t.Fatalf("locked by failed passwords: %d %s", st, body)
		}
		// The passkey leaves the lockout to the password guesser.
		if acc, _ := a.Account(ctx, "alice"); acc.LockedUntil.IsZero() {
			t.Fatal("a passkey sign-in lifted the lockout of failed passwords")
		}
		if err := a.Lock(ctx, "alice", 0); err != nil {
			t.Fatal(err)
		}
		if st, _, _ := passkeySignIn(t, srv.URL, srv.URL, k); st != http.StatusUnauthorized {
			t.Fatalf("after Lock: %d", st)
		}
		if err := a.Lock(ctx, "alice", authn.Forever); err != nil {
			t.Fatal(err)
		}
		if st, _, _ := passkeySignIn(t, srv.URL, srv.URL, k); st != http.StatusUnauthorized {
			t.Fatalf("after Lock forever: %d", st)
		}
		if err := a.Unlock(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if st, _, _ := passkeySignIn(t, srv.URL, srv.URL, k); st != http.StatusOK {
			t.Fatalf("after Unlock: %d", st)
		}
		// The library's own change of password keeps the passkey.
		if err := a.SetPassword(ctx, "alice", "another good long password"); err != nil {
			t.Fatal(err)
		}
		if st, _, _ := passkeySignIn(t, srv.URL, srv.URL, k); st != http.StatusOK {
			t.Fatalf("after SetPassword: %d", st)
		}
		// A hash written outside the library unbinds it.
		if _, err := db.Raw.NewRaw("UPDATE users SET password_hash = ? WHERE username = ?", "pbkdf2:sha256:1000$abc$def", "alice").Exec(ctx); err != nil {
			t.Fatal(err)
		}
		if st, _, _ := passkeySignIn(t, srv.URL, srv.URL, k); st != http.StatusUnauthorized {
			t.Fatalf("after an outside hash: %d", st)
		}
		if err := a.Delete(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if err := a.Register(ctx, "alice", pkPassword); err != nil {
			t.Fatal(err)
		}
		if st, _, _ := passkeySignIn(t, srv.URL, srv.URL, k); st != http.StatusUnauthorized {
			t.Fatalf("after Delete and a new alice: %d", st)
		}
		if list, _ := a.Passkeys().List(ctx, "alice"); len(list) != 0 {
			t.Fatalf("the new alice inherited %+v", list)
		}
	})
}

// A failed ceremony spends the client's failure budget.
func TestPasskeyFailureSpendsBudget(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		cfg := pkConfig()
		cfg.HTTP.Throttle = middleware.NewThrottle(middleware.ThrottleConfig{Burst: 2, Interval: 1 << 40})
		a := db.Open(t, cfg)
		srv := pkServer(t, a)
		unknown := newSoftKey(t)
		unknown.userHandle = []byte("someone")
		// Three ceremonies begun while the budget is whole, then finished.
		var clients []*pkClient
		var creds []json.RawMessage
		for i := 0; i < 3; i++ {
			b := newPKClient(t)
			_, opts := b.post(srv.URL+"/passkey/begin", struct{}{})
			clients, creds = append(clients, b), append(creds, unknown.get(t, opts))
		}
		for i, want := range []int{401, 401, 429} {
			if st, _ := clients[i].post(srv.URL+"/passkey/finish", map[string]any{"credential": creds[i]}); st != want {
				t.Fatalf("attempt %d: %d, want %d", i, st, want)
			}
		}
		// Over budget, no ceremony begins either.
		if st, _ := newPKClient(t).post(srv.URL+"/passkey/begin", struct{}{}); st != http.StatusTooManyRequests {
			t.Fatalf("begin over budget: %d", st)
		}
	})
}

// Registration needs the session and the password again; a ceremony
// finishes only for the user who began it.
func TestPasskeyRegistrationRules(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		a := db.Open(t, pkConfig())
		srv := pkServer(t, a)
		anon := newPKClient(t)
		if st, _ := anon.post(srv.URL+"/passkeys/begin", map[string]string{"password": pkPassword}); st != http.StatusUnauthorized {
			t.Fatalf("begin without a session: %d", st)
		}
		b := signUp(t, a, srv, "alice")
		if st, _ := b.post(srv.URL+"/passkeys/begin", map[string]string{"password": "not alice's password"}); st != http.StatusUnauthorized {
			t.Fatalf("begin with a wrong password: %d", st)
		}
		if acc, _ := a.Account(ctx, "alice"); acc.FailedAttempts != 1 {
			t.Fatalf("a wrong password at registration counted %d failures, want 1", acc.FailedAttempts)
		}
		// Mallory begins; alice's session cannot finish mallory's ceremony.
		m := signUp(t, a, srv, "mallory")
		_, opts := m.post(srv.URL+"/passkeys/begin", map[string]string{"password": pkPassword})
		k := newSoftKey(t)
		setCookie(t, b, srv.URL, "passkey-register", cookieOf(t, m, srv.URL, "passkey-register"))
		if st, body := b.post(srv.URL+"/passkeys/finish", map[string]any{"name": "x", "credential": k.create(t, opts)}); st != http.StatusBadRequest {
			t.Fatalf("finishing another user's ceremony: %d %s", st, body)
		}
		if list, _ := a.Passkeys().List(ctx, "alice"); len(list) != 0 {
			t.Fatalf("alice got %+v", list)
		}
		// The same credential twice, names taken, bad names.
		addPasskey(t, b, srv.URL, srv.URL, k, "one")
		_, opts = b.post(srv.URL+"/passkeys/begin", map[string]string{"password": pkPassword})
		if st, _ := b.post(srv.URL+"/passkeys/finish", map[string]any{"name": "two", "credential": k.create(t, opts)}); st != http.StatusConflict {
			t.Fatalf("the same credential twice: %d", st)
		}
		_, opts = b.post(srv.URL+"/passkeys/begin", map[string]string{"password": pkPassword})
		if st, _ := b.post(srv.URL+"/passkeys/finish", map[string]any{"name": "one", "credential": newSoftKey(t).create(t, opts)}); st != http.StatusConflict {
			t.Fatalf("a name taken: %d", st)
		}
		_, opts = b.post(srv.URL+"/passkeys/begin", map[string]string{"password": pkPassword})
		if st, _ := b.post(srv.URL+"/passkeys/finish", map[string]any{"name": " bad\u202e", "credential": newSoftKey(t).create(t, opts)}); st != http.StatusBadRequest {
			t.Fatalf("a bad name: %d", st)
		}
	})
}

// pkLog is a log destination that goroutines may write at once.
type pkLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *pkLog) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *pkLog) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A challenge lives passkeyChallengeTTL (5 minutes): later, it is refused.
func TestPasskeyExpiredChallenge(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clock := testdb.NewClock()
		cfg := pkConfig()
		cfg.Now = clock.Now
		a := db.Open(t, cfg)
		srv := pkServer(t, a)
		k := newSoftKey(t)
		addPasskey(t, signUp(t, a, srv, "alice"), srv.URL, srv.URL, k, "k")
		b := newPKClient(t)
		_, opts := b.post(srv.URL+"/passkey/begin", struct{}{})
		cred := k.get(t, opts)
		clock.Advance(5*time.Minute + time.Second)
		if st, _ := b.post(srv.URL+"/passkey/finish", map[string]any{"credential": cred}); st != http.StatusUnauthorized {
			t.Fatalf("an expired challenge: %d", st)
		}
		// Within its life it works.
		b = newPKClient(t)
		_, opts = b.post(srv.URL+"/passkey/begin", struct{}{})
		cred = k.get(t, opts)
		clock.Advance(4 * time.Minute)
		if st, body := b.post(srv.URL+"/passkey/finish", map[string]any{"credential": cred}); st != http.StatusOK {
			t.Fatalf("a challenge 4 minutes old: %d %s", st, body)
		}
	})
}

// A failing disk: a challenge whose deletion is not written signs nobody
// in (503), and a passkey whose insert is not written is not reported
// added.
func TestPasskeyFailingDisk(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		a, faults := db.OpenFaulty(t, pkConfig())
		srv := pkServer(t, a)
		b := signUp(t, a, srv, "alice")
		k := newSoftKey(t)
		_, opts := b.post(srv.URL+"/passkeys/begin", map[string]string{"password": pkPassword})
		faults.Fail("INSERT INTO passkeys")
		if st, _ := b.post(srv.URL+"/passkeys/finish", map[string]any{"name": "k", "credential": k.create(t, opts)}); st != http.StatusServiceUnavailable {
			t.Fatalf("passkey insert not written: %d", st)
		}
		faults.Clear()
		if list, _ := a.Passkeys().List(ctx, "alice"); len(list) != 0 {
			t.Fatalf("a passkey whose insert failed: %+v", list)
		}
		addPasskey(t, b, srv.URL, srv.URL, k, "k")
		c := newPKClient(t)
		_, opts = c.post(srv.URL+"/passkey/begin", struct{}{})
		cred := k.get(t, opts)
		faults.Fail("DELETE FROM \"passkey_challenges\"")
		st, _ := c.post(srv.URL+"/passkey/finish", map[string]any{"credential": cred})
		if st != http.StatusServiceUnavailable || faults.Injected() == 0 {
			t.Fatalf("challenge deletion not written: %d (%d faults)", st, faults.Injected())
		}
		faults.Clear()
		if st, _ := c.get(srv.URL + "/passkeys"); st != http.StatusUnauthorized {
			t.Fatalf("signed in after a failed challenge deletion: %d", st)
		}
	})
}

// New validates the relying party: a host name for the RP ID, and secure
// origins under it (http for localhost only).
func TestPasskeyConfig(t *testing.T) {
	db := testdb.SQLite(t)
	for _, tc := range []struct {
		rpID    string
		origins []string
		ok      bool
	}{
		{"localhost", []string{"http://localhost:8080"}, true},
		{"example.com", nil, true},
		{"example.com", []string{"https://login.example.com", "https://example.com:8443"}, true},
		{"example.com", []string{"http://example.com"}, false},        // not secure
		{"example.com", []string{"https://example.org"}, false},       // not under the RP ID
		{"example.com", []string{"https://example.com/login"}, false}, // a path
		{"example.com:443", nil, false},
		{"https://example.com", nil, false},
		{"127.0.0.1", nil, false},
		{"Example.com", nil, false},
		{"", []string{"https://example.com"}, false}, // origins without an RP ID
	} {
		cfg := authn.Config{HTTP: authn.HTTPConfig{WebAuthnRPID: tc.rpID, WebAuthnOrigins: tc.origins}}
		a, err := authn.Open(context.Background(), db.URL, cfg)
		if err == nil {
			if !a.Passkeys().Enabled() {
				t.Errorf("%q %q: passkeys not enabled", tc.rpID, tc.origins)
			}
			a.Close()
		}
		if (err == nil) != tc.ok {
			t.Errorf("%q %q: err = %v, want ok %v", tc.rpID, tc.origins, err, tc.ok)
		}
	}
	a, err := authn.Open(context.Background(), db.URL, authn.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.Passkeys().Enabled() {
		t.Error("passkeys enabled without WebAuthnRPID")
	}
}

// The pages: the login form offers passkeys with autofill and loads the
// static script under a CSP without inline script; the script is served
// as JavaScript.
func TestPasskeyPages(t *testing.T) {
	a := testdb.SQLite(t).Open(t, pkConfig())
	srv := pkServer(t, a)
	res, err := http.Get(srv.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	csp := res.Header.Get("Content-Security-Policy")
	for _, want := range []string{`autocomplete="username webauthn"`, `<script src="/passkey.js" defer></script>`, "Sign in with a passkey"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("login page lacks %s", want)
		}
	}
	if csp != authn.PasskeyContentSecurityPolicy || strings.Contains(csp, "unsafe-inline'; script") || strings.Count(string(page), "<script") != 1 {
		t.Errorf("CSP %q, %d scripts", csp, strings.Count(string(page), "<script"))
	}
	res, err = http.Get(srv.URL + "/passkey.js")
	if err != nil {
		t.Fatal(err)
	}
	js, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/javascript; charset=utf-8" || !strings.Contains(string(js), "navigator.credentials") ||
		res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("passkey.js: %d %v", res.StatusCode, res.Header)
	}
	// Without passkeys, the login form is as it was: no script.
	plain := pkServer(t, testdb.SQLite(t).Open(t, authn.Config{HTTP: authn.HTTPConfig{InsecureCookies: true}}))
	res, _ = http.Get(plain.URL + "/login")
	page, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if strings.Contains(string(page), "<script") || strings.Contains(string(page), "webauthn") || res.Header.Get("Content-Security-Policy") != authn.DefaultContentSecurityPolicy {
		t.Errorf("a login form without passkeys has passkey parts: CSP %q\n%s", res.Header.Get("Content-Security-Policy"), page)
	}
	if res, _ := http.Get(plain.URL + "/passkey.js"); res.StatusCode != http.StatusNotFound {
		t.Errorf("passkey.js without passkeys: %d", res.StatusCode)
	}
	// The passkeys page, signed in.
	b := signUp(t, a, srv, "alice")
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/passkeys", nil)
	res, err = b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(page), `id="passkey-add"`) || res.Header.Get("Content-Security-Policy") != authn.PasskeyContentSecurityPolicy {
		t.Errorf("passkeys page: %d %s", res.StatusCode, page)
	}
}

// A challenge serves only its own ceremony: a registration's challenge,
// signed as a sign-in's, signs nobody in.
func TestPasskeyChallengeKind(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a := db.Open(t, pkConfig())
		srv := pkServer(t, a)
		b := signUp(t, a, srv, "alice")
		k := newSoftKey(t)
		addPasskey(t, b, srv.URL, srv.URL, k, "k")
		st, opts := b.post(srv.URL+"/passkeys/begin", map[string]string{"password": pkPassword})
		if st != http.StatusOK {
			t.Fatal(st)
		}
		c := newPKClient(t)
		setCookie(t, c, srv.URL, "passkey-login", cookieOf(t, b, srv.URL, "passkey-register"))
		if st, body := c.post(srv.URL+"/passkey/finish", map[string]any{"credential": k.get(t, opts)}); st != http.StatusUnauthorized {
			t.Fatalf("a registration's challenge used to sign in: %d %s", st, body)
		}
	})
}

// pkPasswordStep posts the password to /login on srv in a new client and
// returns the client, which holds the pending login, and the answer.
func pkPasswordStep(t testing.TB, srv string, username, password string) (*pkClient, int, []byte) {
	t.Helper()
	b := newPKClient(t)
	st, body := b.post(srv+"/login", map[string]string{"username": username, "password": password})
	return b, st, body
}

// A passkey is a second factor after the password: the password alone
// gives a pending login that names it, and the passkey step finishes the
// login, on any instance; without it no session starts.
func TestPasskeySecondFactor(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		a1, a2 := db.Open(t, pkConfig()), db.Open(t, pkConfig())
		s1, s2 := pkServer(t, a1), pkServer(t, a2)
		k := newSoftKey(t)
		k.counting = true
		addPasskey(t, signUp(t, a1, s1, "alice"), s1.URL, s1.URL, k, "k")

		if err := a1.Authenticate(ctx, "alice", pkPassword); !errors.Is(err, authn.ErrSecondFactorRequired) {
			t.Fatalf("Authenticate with a passkey: %v, want ErrSecondFactorRequired", err)
		}
		b, st, body := pkPasswordStep(t, s1.URL, "alice", pkPassword)
		if st != http.StatusOK || !strings.Contains(string(body), `"second_factor":["passkey"]`) {
			t.Fatalf("password step: %d %s", st, body)
		}
		if st, _ := b.get(s1.URL + "/passkeys"); st != http.StatusUnauthorized {
			t.Fatalf("signed in after the password alone: %d", st)
		}
		// Begun on one instance, finished on the other.
		st, opts := b.post(s1.URL+"/passkey/verify/begin", struct{}{})
		if st != http.StatusOK || !strings.Contains(string(opts), b64.EncodeToString(k.id)) {
			t.Fatalf("passkey/verify/begin: %d %s", st, opts)
		}
		pending := cookieOf(t, b, s1.URL, "session-pending")
		st, body = b.post(s2.URL+"/passkey/verify/finish", map[string]any{"credential": k.get(t, opts)})
		if st != http.StatusOK || !strings.Contains(string(body), `"username":"alice"`) {
			t.Fatalf("passkey/verify/finish: %d %s", st, body)
		}
		if st, _ := b.get(s1.URL + "/passkeys"); st != http.StatusOK {
			t.Fatalf("not signed in after the passkey step: %d", st)
		}
		// The pending login was used: the same assertion again is refused.
		if st, _ := b.post(s2.URL+"/passkey/verify/finish", map[string]any{"credential": k.get(t, opts)}); st != http.StatusUnauthorized {
			t.Fatalf("a second passkey step on a finished login: %d", st)
		}

		// The pending login was consumed: its cookie begins no other step.
		replay := newPKClient(t)
		setCookie(t, replay, s1.URL, "session-pending", pending)
		if st, _ := replay.post(s1.URL+"/passkey/verify/begin", struct{}{}); st != http.StatusUnauthorized {
			t.Fatalf("a finished pending login began another step: %d", st)
		}
		// Without a pending login, no step begins.
		if st, _ := newPKClient(t).post(s1.URL+"/passkey/verify/begin", struct{}{}); st != http.StatusUnauthorized {
			t.Fatalf("passkey/verify/begin without a pending login: %d", st)
		}
		// Another user's passkey does not finish alice's login.
		mk := newSoftKey(t)
		addPasskey(t, signUp(t, a1, s1, "mallory"), s1.URL, s1.URL, mk, "m")
		b, _, _ = pkPasswordStep(t, s1.URL, "alice", pkPassword)
		_, opts = b.post(s1.URL+"/passkey/verify/begin", struct{}{})
		if st, _ := b.post(s1.URL+"/passkey/verify/finish", map[string]any{"credential": mk.get(t, opts)}); st != http.StatusUnauthorized {
			t.Fatalf("mallory's passkey finished alice's login: %d", st)
		}
		// A passwordless challenge does not serve the second step.
		_, opts = b.post(s1.URL+"/passkey/begin", struct{}{})
		setCookie(t, b, s1.URL, "passkey-second_factor", cookieOf(t, b, s1.URL, "passkey-login"))
		if st, _ := b.post(s1.URL+"/passkey/verify/finish", map[string]any{"credential": k.get(t, opts)}); st != http.StatusUnauthorized {
			t.Fatalf("a sign-in's challenge served the second step: %d", st)
		}
		// A passkey removed meanwhile no longer finishes a login.
		_, opts = b.post(s1.URL+"/passkey/verify/begin", struct{}{})
		list, _ := a1.Passkeys().List(ctx, "alice")
		if err := a1.Passkeys().Delete(ctx, "alice", list[0].ID); err != nil {
			t.Fatal(err)
		}
		if st, _ := b.post(s1.URL+"/passkey/verify/finish", map[string]any{"credential": k.get(t, opts)}); st != http.StatusUnauthorized {
			t.Fatalf("a removed passkey finished a login: %d", st)
		}
		// With no passkey left, the password signs in alone again.
		if _, st, body := pkPasswordStep(t, s1.URL, "alice", pkPassword); st != http.StatusOK || strings.Contains(string(body), "second_factor") {
			t.Fatalf("password after the last passkey was removed: %d %s", st, body)
		}
	})
}

// With passkeys off (no WebAuthnRPID), a user's passkeys are no second
// factor: the password signs in alone.
func TestPasskeyFactorOff(t *testing.T) {
	db := testdb.SQLite(t)
	a := db.Open(t, pkConfig())
	srv := pkServer(t, a)
	addPasskey(t, signUp(t, a, srv, "alice"), srv.URL, srv.URL, newSoftKey(t), "k")
	off := db.Open(t, authn.Config{HTTP: authn.HTTPConfig{InsecureCookies: true, BaseURL: "http://127.0.0.1:8080"}})
	ctx := context.Background()
	if err := off.Authenticate(ctx, "alice", pkPassword); err != nil {
		t.Fatalf("Authenticate with passkeys off: %v", err)
	}
	// A reset asks for no second factor either: none is in use.
	link, err := off.Recovery().ResetLink(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := off.Recovery().Reset(ctx, tokenOf(t, link), newPassword); err != nil {
		t.Fatalf("Reset with passkeys off: %v", err)
	}
}

// Bad input to the ceremonies' finish: a clear 4xx, never a panic, no
// session.
func TestPasskeyBadInput(t *testing.T) {
	a := testdb.SQLite(t).Open(t, func() authn.Config {
		cfg := pkConfig()
		cfg.HTTP.Throttle = middleware.NewThrottle(middleware.ThrottleConfig{Burst: 1000})
		return cfg
	}())
	srv := pkServer(t, a)
	k := newSoftKey(t)
	b := signUp(t, a, srv, "alice")
	addPasskey(t, b, srv.URL, srv.URL, k, "k")
	send := func(path, contentType, body string) int {
		c := newPKClient(t)
		c.post(srv.URL+"/passkey/begin", struct{}{})
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		res, err := c.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if st, _ := c.get(srv.URL + "/passkeys"); st != http.StatusUnauthorized {
			t.Fatalf("%s %q: signed in", path, body)
		}
		return res.StatusCode
	}
	for _, tc := range []struct {
		contentType, body string
		want              int
	}{
		{"application/json", `{"credential":{}}`, 401},
		{"application/json", `{"credential":"x"}`, 401},
		{"application/json", `{"credential":{"id":"AA","rawId":"AA","type":"public-key","response":{"clientDataJSON":"!!","authenticatorData":"","signature":""}}}`, 401},
		{"application/json", `{"credential":{}} trailing`, 400},
		{"application/json", `{"credential":{},"extra":1}`, 400},
		{"application/json", `not json`, 400},
		{"application/json", `{}`, 400},
		{"text/plain", `{"credential":{}}`, 415},
		{"application/json", `{"credential":"` + strings.Repeat("A", 100<<10) + `"}`, 413},
	} {
		if got := send("/passkey/finish", tc.contentType, tc.body); got != tc.want {
			t.Errorf("passkey/finish %.60q: %d, want %d", tc.body, got, tc.want)
		}
	}
	// The registration's finish answers with the status of the problem.
	for _, tc := range []struct {
		contentType, body string
		want              int
	}{
		{"application/json", `{"name":"x","credential":{}}`, 400},
		{"text/plain", `{}`, 415},
		{"application/json", `{"name":"x","credential":"` + strings.Repeat("A", 100<<10) + `"}`, 413},
	} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/passkeys/finish", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.contentType)
		res, err := b.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Errorf("passkeys/finish %.60q: %d, want %d", tc.body, res.StatusCode, tc.want)
		}
	}
	// A GET of a POST route is 405; a cross-origin POST is 403.
	if st, _ := newPKClient(t).get(srv.URL + "/passkey/finish"); st != http.StatusMethodNotAllowed {
		t.Errorf("GET passkey/finish: %d", st)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/passkey/begin", strings.NewReader("{}"))
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site passkey/begin: %d", res.StatusCode)
	}
}

// Two first registrations at once draw two user handles: each passkey
// still serves, without a password and as the second factor.
func TestPasskeyTwoHandles(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		a := db.Open(t, pkConfig())
		srv := pkServer(t, a)
		b := signUp(t, a, srv, "alice")
		_, opts1 := b.post(srv.URL+"/passkeys/begin", map[string]string{"password": pkPassword})
		c1 := cookieOf(t, b, srv.URL, "passkey-register")
		_, opts2 := b.post(srv.URL+"/passkeys/begin", map[string]string{"password": pkPassword})
		k1, k2 := newSoftKey(t), newSoftKey(t)
		cred2 := k2.create(t, opts2)
		if st, body := b.post(srv.URL+"/passkeys/finish", map[string]any{"name": "two", "credential": cred2}); st != http.StatusCreated {
			t.Fatalf("second begun: %d %s", st, body)
		}
		setCookie(t, b, srv.URL, "passkey-register", c1)
		if st, body := b.post(srv.URL+"/passkeys/finish", map[string]any{"name": "one", "credential": k1.create(t, opts1)}); st != http.StatusCreated {
			t.Fatalf("first begun: %d %s", st, body)
		}
		if bytes.Equal(k1.userHandle, k2.userHandle) {
			t.Fatal("one handle: the test makes two")
		}
		for _, k := range []*softKey{k1, k2} {
			if st, body, _ := passkeySignIn(t, srv.URL, srv.URL, k); st != http.StatusOK {
				t.Fatalf("passwordless: %d %s", st, body)
			}
			c, _, _ := pkPasswordStep(t, srv.URL, "alice", pkPassword)
			_, opts := c.post(srv.URL+"/passkey/verify/begin", struct{}{})
			if st, body := c.post(srv.URL+"/passkey/verify/finish", map[string]any{"credential": k.get(t, opts)}); st != http.StatusOK {
				t.Fatalf("second factor: %d %s", st, body)
			}
		}
	})
}

// BenchmarkPasskeyFailure compares the failed passwordless sign-in of a
// known credential with a wrong signature to that of an unknown
// credential (SQLite, through HTTP): the unknown one is verified against a
// dummy key, so that both cost the same.
//
//	go test -run '^$' -bench BenchmarkPasskeyFailure -benchtime 2000x ./authn
func BenchmarkPasskeyFailure(b *testing.B) {
	cfg := pkConfig()
	cfg.HTTP.Throttle = middleware.NewThrottle(middleware.ThrottleConfig{Burst: 1 << 30})
	cfg.HTTP.PasskeyThrottle = middleware.NewThrottle(middleware.ThrottleConfig{Burst: 1 << 30})
	a := testdb.SQLite(b).Open(b, cfg)
	srv := pkServer(b, a)
	k := newSoftKey(b)
	addPasskey(b, signUp(b, a, srv, "alice"), srv.URL, srv.URL, k, "k")
	forged := *k
	forged.key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	unknown := newSoftKey(b)
	unknown.userHandle = k.userHandle
	for _, tc := range []struct {
		name string
		key  *softKey
	}{{"known-credential-wrong-key", &forged}, {"unknown-credential", unknown}} {
		b.Run(tc.name, func(b *testing.B) {
			c := newPKClient(b)
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				_, opts := c.post(srv.URL+"/passkey/begin", struct{}{})
				body, _ := json.Marshal(map[string]any{"credential": tc.key.get(b, opts)})
				b.StartTimer()
				req, _ := http.NewRequest(http.MethodPost, srv.URL+"/passkey/finish", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				res, err := c.client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusUnauthorized {
					b.Fatalf("status %d", res.StatusCode)
				}
			}
		})
	}
}

// The passwordless sign-ins a client begins are bounded
// (HTTPConfig.PasskeyThrottle): each stores a row.
func TestPasskeyBeginThrottle(t *testing.T) {
	cfg := pkConfig()
	cfg.HTTP.PasskeyThrottle = middleware.NewThrottle(middleware.ThrottleConfig{Burst: 3, Interval: 1 << 40})
	srv := pkServer(t, testdb.SQLite(t).Open(t, cfg))
	for i, want := range []int{200, 200, 200, 429} {
		if st, _ := newPKClient(t).post(srv.URL+"/passkey/begin", struct{}{}); st != want {
			t.Fatalf("begin %d: %d, want %d", i, st, want)
		}
	}
}

// TestPasskeyFactorBeginThrottle: each begin of the second step stores a
// challenge row, so it spends PasskeyThrottle as a passwordless begin does
// (it once took none: 50 begins of one pending login, 50 rows).
func TestPasskeyFactorBeginThrottle(t *testing.T) {
	cfg := pkConfig()
	cfg.HTTP.PasskeyThrottle = middleware.NewThrottle(middleware.ThrottleConfig{Burst: 3, Interval: 1 << 40})
	a := testdb.SQLite(t).Open(t, cfg)
	srv := pkServer(t, a)
	addPasskey(t, signUp(t, a, srv, "alice"), srv.URL, srv.URL, newSoftKey(t), "k")
	b, st, body := pkPasswordStep(t, srv.URL, "alice", pkPassword)
	if st != http.StatusOK {
		t.Fatalf("password step: %d %s", st, body)
	}
	for i, want := range []int{200, 200, 200, 429} {
		if st, _ := b.post(srv.URL+"/passkey/verify/begin", struct{}{}); st != want {
			t.Fatalf("second-step begin %d: %d, want %d", i, st, want)
		}
	}
}
