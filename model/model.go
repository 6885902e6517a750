// Package model holds the bun models of the tables that package authn reads and
// writes. It is data only: the rules live in authn.
package model

import "github.com/uptrace/bun"

// User is one row of the users table, as stored. Package authn reads and
// writes it only in its store; its API shows a user as an authn.Account
// (what an administrator sees, no hash) or an authn.UserRecord (a row moving
// between databases, hash included). The table is exactly the one the
// Python application ("minimost") created:
//
//	CREATE TABLE users (username TEXT PRIMARY KEY, password_hash TEXT NOT NULL,
//	                    failed_attempts INTEGER DEFAULT 0, lockout_until REAL)
//
// LockoutUntil has no type tag on purpose: bun maps *float64 to REAL on SQLite
// and to DOUBLE PRECISION on PostgreSQL, whose 4-byte "real" would round a Unix
// time by about a minute.
type User struct {
	bun.BaseModel `bun:"table:users"`

	// Username matches [A-Za-z0-9_-]{1,32}; it is case-sensitive.
	Username string `bun:"username,pk,type:text"`
	// PasswordHash is a self-describing encoded hash (werkzeug, PHC or bcrypt).
	PasswordHash string `bun:"password_hash,notnull,type:text"`
	// FailedAttempts counts consecutive failures since the last success.
	// NULL, which the Python application could leave, reads as 0.
	FailedAttempts *int64 `bun:"failed_attempts,default:0"`
	// LockoutUntil is the Unix time, in seconds, until which logins are
	// refused; NULL means not locked.
	LockoutUntil *float64 `bun:"lockout_until"`
}

// Session is one row of the sessions table: a login session of a user.
// The cookie holds a random token; only its SHA-256 is stored here, so a copy
// of the database does not let anyone resume a session.
type Session struct {
	bun.BaseModel `bun:"table:sessions"`

	// TokenHash is the hex-encoded SHA-256 of the session token.
	TokenHash string `bun:"token_hash,pk,type:text"`
	// Username is the user the session belongs to.
	Username string `bun:"username,notnull,type:text"`
	// CreatedAt, LastSeen and ExpiresAt are Unix times in seconds.
	// ExpiresAt is the absolute end of the session; the idle end is
	// LastSeen plus the configured idle timeout.
	CreatedAt float64 `bun:"created_at,notnull"`
	LastSeen  float64 `bun:"last_seen,notnull"`
	ExpiresAt float64 `bun:"expires_at,notnull"`

	// ClientNet and UserAgent tell the user which device a session is
	// (see authn.SessionInfo): the client's network, its address cut to
	// /24 (IPv4) or /48 (IPv6), and its User-Agent, cut short and without
	// control characters. NULL for sessions made before the columns were
	// added, or outside an HTTP request.
	ClientNet string `bun:"client_net,type:text,nullzero"`
	UserAgent string `bun:"user_agent,type:text,nullzero"`

	// Remembered is true for a session started with "remember me": its
	// ExpiresAt is the longer lifetime of those, and its idle end may be
	// another. Added after the first release: authn adds the column to an
	// older table when it opens it, false for the sessions already there.
	Remembered bool `bun:"remembered,notnull,default:false"`

	// UserHash is the user's password_hash when the session was made: the
	// session is valid only while the user's row still has it, so a hash
	// written outside authn (the Python application, SQL) ends it, and a
	// name deleted and created again inherits none of it. authn's own
	// changes carry it over where they keep the session. Added after the
	// first release: NULL (no session) in an older row until authn binds
	// it to the user's hash as it opens the table.
	UserHash string `bun:"user_hash,type:text,nullzero"`
}

// Token is one row of the tokens table: an app token of a user, which
// authn.BasicAuth accepts in place of the password (see
// authn.Authenticator.CreateToken). Only the token's SHA-256 is stored: a
// copy of the database lets nobody use it. A user's tokens have distinct
// names.
type Token struct {
	bun.BaseModel `bun:"table:tokens"`

	// TokenHash is the hex-encoded SHA-256 of the token.
	TokenHash string `bun:"token_hash,pk,type:text"`
	// Username is the user the token acts for; Name tells the user's
	// tokens apart ("ci", "laptop git").
	Username string `bun:"username,notnull,type:text,unique:tokens_username_name"`
	Name     string `bun:"name,notnull,type:text,unique:tokens_username_name"`
	// CreatedAt and LastUsed are Unix times in seconds; LastUsed is NULL
	// until the first use, and written at most once a minute.
	CreatedAt float64  `bun:"created_at,notnull"`
	LastUsed  *float64 `bun:"last_used"`

	// UserHash is the user's password_hash the token is bound to, as
	// Session.UserHash: a hash written outside authn stops the token,
	// while authn's own SetPassword and ChangePassword carry it over.
	UserHash string `bun:"user_hash,type:text,nullzero"`
}

// AdminLock is one row of the admin_locks table: the lock that
// authn.Authenticator.Lock last wrote into a user's lockout_until. The
// users table, the Python application's, stores a lock the same way
// whether failed passwords or an administrator set it; this table tells
// them apart, so that a failure lockout leaves the user's app tokens
// working while an administrator's lock stops them. The lock is the
// administrator's only while the user's lockout_until still holds exactly
// this value.
type AdminLock struct {
	bun.BaseModel `bun:"table:admin_locks"`

	Username string `bun:"username,pk,type:text"`
	// LockoutUntil is the value written to users.lockout_until, as stored
	// there (no type tag, as User.LockoutUntil).
	LockoutUntil float64 `bun:"lockout_until,notnull"`
}

// ClientBudget is one row of the client_budgets table: what is left of one
// client's budget of failed attempts (or of registrations), kept in the
// database so that every instance on it counts one budget. It is a token
// bucket: Tokens as of UpdatedAt, earned back at a steady rate since.
// Rows are the library's own, keyed by the budget's name and the client's
// network; a row whose bucket has refilled is as good as none and is
// deleted.
type ClientBudget struct {
	bun.BaseModel `bun:"table:client_budgets"`

	// Budget names the budget: "failures", "registrations" or
	// "passkey_starts".
	Budget string `bun:"budget,pk,type:text"`
	// Client is the client's network, as netip.Prefix writes it
	// ("192.0.2.7/32", "2001:db8::/64").
	Client string `bun:"client,pk,type:text"`
	// Tokens is what was left at UpdatedAt; it may be fractional.
	Tokens float64 `bun:"tokens,notnull"`
	// UpdatedAt is a Unix time in seconds (REAL on SQLite, DOUBLE
	// PRECISION on PostgreSQL, as User.LockoutUntil).
	UpdatedAt float64 `bun:"updated_at,notnull"`
}

// Email is one row of the emails table: a user's verified email address,
// where a password reset link may be sent. An address counts only once its
// owner followed the verification link mailed to it: an address waiting
// for that lives in its RecoveryToken, not here. A verified address
// belongs to one account (AddressKey is unique).
type Email struct {
	bun.BaseModel `bun:"table:emails"`

	Username string `bun:"username,pk,type:text"`
	// Address is the address as its owner typed it.
	Address string `bun:"address,notnull,type:text"`
	// AddressKey is Address lower-cased: addresses that differ only in
	// case are one address, for uniqueness and for a reset by address.
	AddressKey string `bun:"address_key,notnull,unique,type:text"`
	// VerifiedAt is a Unix time in seconds.
	VerifiedAt float64 `bun:"verified_at,notnull"`
	// UserHash is the user's password_hash when the address was verified,
	// as Session.UserHash: a hash written outside authn (the Python
	// application, SQL) voids the address, so that a name deleted and
	// created again outside inherits none. authn's own changes of
	// password carry it over.
	UserHash string `bun:"user_hash,notnull,type:text"`
}

// RecoveryToken is one row of the recovery_tokens table: a password reset
// link, or the link that verifies an email address. Only the SHA-256 of
// the link's random token is stored; a row is consumed (deleted) by the
// one statement that uses it, on any instance.
type RecoveryToken struct {
	bun.BaseModel `bun:"table:recovery_tokens"`

	TokenHash string `bun:"token_hash,pk,type:text"`
	// Kind is "reset" or "verify".
	Kind     string `bun:"kind,notnull,type:text"`
	Username string `bun:"username,notnull,type:text"`
	// UserHash is the user's password_hash when the link was made: the
	// link works only while the user still has it, so that a change of
	// password in between voids it.
	UserHash string `bun:"user_hash,notnull,type:text"`
	// Address is, for a verification, the address being verified.
	Address string `bun:"address,type:text,nullzero"`
	// CreatedAt and ExpiresAt are Unix times in seconds.
	CreatedAt float64 `bun:"created_at,notnull"`
	ExpiresAt float64 `bun:"expires_at,notnull"`
}

// RecoveryLimit is one row of the recovery_limits table: how many reset
// requests one key (an account or what was typed, or a client's network,
// as a SHA-256) made in the current window. Every instance counts in the
// same rows.
type RecoveryLimit struct {
	bun.BaseModel `bun:"table:recovery_limits"`

	KeyHash string `bun:"key_hash,pk,type:text"`
	// WindowStart is a Unix time in seconds.
	WindowStart float64 `bun:"window_start,notnull"`
	Count       int64   `bun:"count,notnull"`
}

// Passkey is one row of the passkeys table: a WebAuthn credential of a
// user (see authn.Passkeys). It holds no secret: the public key verifies
// what only the authenticator can sign. A user's passkeys have distinct
// names.
type Passkey struct {
	bun.BaseModel `bun:"table:passkeys"`

	// CredentialID is the credential's ID, base64url without padding.
	CredentialID string `bun:"credential_id,pk,type:text"`
	Username     string `bun:"username,notnull,type:text,unique:passkeys_username_name"`
	Name         string `bun:"name,notnull,type:text,unique:passkeys_username_name"`
	// UserHandle is the WebAuthn user handle the credential was made for
	// (random, the same for all of a user's passkeys), base64url: a
	// discoverable credential names its user by it.
	UserHandle string `bun:"user_handle,notnull,type:text"`
	// PublicKey is the COSE public key, as the authenticator sent it.
	PublicKey []byte `bun:"public_key,notnull"`
	// SignCount is the authenticator's signature counter as last seen;
	// 0 for authenticators that keep none (synced passkeys).
	SignCount int64 `bun:"sign_count,notnull,default:0"`
	// AAGUID names the authenticator's model (hex), or is "" (all zero).
	AAGUID string `bun:"aaguid,type:text,nullzero"`
	// Transports are the transports the browser reported, comma-separated.
	Transports string `bun:"transports,type:text,nullzero"`
	// BackupEligible and BackupState are the BE and BS flags as last seen:
	// a synced passkey may change BS (go-webauthn#335).
	BackupEligible bool `bun:"backup_eligible,notnull,default:false"`
	BackupState    bool `bun:"backup_state,notnull,default:false"`
	// UserVerified is whether the authenticator has verified the user
	// (UV) at registration or any use since.
	UserVerified bool `bun:"user_verified,notnull,default:false"`
	// AttestationType is what the registration's attestation was
	// ("none" for most passkeys).
	AttestationType string `bun:"attestation_type,type:text,nullzero"`
	// CreatedAt and LastUsed are Unix times in seconds; LastUsed is NULL
	// until the first sign-in.
	CreatedAt float64  `bun:"created_at,notnull"`
	LastUsed  *float64 `bun:"last_used"`
	// UserHash is the user's password_hash the passkey is bound to, as
	// Token.UserHash: it signs in without a password only while the user's
	// row still has it.
	UserHash string `bun:"user_hash,type:text,nullzero"`
}

// PasskeyChallenge is one row of the passkey_challenges table: a WebAuthn
// ceremony begun and not yet finished, so that any instance can finish it.
// It is keyed by the SHA-256 of a random handle the browser holds in a
// cookie, used once (deleted as it is read) and short-lived.
type PasskeyChallenge struct {
	bun.BaseModel `bun:"table:passkey_challenges"`

	HandleHash string `bun:"handle_hash,pk,type:text"`
	// Kind is the ceremony: "register", "login" (passwordless) or
	// "second_factor".
	Kind string `bun:"kind,notnull,type:text"`
	// Username is the user of a registration or a second factor; "" for
	// a passwordless sign-in, which learns it from the credential.
	Username string `bun:"username,type:text,nullzero"`
	// UserHash is, for a registration, the hash of the password checked
	// to begin it: the passkey is bound to it.
	UserHash string `bun:"user_hash,type:text,nullzero"`
	// Data is go-webauthn's SessionData as JSON.
	Data      string  `bun:"data,notnull,type:text"`
	ExpiresAt float64 `bun:"expires_at,notnull"`
}

// PendingLogin is one row of the pending_logins table: a login whose
// password was right, on an account with a second factor, waiting for that
// factor. The browser holds a random handle in a cookie of its own; only
// the handle's SHA-256 is stored. A row lives a few minutes and is
// consumed by the step that finishes the login, on any instance.
type PendingLogin struct {
	bun.BaseModel `bun:"table:pending_logins"`

	// HandleHash is the hex-encoded SHA-256 of the handle in the cookie.
	HandleHash string `bun:"handle_hash,pk,type:text"`
	// Username is the user whose password was verified.
	Username string `bun:"username,notnull,type:text"`
	// UserHash is the password_hash verified: the login finishes only
	// while the user's row still has it, as Session.UserHash.
	UserHash string `bun:"user_hash,notnull,type:text"`
	// CreatedAt and ExpiresAt are Unix times in seconds.
	CreatedAt float64 `bun:"created_at,notnull"`
	ExpiresAt float64 `bun:"expires_at,notnull"`
	// Remember and Next are what the password step asked for: "remember
	// me" and where to go after signing in (a local path, or NULL).
	Remember bool   `bun:"remember,notnull,default:false"`
	Next     string `bun:"next,type:text,nullzero"`
}

// TOTPSecret is one row of the totp_secrets table: a user's TOTP second
// factor (RFC 6238). The secret is never stored in the clear: Sealed is
// AES-GCM under a key kept outside the database, bound to the username.
type TOTPSecret struct {
	bun.BaseModel `bun:"table:totp_secrets"`

	Username string `bun:"username,pk,type:text"`
	// Sealed is the sealed secret, base64url (nonce and ciphertext).
	Sealed string `bun:"sealed,notnull,type:text"`
	// Confirmed is false while an enrolment waits for its first code: the
	// factor is active only once true.
	Confirmed bool `bun:"confirmed,notnull,default:false"`
	// LastStep is the last time step (Unix time / 30 s) whose code was
	// accepted: a code of that step or an earlier one is refused, so that
	// each is used once (RFC 6238 §5.2).
	LastStep int64 `bun:"last_step,notnull,default:0"`
	// CreatedAt is a Unix time in seconds.
	CreatedAt float64 `bun:"created_at,notnull"`
}

// RecoveryCode is one row of the recovery_codes table: an unused recovery
// code of a user's second factor, stored as the SHA-256 of the username
// and the code, and deleted when used.
type RecoveryCode struct {
	bun.BaseModel `bun:"table:recovery_codes"`

	CodeHash string `bun:"code_hash,pk,type:text"`
	Username string `bun:"username,notnull,type:text"`
}
