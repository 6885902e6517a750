package authn

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/minimost/minimost/model"
)

// The login core: every way of signing in goes through it. A step (the
// password, a TOTP code, a recovery code, a passkey) only proves: it
// returns a loginProof or an error, and checks a guessable secret only
// after the lockout's claim (see Authenticator.claim). One function,
// finish, ends every login (it consumes the pending login, resets the
// counter; finishLogin then starts the session and records the event), and
// one function, answerLogin, answers every login request.
//
// How a factor plugs in, without the files of other factors:
//   - As a second factor: a line in secondFactorSQL (an EXISTS on its own
//     table) and in factorNames (the names the password step's answer
//     lists), and its table in userTables. The claim, the hot read of
//     BasicAuth and Account then see it.
//   - Its second step reads the pending login (pendingOf, with the cookie's
//     handle from h.pendingHandle), proves (a guessable secret after
//     claimCode; a secret nobody can guess, such as a passkey's signature,
//     may build its loginProof itself: username, hash = the pending login's
//     userHash, method, pending = its handleHash), then calls
//     h.finishLogin(w, r, proof, pending.remember) and
//     h.answerLogin(w, r, res, err, loginAnswer{...}).
//   - A first factor with no password (a passkey sign-in) builds its
//     loginProof with the user's current hash and no pending login, and
//     ends the same way.

// ErrSecondFactorRequired is the error of a right password on an account
// with a second factor, where the password alone cannot sign in:
// Authenticate, and BasicAuth and ForwardAuthHandler (which answer it as a
// wrong password: 401). The attempt counts toward the lockout as a failure
// does: only a finished login resets the counter. Match it with errors.Is.
var ErrSecondFactorRequired = errors.New("authn: a second factor is required")

// Methods name how a login step proved who the user is, in loginProof.
const (
	MethodPassword     = "password"
	MethodTOTP         = "totp"
	MethodRecoveryCode = "recovery_code"
	MethodPasskey      = "passkey"
)

// factorSet is the set of second factors an account has: bit i is
// secondFactorSQL[i] (see factorsSQL). The claim returns it.
type factorSet int64

// The bits of factorSet.
const (
	factorTOTP    = iota // a confirmed TOTP secret, with its recovery codes
	factorPasskey        // a passkey (see Passkeys)
)

// factorNames are what the answer of a password step lists for each
// factor that the account has ({"second_factor":[...]}): the steps that
// may finish the login. A factor adds its line here and in
// secondFactorSQL.
var factorNames = [][]string{
	factorTOTP:    {MethodTOTP, MethodRecoveryCode},
	factorPasskey: {MethodPasskey},
}

// factorsInUse is f without the factors this Authenticator does not
// offer: passkeys while they are off (no HTTPConfig.WebAuthnRPID), so
// that turning them off leaves their users the password (and any other
// factor), rather than a second step no page offers.
func (a *Authenticator) factorsInUse(f factorSet) factorSet {
	if a.passkeys == nil {
		f &^= 1 << factorPasskey
	}
	return f
}

// has reports whether f has the factor of bit i.
func (f factorSet) has(i int) bool { return f&(1<<i) != 0 }

// names lists the steps that may finish a login on an account with f.
func (f factorSet) names() []string {
	names := []string{}
	for i, n := range factorNames {
		if f.has(i) {
			names = append(names, n...)
		}
	}
	return names
}

// kinds names the factors of f, as Account.SecondFactors lists them: the
// first name of each (see factorNames).
func (f factorSet) kinds() []string {
	var kinds []string
	for i, n := range factorNames {
		if f.has(i) {
			kinds = append(kinds, n[0])
		}
	}
	return kinds
}

// loginProof is what a step that succeeded proves: who, the hash the
// session will be bound to, how, and what finishing the login may do.
type loginProof struct {
	username string
	// hash is the password_hash the step was checked against (a password
	// step's verified hash; a code step's pending login's): the session
	// is bound to it, and finish resets the counter only while the row
	// still has it.
	hash string
	// rehash is the new hash of a password step that the reset stores (see
	// Config.Hasher's NeedsRehash), or "".
	rehash string
	method string
	// ownLock is the lock the step's own claim wrote, when it reached the
	// threshold: the reset may clear that lock and no other.
	ownLock sql.NullFloat64
	// factors are, for a password step, the second factors still to be
	// checked: the login is not finished then (see startPending).
	factors factorSet
	// pending is the pending login the step finishes (the SHA-256 of its
	// handle), or "".
	pending string
	// lock is the lock rule of the step's sign-in: lockAny for a step that
	// follows a password, lockAdminOnly for a passwordless passkey.
	lock lockRule
	// credentialID is the passkey of a passwordless sign-in: its session
	// starts only while the passkey is still there.
	credentialID string
}

// lockRule says which locks refuse a login at its finish.
type lockRule int

const (
	// lockAny: every lock refuses it (the lockout's rule for a password).
	lockAny lockRule = iota
	// lockAdminOnly: an administrator's Lock (or a lock with no end)
	// refuses it; a lockout by failed passwords does not, and stays:
	// a passwordless passkey sign-in guesses no secret, and clearing the
	// counter would hand a password guesser new attempts.
	lockAdminOnly
)

// passwordAlone refuses a password step's proof that names second factors
// still to check, with ErrSecondFactorRequired, and reports the failure:
// what Authenticate, BasicAuth and ForwardAuthHandler answer when an
// account with a second factor gives its password alone.
func (a *Authenticator) passwordAlone(ctx context.Context, p loginProof) error {
	if p.factors == 0 {
		return nil
	}
	a.emit(ctx, Event{Type: EventLoginFailed, Username: p.username, Reason: ReasonSecondFactorRequired})
	return ErrSecondFactorRequired
}

// finish ends a login whose last step proved p: it consumes p's pending
// login (when the step finished one: of two steps racing to finish it,
// one does), then clears the account's counter and the lock the step's
// own claim wrote, stores a re-hash, provided the row still has p.hash
// and is not locked otherwise. After it, p.hash is the hash a session is
// bound to. It reports failures; the caller reports the success.
func (a *Authenticator) finish(ctx context.Context, p *loginProof) error {
	if p.pending != "" {
		ok, err := a.store.consumePending(ctx, p.pending, p.username, p.hash, a.now())
		switch {
		case err != nil:
			a.emit(ctx, Event{Type: EventLoginFailed, Username: p.username, Reason: ReasonError})
			return err
		case !ok:
			a.emit(ctx, Event{Type: EventLoginFailed, Username: p.username, Reason: ReasonNoPendingLogin})
			return ErrInvalidCredentials
		}
	}
	if p.lock != lockAny {
		// A passkey without a password: nothing to reset (see
		// lockAdminOnly); the session's own insert checks its lock rule.
		return nil
	}
	change := passwordChange{old: p.hash, new: p.rehash, ownLock: p.ownLock}
	if err := a.resetAfterLogin(ctx, p.username, change); err != nil {
		return err
	}
	if p.rehash != "" {
		p.hash, p.rehash = p.rehash, ""
	}
	return nil
}

// pendingLoginFor is how long a pending login waits for its second factor.
const pendingLoginFor = 5 * time.Minute

// pendingHandleBytes is the size of a pending login's handle: 256 bits.
const pendingHandleBytes = 32

// pendingLogin is a pending login as a step reads it.
type pendingLogin struct {
	handleHash string
	username   string
	userHash   string // the password_hash verified by the password step
	remember   bool
	next       string
}

// errNoPendingLogin: no pending login cookie, a malformed one, or one of
// no pending login (unknown, expired, or consumed).
var errNoPendingLogin = errors.New("authn: no pending login")

// startPending stores a pending login for p, a password step that named
// second factors, and returns its handle, which the cookie carries.
func (a *Authenticator) startPending(ctx context.Context, p loginProof, remember bool, next string) (string, error) {
	b := make([]byte, pendingHandleBytes)
	rand.Read(b)
	handle := base64.RawURLEncoding.EncodeToString(b)
	now := a.now()
	row := &model.PendingLogin{
		HandleHash: tokenHash(handle), Username: p.username, UserHash: p.hash,
		CreatedAt: unixSeconds(now), ExpiresAt: unixSeconds(now.Add(pendingLoginFor)),
		Remember: remember, Next: next,
	}
	err := a.store.insertPending(ctx, row, now)
	if errors.Is(err, errSessionRefused) {
		return "", a.changedDuringLogin(ctx, p.username)
	}
	if err != nil {
		a.emit(ctx, Event{Type: EventLoginFailed, Username: p.username, Reason: ReasonError})
		return "", err
	}
	a.stats.secondFactorPending.Add(1)
	return handle, nil
}

// pendingOf reads the pending login of a handle (the cookie's value):
// errNoPendingLogin when there is none, it has expired or was consumed.
// It does not consume it: finish does, once a step proved the factor.
func (a *Authenticator) pendingOf(ctx context.Context, handle string) (pendingLogin, error) {
	if !validToken(handle) { // the shape of a session token: 32 random bytes
		return pendingLogin{}, errNoPendingLogin
	}
	row, err := a.store.pending(ctx, tokenHash(handle), a.now())
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return pendingLogin{}, errNoPendingLogin
	case err != nil:
		return pendingLogin{}, err
	}
	return pendingLogin{handleHash: row.HandleHash, username: row.Username, userHash: row.UserHash, remember: row.Remember, next: row.Next}, nil
}

// claimCode claims an attempt of a code step on the account of pending
// login p, in the lockout's one atomic statement, before the code is
// checked: a code costs a claimed attempt as a password does (same counter,
// same threshold). It returns the step's proof so far; its error is
// ErrInvalidCredentials (with the failure reported) when the account is
// unknown, has a hash other than the one the password step verified (a
// password changed since), or a *LockedError when it is locked.
func (a *Authenticator) claimCode(ctx context.Context, p pendingLogin, method string, wait hashWait) (loginProof, error) {
	c, err := a.claim(ctx, p.username, wait.again(), nil)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err := a.refused(ctx, p.username)
		return loginProof{}, err
	case errors.Is(err, errOverBudget):
		return loginProof{}, err // reported as throttled by the handler
	case errors.Is(err, ErrBusy):
		a.emit(ctx, Event{Type: EventLoginFailed, Username: p.username, Reason: ReasonDatabaseBusy})
		return loginProof{}, err
	case err != nil:
		a.emit(ctx, Event{Type: EventLoginFailed, Username: p.username, Reason: ReasonError})
		return loginProof{}, err
	}
	proof := loginProof{username: p.username, hash: p.userHash, method: method, ownLock: c.ownLock, pending: p.handleHash, factors: c.factors}
	if c.stored != p.userHash {
		a.codeFailed(ctx, proof, ReasonChanged)
		return loginProof{}, ErrInvalidCredentials
	}
	return proof, nil
}

// codeFailed reports a code step that failed after its claim, with why; a
// claim that locked the account is reported as a lockout too.
func (a *Authenticator) codeFailed(ctx context.Context, p loginProof, reason Reason) {
	a.emit(ctx, Event{Type: EventLoginFailed, Username: p.username, Reason: reason})
	if p.ownLock.Valid {
		a.emit(ctx, Event{Type: EventLockout, Username: p.username})
	}
}

// pendingCookieName is the name of the pending login's cookie: the session
// cookie's name with "-pending" added, so that it keeps its __Host- prefix
// and the same rules (HttpOnly, SameSite=Lax, Secure unless
// InsecureCookies).
func (h *handlers) pendingCookieName() string { return h.cookieName + "-pending" }

// pendingCookie returns the cookie that carries a pending login's handle;
// an empty handle clears it. It ends with the pending login.
func (h *handlers) pendingCookie(handle string) *http.Cookie {
	c := h.sessionCookie(handle)
	c.Name = h.pendingCookieName()
	if handle != "" {
		c.MaxAge = int(pendingLoginFor.Seconds())
	}
	return c
}

// pendingHandle is the pending login cookie of r, or "" when it has none
// or more than one (one tossed in from elsewhere: nothing says which).
func (h *handlers) pendingHandle(r *http.Request) string {
	cs := r.CookiesNamed(h.pendingCookieName())
	if len(cs) != 1 {
		return ""
	}
	return cs[0].Value
}

// dropPending deletes the pending login of r's cookie, if it has one, and
// clears the cookie: at logout, and when a new login replaces it.
func (h *handlers) dropPending(w http.ResponseWriter, r *http.Request) error {
	handle := h.pendingHandle(r)
	if handle == "" {
		return nil
	}
	http.SetCookie(w, h.pendingCookie(""))
	if !validToken(handle) {
		return nil
	}
	return h.a.store.dropPending(r.Context(), tokenHash(handle))
}

// finishLogin finishes a login whose last step proved p (see finish) and
// starts its session, remembered when remember is true: the one end of
// every login over HTTP. It clears the pending login cookie of a step that
// finished one.
func (h *handlers) finishLogin(w http.ResponseWriter, r *http.Request, p loginProof, remember bool) error {
	if p.pending != "" {
		http.SetCookie(w, h.pendingCookie(""))
	}
	if err := h.a.finish(r.Context(), &p); err != nil {
		return err
	}
	if p.lock == lockAdminOnly {
		return h.startSessionWith(w, r, p.username, remember, func(ctx context.Context) (string, error) {
			return h.a.createPasskeySession(ctx, p, remember, newSessionClient(r))
		})
	}
	return h.startSession(w, r, p.username, p.hash, remember)
}

// loginAnswer is what answerLogin needs besides the outcome: the form to
// show again on a failure, and where a success goes.
type loginAnswer struct {
	username string
	next     string
	// fail shows the page of the step again with a message (a form's
	// answer to a failure); JSON failures are answerLogin's.
	fail func(status int, code, msg string)
	// jsonInvalid is the JSON error of a client failure.
	jsonInvalid string
	// redirect adds to a JSON success where a browser goes next
	// ({"username","redirect"}): for the passkey steps, whose script
	// navigates there.
	redirect bool
}

// answerLogin answers a login step that ended with err: 429 for a client
// over its failure budget, 401 for the client's failures (spending its
// failure budget, whose account is t), 503
// for the rest (failClosed), and for a success, JSON 200 {"username"} or a
// redirect (303; htmx: 200 with HX-Redirect) to a local next, else
// HTTPConfig.AfterLoginPath.
func (h *handlers) answerLogin(w http.ResponseWriter, r *http.Request, t *budgetTicket, err error, ans loginAnswer) {
	isJSON := wantsJSON(r)
	// A success, or a failure not the client's that counted nothing, gives
	// the token back (see settle).
	h.settle(w, r, t, ans.username, err)
	switch {
	case errors.Is(err, errOverBudget) && isJSON:
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": msgTooManyFailures})
	case errors.Is(err, errOverBudget):
		ans.fail(http.StatusTooManyRequests, CodeThrottled, msgThrottled)
	case isClientFailure(err) && isJSON:
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": ans.jsonInvalid})
	case isClientFailure(err):
		ans.fail(http.StatusUnauthorized, CodeInvalidCredentials, msgInvalid)
	case err != nil:
		h.failClosed(w, r, err)
		if isJSON {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "service unavailable, try again later"})
			return
		}
		ans.fail(http.StatusServiceUnavailable, CodeUnavailable, msgUnavailable)
	case isJSON && ans.redirect:
		writeJSON(w, http.StatusOK, map[string]string{"username": ans.username, "redirect": localRedirect(ans.next, h.afterLoginPath)})
	case isJSON:
		writeJSON(w, http.StatusOK, map[string]string{"username": ans.username})
	default:
		h.redirect(w, r, localRedirect(ans.next, h.afterLoginPath))
	}
}

// answerSecondFactor answers a right password on an account with a second
// factor, whose pending login's handle is handle: the pending cookie, and
// JSON 200 {"second_factor":[...]}, or the code page (an htmx request: 200
// with HX-Redirect to it).
func (h *handlers) answerSecondFactor(w http.ResponseWriter, r *http.Request, handle string, factors factorSet) {
	http.SetCookie(w, h.pendingCookie(handle))
	h.warnInsecureCookie(r)
	switch {
	case wantsJSON(r):
		writeJSON(w, http.StatusOK, map[string][]string{"second_factor": factors.names()})
	case isHTMX(r):
		h.redirect(w, r, h.verifyAction(r))
	default:
		h.render(w, http.StatusOK, h.verifyTemplate, h.verifyForm(r, "", factors))
	}
}

// verifyAction is the path of the second step of a login as the browser
// reaches it: next to the path r came to (the login route's, or the second
// step's own), also under http.StripPrefix, else {Prefix}/login/verify.
func (h *handlers) verifyAction(r *http.Request) string {
	switch p := formAction(r); {
	case strings.HasSuffix(p, "/login/verify"):
		return p
	case strings.HasSuffix(p, "/login"):
		return p + "/verify"
	}
	return h.prefix + "/login/verify"
}

// verifyForm is the code page's data.
func (h *handlers) verifyForm(r *http.Request, msg string, factors factorSet) FormData {
	f := h.loginForm(r, msg, "", "")
	f.Action = h.verifyAction(r)
	f.SecondFactors = factors.names()
	return f
}

// pendingFactors are the second factors of the user of r's pending login,
// for the page of the second step: TOTP when they cannot be read.
func (h *handlers) pendingFactors(r *http.Request) factorSet {
	p, err := h.a.pendingOf(r.Context(), h.pendingHandle(r))
	if err == nil {
		f, err := h.a.store.factorsOf(r.Context(), []string{p.username})
		if in := h.a.factorsInUse(f[p.username]); err == nil && in != 0 {
			return in
		}
	}
	return factorSet(1 << factorTOTP)
}

// msgInvalidCode is what the code page says for every failure.
const msgInvalidCode = "Invalid or expired code. Try again, or start again from the sign-in page."

// loginVerifyHandler serves {Prefix}/login/verify, the second step of a
// login on an account with a second factor: GET shows the code page to a
// browser with a pending login (others are sent to the login page); POST
// takes the pending login's cookie and the field code (a TOTP code) or
// recovery_code, as a form or JSON, and finishes the login as a password
// login does (session, remember me, next, htmx, AfterLoginPath). A wrong,
// used, malformed or expired code, or no pending login, gets the answer of
// a wrong password (401), spends the client's failure budget, and a code
// checked counts toward the account's lockout.
func (h *handlers) loginVerifyHandler() http.Handler {
	get := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !validToken(h.pendingHandle(r)) {
			h.redirect(w, r, h.loginPath)
			return
		}
		h.render(w, http.StatusOK, h.verifyTemplate, h.verifyForm(r, "", h.pendingFactors(r)))
	})
	post := h.protectPOST(http.HandlerFunc(h.postVerify))
	return h.guard(methods(get, post))
}

// codeInput is the body of a second step.
type codeInput struct{ Code, RecoveryCode string }

func (h *handlers) postVerify(w http.ResponseWriter, r *http.Request) {
	var in codeInput
	status, _ := decodeBody(r, fieldSet{text: map[string]*string{"code": &in.Code, "recovery_code": &in.RecoveryCode}})
	fail := func(status int, code, msg string) {
		if code == CodeInvalidCredentials {
			msg = msgInvalidCode
		}
		f := h.verifyForm(r, msg, h.pendingFactors(r))
		f.ErrorCode = code
		h.render(w, status, h.verifyTemplate, f)
	}
	// The code's claim takes a token of the client's budget (the ticket
	// in ctx) before the code is checked; a step that ends before a claim
	// spends one in settle.
	ctx, t, ok := h.attempt(w, r, "")
	if !ok {
		if wantsJSON(r) {
			writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": msgTooManyFailures})
			return
		}
		fail(http.StatusTooManyRequests, CodeThrottled, msgThrottled)
		return
	}
	var p pendingLogin
	var proof loginProof
	var err error
	switch {
	case status != 0 || (in.Code == "") == (in.RecoveryCode == ""):
		// One code, neither none nor both.
		h.a.emit(ctx, Event{Type: EventLoginFailed, Reason: ReasonMalformedCode})
		err = ErrInvalidCredentials
	default:
		p, err = h.a.pendingOf(ctx, h.pendingHandle(r))
		if errors.Is(err, errNoPendingLogin) {
			h.a.emit(ctx, Event{Type: EventLoginFailed, Reason: ReasonNoPendingLogin})
			err = ErrInvalidCredentials
		}
	}
	if err == nil {
		if in.Code != "" {
			proof, err = h.a.proveTOTP(ctx, p, in.Code, h.newHashWait())
		} else {
			proof, err = h.a.proveRecoveryCode(ctx, p, in.RecoveryCode, h.newHashWait())
		}
	}
	if err == nil {
		err = h.finishLogin(w, r, proof, p.remember)
	}
	h.answerLogin(w, r, t, err, loginAnswer{
		username: p.username, next: p.next, jsonInvalid: "invalid or expired code", fail: fail,
	})
}
