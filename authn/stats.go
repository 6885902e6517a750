package authn

import "sync/atomic"

// Stats are counters of what an Authenticator did since it was made, for
// monitoring: each only grows, and a restart starts them at zero. They are
// of this Authenticator alone (not of every process sharing the database).
// The JSON names of the fields are the field names, so that they read the
// same in expvar's /debug/vars and in Go.
//
// Each event is counted once, where it is reported (the Event passed to
// Config.OnEvent, whether or not a log line was written for it), so the
// counters agree with OnEvent. Counters that say "request" count HTTP
// requests to the handlers of this package; the others count calls of the
// Go API too.
type Stats struct {
	// LoginSucceeded counts full password verifications that signed a user
	// in (EventLoginSucceeded): a login that started a session, a Basic
	// credential checked in full, a successful Authenticate. A request
	// with a remembered Basic credential is a BasicCacheHits instead.
	LoginSucceeded int64 `json:"LoginSucceeded"`
	// LoginFailed counts logins refused for their credentials
	// (EventLoginFailed, answered 401 over HTTP): unknown user, malformed
	// name, password or header, wrong password (a wrong "user:token"
	// included), unknown Bearer token, locked account, unusable
	// stored hash, or an account changed during the login. Refusals for
	// the client's budget (Throttled), for hashing capacity (Busy) or for a
	// database error (Unavailable) are not failures of the credentials and
	// are not counted here.
	LoginFailed int64 `json:"LoginFailed"`
	// Locked counts the logins of LoginFailed refused because the account
	// was locked (Reason "locked"): a part of LoginFailed, not added to it.
	Locked int64 `json:"Locked"`
	// Lockouts counts failed logins that locked their account (EventLockout):
	// the one at LockoutThreshold. An administrator's Lock is not counted.
	Lockouts int64 `json:"Lockouts"`
	// Throttled counts requests refused (429) because their client address
	// was over its failure or registration budget (EventLoginFailed with
	// Reason "throttled"), logged or not.
	Throttled int64 `json:"Throttled"`
	// Busy counts requests answered 503 because no hashing capacity freed
	// within HashWait, or a login's claim waited that long for a lock held
	// by another transaction (ErrBusy): logins, Basic requests,
	// registrations.
	Busy int64 `json:"Busy"`
	// Unavailable counts requests answered 503 for any other reason: a
	// database error, a database file missing or broken.
	Unavailable int64 `json:"Unavailable"`
	// BasicCacheHits counts Basic requests let through by a remembered
	// credential, with one read of the user's row (or none: ReadsSkipped)
	// and no hash.
	BasicCacheHits int64 `json:"BasicCacheHits"`
	// BasicCacheMisses counts well-formed Basic credentials that had to be
	// checked in full: not remembered, expired, or remembered against a
	// password, lock or account that has changed since. Zero when the
	// cache is disabled (BasicAuthCacheTTL < 0).
	BasicCacheMisses int64 `json:"BasicCacheMisses"`
	// TokenAccepted counts requests let through by an app token
	// (user:token or Bearer), with one read (or none: ReadsSkipped) and no
	// hash. A wrong token is a LoginFailed.
	TokenAccepted int64 `json:"TokenAccepted"`
	// SessionsStarted counts sessions created (a successful login of the
	// login route, and any other new session row).
	SessionsStarted int64 `json:"SessionsStarted"`
	// SessionsEnded counts sessions ended by a logout, by a new login
	// from a browser that still had a session (which replaces it), by
	// their user (SessionsHandler, EndSessions) and by MaxSessionsPerUser.
	// The sessions deleted with their user's account, lock or new password
	// are not counted.
	SessionsEnded int64 `json:"SessionsEnded"`
	// SessionsExpired counts expired sessions deleted by the background
	// cleanup or by DeleteExpiredSessions.
	SessionsExpired int64 `json:"SessionsExpired"`
	// Registered counts accounts created: Register, the registration
	// route, and ImportUser of a new name (EventRegistered).
	Registered int64 `json:"Registered"`
	// PasswordChanged counts passwords set on existing accounts
	// (EventPasswordChanged): SetPassword, ChangePassword (and the
	// password route), and ImportUser over an existing name.
	PasswordChanged int64 `json:"PasswordChanged"`
	// CrossOriginRefused counts POSTs refused (403) by the cross-origin
	// protection, logged or not: CSRF attempts, or a proxy that rewrites
	// the Host header.
	CrossOriginRefused int64 `json:"CrossOriginRefused"`
	// ReadsSkipped counts the reads of a user's row behind a remembered
	// Basic credential, of a session and of an app token that were
	// answered from memory because nothing had been committed to the
	// database since the same read was last made (SQLite in WAL mode: see
	// Reads from memory in the package documentation). The request is
	// then judged on that row as on one read: let through or refused,
	// counted as such, and a session's or token's last use written when
	// due.
	ReadsSkipped int64 `json:"ReadsSkipped"`
	// CodeFailed counts the logins of LoginFailed refused at the second
	// step for their code (a part of LoginFailed, not added to it): a
	// wrong, replayed or malformed TOTP or recovery code, or a second step
	// with no pending login.
	CodeFailed int64 `json:"CodeFailed"`
	// SecondFactorRequired counts the logins of LoginFailed refused
	// because the right password of an account with a second factor came
	// alone (Authenticate, BasicAuth, forward auth).
	SecondFactorRequired int64 `json:"SecondFactorRequired"`
	// SecondFactorPending counts pending logins started: right passwords
	// of accounts with a second factor at the login route.
	SecondFactorPending int64 `json:"SecondFactorPending"`
}

// counters are the atomics behind Stats.
type counters struct {
	loginSucceeded, loginFailed, locked, lockouts atomic.Int64
	throttled, busy, unavailable                  atomic.Int64
	basicCacheHits, basicCacheMisses              atomic.Int64
	tokenAccepted                                 atomic.Int64
	sessionsStarted, sessionsEnded                atomic.Int64
	sessionsExpired                               atomic.Int64
	registered, passwordChanged                   atomic.Int64
	crossOriginRefused                            atomic.Int64
	readsSkipped                                  atomic.Int64
	codeFailed, secondFactorRequired              atomic.Int64
	secondFactorPending                           atomic.Int64
}

// Stats returns the counters as they are now. It is safe to call
// concurrently with anything; each field is read atomically, though not
// all of them at one instant.
func (a *Authenticator) Stats() Stats {
	c := &a.stats
	return Stats{
		LoginSucceeded:     c.loginSucceeded.Load(),
		LoginFailed:        c.loginFailed.Load(),
		Locked:             c.locked.Load(),
		Lockouts:           c.lockouts.Load(),
		Throttled:          c.throttled.Load(),
		Busy:               c.busy.Load(),
		Unavailable:        c.unavailable.Load(),
		BasicCacheHits:     c.basicCacheHits.Load(),
		BasicCacheMisses:   c.basicCacheMisses.Load(),
		TokenAccepted:      c.tokenAccepted.Load(),
		SessionsStarted:    c.sessionsStarted.Load(),
		SessionsEnded:      c.sessionsEnded.Load(),
		SessionsExpired:    c.sessionsExpired.Load(),
		Registered:         c.registered.Load(),
		PasswordChanged:    c.passwordChanged.Load(),
		CrossOriginRefused: c.crossOriginRefused.Load(),
		ReadsSkipped:       c.readsSkipped.Load(),

		CodeFailed:           c.codeFailed.Load(),
		SecondFactorRequired: c.secondFactorRequired.Load(),
		SecondFactorPending:  c.secondFactorPending.Load(),
	}
}

// event counts e. It is called once per reported event, from record.
func (c *counters) event(e Event) {
	switch e.Type {
	case EventLoginSucceeded:
		c.loginSucceeded.Add(1)
	case EventLockout:
		c.lockouts.Add(1)
	case EventRegistered:
		c.registered.Add(1)
	case EventPasswordChanged:
		c.passwordChanged.Add(1)
	case EventLoginFailed:
		switch e.Reason {
		case ReasonThrottled:
			c.throttled.Add(1)
		case ReasonBusy, ReasonDatabaseBusy, ReasonError:
			// Not the credentials' failure: counted by failClosed, as
			// Busy or Unavailable, with every other 503.
		case ReasonLocked:
			c.locked.Add(1)
			c.loginFailed.Add(1)
		case ReasonWrongCode, ReasonUsedCode, ReasonMalformedCode, ReasonNoPendingLogin:
			c.codeFailed.Add(1)
			c.loginFailed.Add(1)
		case ReasonSecondFactorRequired:
			c.secondFactorRequired.Add(1)
			c.loginFailed.Add(1)
		default:
			c.loginFailed.Add(1)
		}
	}
}
