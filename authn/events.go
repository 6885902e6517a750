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
	EventLogout          EventType = "logout"          // one per session ended; Reason says why, unless by LogoutHandler
	EventTokenCreated    EventType = "token_created"   // CreateToken; TokenName names it
	EventTokenRevoked    EventType = "token_revoked"   // RevokeToken; TokenName names it
	EventPasskeyAdded    EventType = "passkey_added"   // a passkey registered
	EventPasskeyRemoved  EventType = "passkey_removed" // Passkeys().Delete, or its route
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
	ReasonUnknownToken      Reason = "unknown app token"            // a Bearer token of no live token; a wrong user:token is a wrong password
	ReasonPasskeyFailed     Reason = "passkey not verified"         // a WebAuthn assertion that failed: unknown, used or expired challenge or credential, wrong signature
	ReasonPasskeyCounter    Reason = "passkey sign count went back" // a possibly cloned authenticator
)

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
