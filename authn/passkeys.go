package authn

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/big"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/minimost/minimost/model"
)

// Passkeys (WebAuthn): a user signs in with a credential that their
// device keeps and that no password guesser can lock out. The ceremonies
// go through go-webauthn; this file is the only one, with the passkey
// handlers and store, that knows it, and no type of it leaves the package.

// Errors of the passkey operations, matched with errors.Is.
var (
	// ErrPasskeysDisabled: passkeys are not configured (see
	// HTTPConfig.WebAuthnRPID).
	ErrPasskeysDisabled = errors.New("authn: passkeys are not configured")
	// ErrInvalidPasskeyName: a passkey name that breaks the rules of a
	// token's name (see ErrInvalidTokenName): 1 to 64 printable
	// characters, no space at either end.
	ErrInvalidPasskeyName = errors.New("authn: invalid passkey name")
	// ErrPasskeyExists: a passkey name the user's passkeys already have,
	// or a credential registered already.
	ErrPasskeyExists = errors.New("authn: passkey already registered")
	// ErrPasskeyNotFound: no passkey of that ID for the user.
	// errors.Is(err, ErrNotFound) is true for it too.
	ErrPasskeyNotFound error = passkeyNotFound{}
	// ErrPasskeyFailed: a WebAuthn ceremony that did not verify (a wrong,
	// unknown, used or expired challenge or credential, a signature
	// that does not match, a sign count that went backwards). Clients
	// get the answer of a failed login.
	ErrPasskeyFailed = errors.New("authn: passkey not verified")
)

type passkeyNotFound struct{}

func (passkeyNotFound) Error() string { return "authn: no such passkey" }
func (passkeyNotFound) Unwrap() error { return ErrNotFound }

const (
	// passkeyChallengeTTL is how long a ceremony may take: the browser's
	// timeout too.
	passkeyChallengeTTL = 5 * time.Minute
	// userHandleBytes is the size of a random WebAuthn user handle.
	userHandleBytes = 32
	// maxPasskeysPerUser bounds a user's passkeys, and so what every
	// registration and second-factor step reads.
	maxPasskeysPerUser = 50
)

// Kinds of ceremony (model.PasskeyChallenge.Kind).
const (
	ceremonyRegister     = "register"
	ceremonyLogin        = "login"
	ceremonySecondFactor = "second_factor"
)

// PasskeyInfo describes a passkey, never its key.
type PasskeyInfo struct {
	// ID is the credential ID, base64url without padding: what Rename and
	// Delete take.
	ID   string `json:"id"`
	Name string `json:"name"`
	// Created and LastUsed are when it was registered and last signed in
	// (zero: never).
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"last_used"`
	// AAGUID names the authenticator's model (hex), "" when it gives none.
	AAGUID string `json:"aaguid,omitempty"`
	// Transports are what the browser reported ("internal", "hybrid", "usb"…).
	Transports []string `json:"transports,omitempty"`
	// BackupEligible and BackupState: the passkey may be synced, and is
	// (as last seen: a synced passkey may change BackupState).
	BackupEligible bool `json:"backup_eligible"`
	BackupState    bool `json:"backup_state"`
	// SignCount is the authenticator's signature counter as last seen; 0
	// for those that keep none.
	SignCount uint32 `json:"sign_count"`
}

// Passkeys is the Go side of a user's passkeys: Authenticator.Passkeys
// returns it. Registering one is a WebAuthn ceremony with a browser (see
// Routes: {Prefix}/passkeys); listing, renaming and deleting are here too.
type Passkeys struct{ a *Authenticator }

// Passkeys returns the passkey operations of a.
func (a *Authenticator) Passkeys() *Passkeys { return &Passkeys{a} }

// Enabled reports whether passkeys are configured (HTTPConfig.WebAuthnRPID).
func (p *Passkeys) Enabled() bool { return p.a.passkeys != nil }

// List returns username's passkeys, the oldest first; ErrNotFound when
// there is no such user.
func (p *Passkeys) List(ctx context.Context, username string) ([]PasskeyInfo, error) {
	keys, err := p.a.store.listPasskeys(ctx, username)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		if err := p.a.noUserOr(ctx, username, nil); err != nil {
			return nil, err
		}
	}
	infos := make([]PasskeyInfo, len(keys))
	for i, k := range keys {
		infos[i] = passkeyInfo(k)
	}
	return infos, nil
}

// Rename renames username's passkey id to name: ErrInvalidPasskeyName,
// ErrPasskeyExists when another of the user's passkeys has that name,
// ErrPasskeyNotFound (or ErrNotFound for no such user).
func (p *Passkeys) Rename(ctx context.Context, username, id, name string) error {
	if err := checkPasskeyName(name); err != nil {
		return err
	}
	switch taken, err := p.a.store.passkeyNameTaken(ctx, username, name, id); {
	case err != nil:
		return err
	case taken:
		return fmt.Errorf("%w: %q", ErrPasskeyExists, name)
	}
	err := p.a.store.renamePasskey(ctx, username, id, name)
	if errors.Is(err, ErrNotFound) {
		return p.a.noUserOr(ctx, username, ErrPasskeyNotFound)
	}
	return err
}

// Delete removes username's passkey id: it signs in no more, from the
// next request on, on every instance. ErrPasskeyNotFound (or ErrNotFound
// for no such user) when there is none.
func (p *Passkeys) Delete(ctx context.Context, username, id string) error {
	deleted, err := p.a.store.deletePasskey(ctx, username, id)
	if err != nil {
		return err
	}
	if !deleted {
		return p.a.noUserOr(ctx, username, ErrPasskeyNotFound)
	}
	p.a.emit(ctx, Event{Type: EventPasskeyRemoved, Username: username})
	return nil
}

// checkPasskeyName enforces the rules of a passkey's name: those of a
// token's name.
func checkPasskeyName(name string) error {
	if err := checkTokenName(name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidPasskeyName, errors.Unwrap(err))
	}
	return nil
}

func passkeyInfo(k model.Passkey) PasskeyInfo {
	info := PasskeyInfo{
		ID: k.CredentialID, Name: k.Name, Created: timeOf(k.CreatedAt), AAGUID: k.AAGUID,
		BackupEligible: k.BackupEligible, BackupState: k.BackupState, SignCount: uint32(k.SignCount),
	}
	if k.LastUsed != nil {
		info.LastUsed = timeOf(*k.LastUsed)
	}
	if k.Transports != "" {
		info.Transports = strings.Split(k.Transports, ",")
	}
	return info
}

// timeOf is unixSeconds' inverse.
func timeOf(s float64) time.Time { return time.UnixMicro(int64(math.Round(s * 1e6))) }

// passkeys is the relying party: go-webauthn configured from HTTPConfig,
// and the dummy credential that an assertion for an unknown credential is
// verified against, so that it costs what a known one does.
type passkeys struct {
	wa *webauthn.WebAuthn
	// dummyKey is the COSE public key of a key pair whose private half
	// was thrown away: no assertion verifies against it.
	dummyKey []byte
}

// newPasskeys configures the relying party from c, or returns nil when
// passkeys are off (no WebAuthnRPID). c was validated.
func newPasskeys(c HTTPConfig) (*passkeys, error) {
	if c.WebAuthnRPID == "" {
		return nil, nil
	}
	origins := c.WebAuthnOrigins
	if len(origins) == 0 {
		origins = []string{"https://" + c.WebAuthnRPID}
	}
	name := or(c.WebAuthnRPDisplayName, or(c.AppName, c.WebAuthnRPID))
	wa, err := webauthn.New(&webauthn.Config{
		RPID: c.WebAuthnRPID, RPDisplayName: name, RPOrigins: origins,
		AttestationPreference: protocol.PreferNoAttestation,
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Timeout: passkeyChallengeTTL, TimeoutUVD: passkeyChallengeTTL},
			Registration: webauthn.TimeoutConfig{Timeout: passkeyChallengeTTL, TimeoutUVD: passkeyChallengeTTL},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("authn: WebAuthn: %w", err)
	}
	key, err := dummyCOSEKey()
	if err != nil {
		return nil, err
	}
	return &passkeys{wa: wa, dummyKey: key}, nil
}

// dummyCOSEKey makes the COSE encoding of a new P-256 public key.
func dummyCOSEKey() ([]byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	pub, err := k.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		return nil, err
	}
	cose := webauthncose.EC2PublicKeyData{
		PublicKeyData: webauthncose.PublicKeyData{KeyType: int64(webauthncose.EllipticKey), Algorithm: int64(webauthncose.AlgES256)},
		Curve:         int64(webauthncose.P256),
		XCoord:        new(big.Int).SetBytes(pub[1:33]).FillBytes(make([]byte, 32)),
		YCoord:        new(big.Int).SetBytes(pub[33:]).FillBytes(make([]byte, 32)),
	}
	return webauthncbor.Marshal(cose)
}

// checkWebAuthn reports what is wrong with the WebAuthn settings of c: an
// RP ID that is no host name, an origin that is not https (http only for
// localhost), has a path, or is not the RP ID or under it.
func checkWebAuthn(c HTTPConfig) error {
	if c.WebAuthnRPID == "" {
		if len(c.WebAuthnOrigins) > 0 || c.WebAuthnRPDisplayName != "" {
			return errors.New("authn: HTTPConfig.WebAuthnOrigins or WebAuthnRPDisplayName set without WebAuthnRPID: passkeys need the relying party's ID (the site's host name)")
		}
		return nil
	}
	rpID := c.WebAuthnRPID
	if strings.ContainsAny(rpID, ":/") || net.ParseIP(rpID) != nil || strings.ToLower(rpID) != rpID || protocol.ValidateRPID(rpID) != nil {
		return fmt.Errorf("authn: HTTPConfig.WebAuthnRPID %q: not a lower-case host name (no scheme, port or IP address), such as example.com", rpID)
	}
	origins := c.WebAuthnOrigins
	if len(origins) == 0 {
		origins = []string{"https://" + rpID}
	}
	for _, o := range origins {
		if err := checkOrigin(o, rpID); err != nil {
			return fmt.Errorf("authn: HTTPConfig.WebAuthnOrigins %q: %w", o, err)
		}
	}
	return nil
}

// checkOrigin reports what is wrong with a WebAuthn origin for rpID.
func checkOrigin(origin, rpID string) error {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return errors.New(`not an origin (scheme://host[:port])`)
	}
	host := u.Hostname()
	switch {
	case u.Scheme == "http" && isLocalhost(host):
	case u.Scheme == "http":
		return errors.New("WebAuthn needs a secure origin: https, or http only for localhost (browsers refuse passkeys elsewhere)")
	case u.Scheme != "https":
		return errors.New("not an https origin")
	}
	if host != rpID && !strings.HasSuffix(host, "."+rpID) {
		return fmt.Errorf("its host is not the relying party ID %q nor under it", rpID)
	}
	return nil
}

// isLocalhost reports whether host is localhost or a name under
// .localhost, which browsers treat as secure over http.
func isLocalhost(host string) bool {
	host = strings.ToLower(host)
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// webauthnUser is a user as go-webauthn sees one.
type webauthnUser struct {
	handle []byte
	name   string
	creds  []webauthn.Credential
}

func (u *webauthnUser) WebAuthnID() []byte                         { return u.handle }
func (u *webauthnUser) WebAuthnName() string                       { return u.name }
func (u *webauthnUser) WebAuthnDisplayName() string                { return u.name }
func (u *webauthnUser) WebAuthnCredentials() []webauthn.Credential { return u.creds }

// credentialOf is a stored passkey as go-webauthn sees one.
func credentialOf(k model.Passkey) (webauthn.Credential, error) {
	id, err := base64.RawURLEncoding.DecodeString(k.CredentialID)
	if err != nil {
		return webauthn.Credential{}, fmt.Errorf("authn: stored passkey ID: %w", err)
	}
	var aaguid []byte
	if k.AAGUID != "" {
		if aaguid, err = hex.DecodeString(k.AAGUID); err != nil {
			return webauthn.Credential{}, fmt.Errorf("authn: stored passkey AAGUID: %w", err)
		}
	}
	c := webauthn.Credential{
		ID: id, PublicKey: k.PublicKey, AttestationType: k.AttestationType,
		Flags: webauthn.CredentialFlags{
			UserPresent: true, UserVerified: k.UserVerified,
			BackupEligible: k.BackupEligible, BackupState: k.BackupState,
		},
		Authenticator: webauthn.Authenticator{AAGUID: aaguid, SignCount: uint32(k.SignCount)},
	}
	for _, t := range strings.Split(k.Transports, ",") {
		if t != "" {
			c.Transport = append(c.Transport, protocol.AuthenticatorTransport(t))
		}
	}
	return c, nil
}

// ceremony is a ceremony begun: the options for the browser's
// navigator.credentials call, as JSON, and the handle of its challenge for
// the cookie.
type ceremony struct {
	options []byte
	handle  string
}

// storeCeremony keeps session, go-webauthn's state of a ceremony of kind,
// in a challenge row under a new random handle, and returns the ceremony
// with options.
func (a *Authenticator) storeCeremony(ctx context.Context, kind, username, userHash string, session *webauthn.SessionData, options any) (ceremony, error) {
	data, err := json.Marshal(session)
	if err != nil {
		return ceremony{}, fmt.Errorf("authn: encoding a passkey challenge: %w", err)
	}
	opts, err := json.Marshal(options)
	if err != nil {
		return ceremony{}, fmt.Errorf("authn: encoding passkey options: %w", err)
	}
	handle := newSessionToken()
	err = a.store.insertChallenge(ctx, &model.PasskeyChallenge{
		HandleHash: tokenHash(handle), Kind: kind, Username: username, UserHash: userHash,
		Data: string(data), ExpiresAt: unixSeconds(a.now().Add(passkeyChallengeTTL)),
	})
	if err != nil {
		return ceremony{}, err
	}
	return ceremony{options: opts, handle: handle}, nil
}

// takeCeremony consumes the challenge of handle and kind, whatever comes
// next: a challenge is used once, on any instance. It fails with
// ErrPasskeyFailed for a handle that is malformed, unknown, used, of
// another kind or expired.
func (a *Authenticator) takeCeremony(ctx context.Context, handle, kind string) (model.PasskeyChallenge, webauthn.SessionData, error) {
	var session webauthn.SessionData
	if !validToken(handle) {
		return model.PasskeyChallenge{}, session, fmt.Errorf("%w: no challenge", ErrPasskeyFailed)
	}
	c, err := a.store.takeChallenge(ctx, tokenHash(handle), kind)
	switch {
	case errors.Is(err, errNoChallenge):
		return c, session, fmt.Errorf("%w: unknown or used challenge", ErrPasskeyFailed)
	case err != nil:
		return c, session, err
	case c.ExpiresAt <= unixSeconds(a.now()):
		return c, session, fmt.Errorf("%w: expired challenge", ErrPasskeyFailed)
	}
	if err := json.Unmarshal([]byte(c.Data), &session); err != nil {
		return c, session, fmt.Errorf("authn: stored passkey challenge: %w", err)
	}
	return c, session, nil
}

// beginRegistration starts the registration of a passkey for username,
// whose password (the hash verified) was just checked again: the passkey
// will be bound to that hash.
func (a *Authenticator) beginRegistration(ctx context.Context, username, verified string) (ceremony, error) {
	if a.passkeys == nil {
		return ceremony{}, ErrPasskeysDisabled
	}
	keys, err := a.store.listPasskeys(ctx, username)
	if err != nil {
		return ceremony{}, err
	}
	if len(keys) >= maxPasskeysPerUser {
		return ceremony{}, fmt.Errorf("%w: a user has at most %d passkeys", ErrPasskeyExists, maxPasskeysPerUser)
	}
	user := &webauthnUser{name: username}
	exclude := make([]protocol.CredentialDescriptor, 0, len(keys))
	for _, k := range keys {
		c, err := credentialOf(k)
		if err != nil {
			return ceremony{}, err
		}
		exclude = append(exclude, c.Descriptor())
		if user.handle == nil {
			// Every passkey of a user carries the same handle.
			if user.handle, err = base64.RawURLEncoding.DecodeString(k.UserHandle); err != nil {
				return ceremony{}, fmt.Errorf("authn: stored user handle: %w", err)
			}
		}
	}
	if user.handle == nil {
		user.handle = make([]byte, userHandleBytes)
		rand.Read(user.handle)
	}
	creation, session, err := a.passkeys.wa.BeginRegistration(user,
		webauthn.WithExclusions(exclude),
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{
			ResidentKey:      protocol.ResidentKeyRequirementRequired,
			UserVerification: protocol.VerificationPreferred,
		}),
	)
	if err != nil {
		return ceremony{}, fmt.Errorf("authn: beginning a passkey registration: %w", err)
	}
	return a.storeCeremony(ctx, ceremonyRegister, username, verified, session, creation)
}

// finishRegistration verifies the browser's response (the JSON of a
// PublicKeyCredential) to the registration of handle, begun by username,
// and stores the passkey under name, bound to the hash checked when it
// began. The challenge is used whatever the outcome.
func (a *Authenticator) finishRegistration(ctx context.Context, username, handle, name string, response []byte) (PasskeyInfo, error) {
	if a.passkeys == nil {
		return PasskeyInfo{}, ErrPasskeysDisabled
	}
	// The name first: a bad one leaves the ceremony to be finished with
	// another.
	if err := checkPasskeyName(name); err != nil {
		return PasskeyInfo{}, err
	}
	c, session, err := a.takeCeremony(ctx, handle, ceremonyRegister)
	if err != nil {
		return PasskeyInfo{}, err
	}
	if c.Username != username {
		return PasskeyInfo{}, fmt.Errorf("%w: begun by another user", ErrPasskeyFailed)
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(response)
	if err != nil {
		return PasskeyInfo{}, fmt.Errorf("%w: %w", ErrPasskeyFailed, err)
	}
	user := &webauthnUser{handle: session.UserID, name: username}
	cred, err := a.passkeys.wa.CreateCredential(user, session, parsed)
	if err != nil {
		return PasskeyInfo{}, fmt.Errorf("%w: %w", ErrPasskeyFailed, err)
	}
	k := model.Passkey{
		CredentialID: base64.RawURLEncoding.EncodeToString(cred.ID), Username: username, Name: name,
		UserHandle: base64.RawURLEncoding.EncodeToString(session.UserID), PublicKey: cred.PublicKey,
		SignCount: int64(cred.Authenticator.SignCount), BackupEligible: cred.Flags.BackupEligible,
		BackupState: cred.Flags.BackupState, UserVerified: cred.Flags.UserVerified,
		AttestationType: cred.AttestationType, CreatedAt: unixSeconds(a.now()),
	}
	if !bytes.Equal(cred.Authenticator.AAGUID, make([]byte, len(cred.Authenticator.AAGUID))) {
		k.AAGUID = hex.EncodeToString(cred.Authenticator.AAGUID)
	}
	var transports []string
	for _, t := range cred.Transport {
		if s := string(t); s != "" && !strings.ContainsAny(s, ",") && len(s) <= 32 && len(transports) < 8 {
			transports = append(transports, s)
		}
	}
	k.Transports = strings.Join(transports, ",")
	written, err := a.store.insertPasskey(ctx, &k, c.UserHash)
	switch {
	case err != nil:
		return PasskeyInfo{}, err
	case !written:
		return PasskeyInfo{}, a.passkeyNotAdded(ctx, k)
	}
	a.emit(ctx, Event{Type: EventPasskeyAdded, Username: username})
	return passkeyInfo(k), nil
}

// passkeyNotAdded tells why a verified passkey was not stored: its name
// or credential taken, or the account changed (a new password, a
// deletion) since the registration began.
func (a *Authenticator) passkeyNotAdded(ctx context.Context, k model.Passkey) error {
	if taken, err := a.store.passkeyNameTaken(ctx, k.Username, k.Name, k.CredentialID); err != nil {
		return err
	} else if taken {
		return fmt.Errorf("%w: %q", ErrPasskeyExists, k.Name)
	}
	if exists, err := a.store.passkeyExists(ctx, k.CredentialID); err != nil {
		return err
	} else if exists {
		return fmt.Errorf("%w: this authenticator's credential", ErrPasskeyExists)
	}
	return fmt.Errorf("%w: the account changed during the registration", ErrPasskeyFailed)
}

// beginPasskeyLogin starts a passwordless sign-in: a discoverable
// credential names its user. User verification is required: the passkey is
// then the only factor.
func (a *Authenticator) beginPasskeyLogin(ctx context.Context) (ceremony, error) {
	if a.passkeys == nil {
		return ceremony{}, ErrPasskeysDisabled
	}
	assertion, session, err := a.passkeys.wa.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return ceremony{}, fmt.Errorf("authn: beginning a passkey sign-in: %w", err)
	}
	return a.storeCeremony(ctx, ceremonyLogin, "", "", session, assertion)
}

// finishPasskeyLogin verifies the browser's assertion (the JSON of a
// PublicKeyCredential) for the sign-in of handle, records the passkey's
// use, and returns the proof of a passwordless sign-in: the user, the hash
// the session is bound to, and the passkey's lock rule (lockAdminOnly).
// Every failure is ErrPasskeyFailed (reported, with the user when the
// credential was known), or a database error: an unknown credential is
// verified against a dummy key, so that it costs what a known one does.
// The passkey must still be bound to its user's hash, and no
// administrator's Lock may hold; a lockout by failed passwords does not
// stop it.
func (a *Authenticator) finishPasskeyLogin(ctx context.Context, handle string, response []byte) (loginProof, error) {
	if a.passkeys == nil {
		return loginProof{}, ErrPasskeysDisabled
	}
	fail := func(username string, reason Reason, err error) (loginProof, error) {
		a.emit(ctx, Event{Type: EventLoginFailed, Username: username, Reason: reason})
		return loginProof{}, err
	}
	_, session, err := a.takeCeremony(ctx, handle, ceremonyLogin)
	switch {
	case errors.Is(err, ErrPasskeyFailed):
		return fail("", ReasonPasskeyFailed, err)
	case err != nil:
		return fail("", ReasonError, err)
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		return fail("", ReasonMalformedHeader, fmt.Errorf("%w: %w", ErrPasskeyFailed, err))
	}
	var row passkeyRow
	var known bool
	var lookupErr error
	lookup := func(rawID, userHandle []byte) (webauthn.User, error) {
		row, known, lookupErr = a.lookupPasskey(ctx, rawID, userHandle)
		if lookupErr != nil {
			return nil, lookupErr
		}
		return a.passkeyUser(row, known, rawID, userHandle)
	}
	_, cred, err := a.passkeys.wa.ValidatePasskeyLogin(lookup, session, parsed)
	switch {
	case lookupErr != nil:
		return fail("", ReasonError, lookupErr)
	case err != nil && known:
		return fail(row.Username, ReasonPasskeyFailed, fmt.Errorf("%w: %w", ErrPasskeyFailed, err))
	case err != nil:
		return fail("", ReasonPasskeyFailed, fmt.Errorf("%w: %w", ErrPasskeyFailed, err))
	case !known: // verified against the dummy key: cannot happen
		return fail("", ReasonPasskeyFailed, fmt.Errorf("%w: unknown credential", ErrPasskeyFailed))
	}
	if err := a.passkeyUsable(ctx, row, cred, true); err != nil {
		return loginProof{}, err
	}
	return loginProof{username: row.Username, hash: row.passwordHash, method: MethodPasskey,
		lock: lockAdminOnly, credentialID: row.CredentialID}, nil
}

// createPasskeySession stores the session of a passwordless sign-in that
// proved p and returns its token, provided, in the insert itself, that
// the passkey is still there and bound to the user's hash (p.hash) and no
// administrator's Lock holds (errSessionRefused otherwise).
func (a *Authenticator) createPasskeySession(ctx context.Context, p loginProof, remember bool, client sessionClient) (string, error) {
	token := newSessionToken()
	ended, err := a.store.createPasskeySession(ctx, p.credentialID, tokenHash(token), p.username, p.hash, a.now(), a.lifetimeOf(remember), remember, client, a.maxSessions, a.idleTimeouts())
	if err != nil {
		return "", err
	}
	a.stats.sessionsStarted.Add(1)
	a.emitEnded(ctx, p.username, ReasonSessionLimit, ended)
	return token, nil
}

// beginPasskeyFactor starts the second step of a login whose password was
// right, p, with one of the user's passkeys.
func (a *Authenticator) beginPasskeyFactor(ctx context.Context, p pendingLogin) (ceremony, error) {
	if a.passkeys == nil {
		return ceremony{}, ErrPasskeysDisabled
	}
	user, _, err := a.factorUser(ctx, p.username, nil)
	if err != nil {
		return ceremony{}, err
	}
	assertion, session, err := a.passkeys.wa.BeginLogin(user, webauthn.WithUserVerification(protocol.VerificationPreferred))
	if err != nil {
		return ceremony{}, fmt.Errorf("authn: beginning a passkey step: %w", err)
	}
	return a.storeCeremony(ctx, ceremonySecondFactor, p.username, p.userHash, session, assertion)
}

// factorUser is username's passkeys as go-webauthn sees them, under the
// user handle handle (nil: their own), with the rows; ErrPasskeyFailed
// when the user has none.
func (a *Authenticator) factorUser(ctx context.Context, username string, handle []byte) (*webauthnUser, []model.Passkey, error) {
	keys, err := a.store.listPasskeys(ctx, username)
	if err != nil {
		return nil, nil, err
	}
	if len(keys) == 0 {
		return nil, nil, fmt.Errorf("%w: %s has no passkey", ErrPasskeyFailed, quoteName(username))
	}
	user := &webauthnUser{name: username, handle: handle}
	for _, k := range keys {
		c, err := credentialOf(k)
		if err != nil {
			return nil, nil, err
		}
		user.creds = append(user.creds, c)
		if user.handle == nil {
			if user.handle, err = base64.RawURLEncoding.DecodeString(k.UserHandle); err != nil {
				return nil, nil, fmt.Errorf("authn: stored user handle: %w", err)
			}
		}
	}
	return user, keys, nil
}

// finishPasskeyFactor verifies the assertion of the second step begun
// for the pending login p (handle: its challenge) with one of the user's
// passkeys, records its use and returns the step's proof, which finishes
// the login as a code does. The password was checked: a passkey unbound by
// a hash written outside the library still serves here. Every failure is
// ErrPasskeyFailed, reported, or a database error.
func (a *Authenticator) finishPasskeyFactor(ctx context.Context, p pendingLogin, handle string, response []byte) (loginProof, error) {
	if a.passkeys == nil {
		return loginProof{}, ErrPasskeysDisabled
	}
	fail := func(reason Reason, err error) (loginProof, error) {
		a.emit(ctx, Event{Type: EventLoginFailed, Username: p.username, Reason: reason})
		return loginProof{}, err
	}
	c, session, err := a.takeCeremony(ctx, handle, ceremonySecondFactor)
	switch {
	case errors.Is(err, ErrPasskeyFailed):
		return fail(ReasonPasskeyFailed, err)
	case err != nil:
		return fail(ReasonError, err)
	case c.Username != p.username || c.UserHash != p.userHash:
		return fail(ReasonPasskeyFailed, fmt.Errorf("%w: begun for another login", ErrPasskeyFailed))
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		return fail(ReasonMalformedHeader, fmt.Errorf("%w: %w", ErrPasskeyFailed, err))
	}
	user, keys, err := a.factorUser(ctx, p.username, session.UserID)
	switch {
	case errors.Is(err, ErrPasskeyFailed):
		return fail(ReasonPasskeyFailed, err)
	case err != nil:
		return fail(ReasonError, err)
	}
	// Two first registrations at once may each have drawn a handle: the
	// assertion is checked under the handle of the passkey it names.
	rawID := base64.RawURLEncoding.EncodeToString(parsed.RawID)
	for _, k := range keys {
		if h, err := base64.RawURLEncoding.DecodeString(k.UserHandle); err == nil && k.CredentialID == rawID {
			user.handle, session.UserID = h, h
		}
	}
	cred, err := a.passkeys.wa.ValidateLogin(user, session, parsed)
	if err != nil {
		return fail(ReasonPasskeyFailed, fmt.Errorf("%w: %w", ErrPasskeyFailed, err))
	}
	id := base64.RawURLEncoding.EncodeToString(cred.ID)
	for _, k := range keys {
		if k.CredentialID == id {
			row := passkeyRow{Passkey: k, passwordHash: k.UserHash} // no binding asked
			if err := a.passkeyUsable(ctx, row, cred, false); err != nil {
				return loginProof{}, err
			}
			return loginProof{username: p.username, hash: p.userHash, method: MethodPasskey, pending: p.handleHash}, nil
		}
	}
	return fail(ReasonPasskeyFailed, fmt.Errorf("%w: unknown credential", ErrPasskeyFailed))
}

// lookupPasskey reads the passkey of a credential ID that an assertion
// names, and reports whether it is there and names the same user handle.
func (a *Authenticator) lookupPasskey(ctx context.Context, rawID, userHandle []byte) (passkeyRow, bool, error) {
	row, err := a.store.passkeyByID(ctx, base64.RawURLEncoding.EncodeToString(rawID))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return row, false, nil
	case err != nil:
		return row, false, err
	}
	return row, row.UserHandle == base64.RawURLEncoding.EncodeToString(userHandle), nil
}

// passkeyUser is the user go-webauthn verifies an assertion against: the
// passkey's, or, for an unknown credential, one with the dummy key under
// the ID asked for, against which the assertion is verified all the same
// and fails.
func (a *Authenticator) passkeyUser(row passkeyRow, known bool, rawID, userHandle []byte) (webauthn.User, error) {
	if !known {
		return &webauthnUser{handle: userHandle, creds: []webauthn.Credential{{
			ID: rawID, PublicKey: a.passkeys.dummyKey,
			Flags: webauthn.CredentialFlags{UserPresent: true, BackupEligible: true},
		}}}, nil
	}
	c, err := credentialOf(row.Passkey)
	if err != nil {
		return nil, err
	}
	return &webauthnUser{handle: userHandle, name: row.Username, creds: []webauthn.Credential{c}}, nil
}

// passkeyUsable applies the rules after a verified assertion: a sign count
// that did not go up (where counters are used) is refused and logged; for
// a passwordless sign-in, the passkey must be bound to its user's hash and
// no administrator's Lock may hold; its use is then recorded, provided no
// other sign-in recorded one since it was read (nor removed the passkey).
func (a *Authenticator) passkeyUsable(ctx context.Context, row passkeyRow, cred *webauthn.Credential, passwordless bool) error {
	fail := func(reason Reason, err error) error {
		a.emit(ctx, Event{Type: EventLoginFailed, Username: row.Username, Reason: reason})
		return err
	}
	now := a.now()
	if cred.Authenticator.CloneWarning {
		a.logger.WarnContext(ctx, "authn: passkey sign count did not go up: a cloned authenticator? sign-in refused",
			slog.String("user", row.Username), slog.String("passkey", row.Name), slog.Int64("stored", row.SignCount))
		return fail(ReasonPasskeyCounter, fmt.Errorf("%w: sign count did not go up", ErrPasskeyFailed))
	}
	// A second step checks neither: the password was checked, and the
	// lock rule is the password's, which finish applies.
	if passwordless && row.UserHash != row.passwordHash {
		return fail(ReasonChanged, fmt.Errorf("%w: the password changed outside the library since the passkey was added", ErrPasskeyFailed))
	}
	if passwordless && row.userLock.Valid {
		if _, forever := lockTime(row.userLock.Float64); forever || adminLocked(tokenRow{userLock: row.userLock, adminLock: row.adminLock}, now) {
			t, _ := lockTime(row.userLock.Float64)
			return fail(ReasonLocked, fmt.Errorf("%w: %w", ErrPasskeyFailed, &LockedError{Until: t, Forever: forever}))
		}
	}
	ok, err := a.store.recordPasskeyUse(ctx, passkeyUse{
		credentialID: row.CredentialID, oldCount: row.SignCount, newCount: int64(cred.Authenticator.SignCount),
		backupState: cred.Flags.BackupState, userVerfied: cred.Flags.UserVerified, now: now,
	})
	switch {
	case err != nil:
		return fail(ReasonError, err)
	case !ok:
		return fail(ReasonPasskeyFailed, fmt.Errorf("%w: removed, or used by another sign-in meanwhile", ErrPasskeyFailed))
	}
	return nil
}

// cleanChallenges is the background cleanup of the passkey ceremonies
// begun and never finished, every SessionCleanupInterval: each is refused
// once expired anyway; this keeps the table small.
func (a *Authenticator) cleanChallenges(ctx context.Context) {
	if _, err := a.store.deleteExpiredChallenges(ctx, a.now()); err != nil && ctx.Err() == nil {
		a.logger.ErrorContext(ctx, "authn: passkey challenge cleanup failed", "error", err)
	}
}
