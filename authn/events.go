package authn

import (
	"context"
	"log/slog"
	"time"
)

// EventType says what happened to an account.
type EventType string

// The events an Authenticator reports.
const (
	EventLoginSucceeded  EventType = "login_succeeded"
	EventLoginFailed     EventType = "login_failed" // Reason says why
	EventLockout         EventType = "lockout"      // the failure that locked the account
	EventUnlock          EventType = "unlock"
	EventLock            EventType = "lock" // an explicit Lock
	EventRegistered      EventType = "registered"
	EventPasswordChanged EventType = "password_changed"
	EventDeleted         EventType = "deleted"
	EventLogout          EventType = "logout"        // one per session ended; Reason says why, unless by LogoutHandler
	EventTokenCreated    EventType = "token_created" // CreateToken; TokenName names it
	EventTokenRevoked    EventType = "token_revoked" // RevokeToken; TokenName names it
	// EventTOTPEnabled: a TOTP second factor was confirmed (TOTP.Confirm).
	EventTOTPEnabled EventType = "totp_enabled"
	// EventTOTPDisabled: a TOTP second factor was removed, by its user
	// (TOTP.Disable) or by an administrator (TOTP.Reset: Reason "reset").
	EventTOTPDisabled EventType = "totp_disabled"
	// EventRecoveryCodeUsed: a recovery code was used up at a login's
	// second step; EventLoginSucceeded follows when the login finishes.
	EventRecoveryCodeUsed EventType = "recovery_code_used"
	// EventPasskeyAdded: a passkey was registered; EventPasskeyRemoved: one
	// was removed (Passkeys().Delete, its route, authctl passkeys remove).
	EventPasskeyAdded   EventType = "passkey_added"
	EventPasskeyRemoved EventType = "passkey_removed"
)

// Reason says why something happened to an account: why a login failed,
// why a session ended, or that a user came from ImportUser.
type Reason string

// Reasons of EventLoginFailed. Clients never see them; logs and OnEvent do.
const (
	ReasonUnknownUser       Reason = "unknown user"
	ReasonMalformedUsername Reason = "malformed username"
	ReasonMalformedPassword Reason = "malformed password"    // empty or over-long
	ReasonMalformedHeader   Reason = "malformed credentials" // a broken Authorization header or body
	ReasonWrongPassword     Reason = "wrong password"
	ReasonLocked            Reason = "locked"
	ReasonBusy              Reason = "hashing capacity exhausted"
	ReasonDatabaseBusy      Reason = "database busy" // not claimed within HashWait: another transaction held the row (PostgreSQL) or the database (SQLite)
	ReasonThrottled         Reason = "throttled"     // the client address is over its failure budget
	ReasonUnusableHash      Reason = "stored hash unusable"
	ReasonChanged           Reason = "password changed during login" // or the user was deleted meanwhile
	ReasonError             Reason = "database error"
	ReasonUnknownToken      Reason = "unknown app token" // a Bearer token of no live token; a wrong user:token is a wrong password

	// ReasonSecondFactorRequired: the right password of an account with a
	// second factor, given alone (Authenticate, BasicAuth, forward auth).
	ReasonSecondFactorRequired Reason = "second factor required"
	// ReasonWrongCode: a wrong TOTP or recovery code at a login's second
	// step (or to disable the factor).
	ReasonWrongCode Reason = "wrong code"
	// ReasonUsedCode: a TOTP code of a time step already used (a replay).
	ReasonUsedCode Reason = "code already used"
	// ReasonMalformedCode: no TOTP or recovery code at all (not counted).
	ReasonMalformedCode Reason = "malformed code"
	// ReasonNoPendingLogin: a second step without a pending login (none,
	// expired, or finished by another request).
	ReasonNoPendingLogin Reason = "no pending login"
	// ReasonPasskeyFailed: a WebAuthn assertion that failed (an unknown,
	// used or expired challenge or credential, a wrong signature).
	ReasonPasskeyFailed Reason = "passkey not verified"
	// ReasonPasskeyCounter: a passkey whose sign count did not go up (a
	// cloned authenticator?).
	ReasonPasskeyCounter Reason = "passkey sign count went back"
)

// ReasonReset is the Reason of the EventTOTPDisabled of TOTP.Reset, an
// administrator's removal.
const ReasonReset Reason = "reset"

// ReasonImported is the Reason of the EventRegistered and
// EventPasswordChanged of a user written by ImportUser.
const ReasonImported Reason = "imported"

// Reasons of EventLogout, one event per session ended, when it was not the
// LogoutHandler's.
const (
	ReasonEndedByUser  Reason = "ended by the user"      // on SessionsHandler's page or API
	ReasonEndSessions  Reason = "all sessions ended"     // by EndSessions (authctl logout)
	ReasonSessionLimit Reason = "over the session limit" // a login beyond HTTPConfig.MaxSessionsPerUser
)

// Event is one thing that happened to an account. It never holds a password
// or a hash.
type Event struct {
	Type     EventType
	Username string // "" when it was malformed: it may be a mistyped password
	Reason   Reason // why a login failed or a session ended; ReasonImported for users written by ImportUser
	ClientIP string // the client's address, for events of HTTP requests
	Time     time.Time
	// TokenName is the name of the app token created or revoked, for
	// EventTokenCreated and EventTokenRevoked: never the token itself.
	TokenName string
}

// emit logs e and passes it to Config.OnEvent. Failures are logged at Warn,
// one line each, so that a tool like fail2ban can act on them (refusals of a
// throttled client excepted: see emitThrottled).
func (a *Authenticator) emit(ctx context.Context, e Event) { a.record(ctx, e, true) }

// record passes e to Config.OnEvent and, if logIt, logs it with extra.
func (a *Authenticator) record(ctx context.Context, e Event, logIt bool, extra ...slog.Attr) {
	e.Time = a.now()
	e.ClientIP = clientIP(ctx)
	level := slog.LevelInfo
	if e.Type == EventLoginFailed || e.Type == EventLockout {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{slog.String("event", string(e.Type)), slog.String("user", e.Username)}
	if e.Reason != "" {
		attrs = append(attrs, slog.String("reason", string(e.Reason)))
	}
	if e.ClientIP != "" {
		attrs = append(attrs, slog.String("client", e.ClientIP))
	}
	if e.TokenName != "" {
		attrs = append(attrs, slog.String("token_name", e.TokenName))
	}
	if logIt {
		a.logger.LogAttrs(ctx, level, "authn: "+string(e.Type), append(attrs, extra...)...)
	}
	a.stats.event(e)
	if a.onEvent != nil {
		a.onEvent(ctx, e)
	}
}
