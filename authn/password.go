package authn

import (
	"context"
	"errors"
	"math"
	"net/http"
	"time"

	"github.com/minimost/minimost/authn/password"
)

// ChangePassword replaces username's password with next, for a user who
// knows the current one, and ends all the user's sessions.
//
// The new password must pass the PasswordPolicy (a *RuleError otherwise);
// it is checked first, so that a typo in it costs neither a hash nor an
// attempt. The current password is then checked exactly as Authenticate
// checks a login: claimed and counted before it is verified, so that a
// wrong one is a failed login (ErrInvalidCredentials, reported as
// EventLoginFailed) that counts toward the lockout and can lock the
// account, and a locked account is refused (a *LockedError) whatever the
// password. A right one resets the counter, as a login does.
//
// The new hash is stored, the counter and lock cleared and the sessions
// ended in one transaction, and only if the account still has the hash
// that was verified and is not locked: a SetPassword, Lock, Delete or
// other ChangePassword that lands in between wins, and this one fails with
// ErrInvalidCredentials or a *LockedError. Of several changes with the
// right current password at once, exactly one succeeds. A success is
// reported once, as EventPasswordChanged.
func (a *Authenticator) ChangePassword(ctx context.Context, username, current, next string) error {
	_, err := a.changePassword(ctx, username, current, next, noWait, "")
	return err
}

// keptSession is the session that a change of password made from it kept,
// under a new token.
type keptSession struct {
	token      string
	end        time.Time // its absolute end
	remembered bool
}

// changePassword is ChangePassword, waiting for hashing capacity within
// wait. When keep is the token of a session of username (the one the
// change is made from), that session is kept under a new token, which it
// returns: every other session ends. errNoSession means that this session
// ended before the change was stored; nothing was changed then.
func (a *Authenticator) changePassword(ctx context.Context, username, current, next string, wait hashWait, keep string) (keptSession, error) {
	var kept keptSession
	// A broken database fails before anything is spent.
	if err := a.store.check(); err != nil {
		return kept, err
	}
	if err := a.policy.Check(username, next); err != nil {
		return kept, err
	}
	// The login's own path: claim, verify, reset (or count and lock).
	// A signed-in user's password: it finishes the check on an account
	// with a second factor too.
	p, err := a.authenticate(ctx, username, current, wait, passwordAgain)
	if err != nil {
		return kept, err
	}
	verified := p.hash
	encoded, err := a.hash(ctx, next, wait)
	if err != nil {
		return kept, err
	}
	var keepHash, renamed string
	if keep != "" {
		kept.token = newSessionToken()
		keepHash, renamed = tokenHash(keep), tokenHash(kept.token)
	}
	row, err := a.store.changePassword(ctx, username, verified, encoded, a.now(), keepHash, renamed)
	switch {
	case errors.Is(err, errSessionRefused):
		return keptSession{}, a.changedDuringLogin(ctx, username)
	case err != nil:
		return keptSession{}, err
	}
	a.emit(ctx, Event{Type: EventPasswordChanged, Username: username})
	kept.end = time.UnixMicro(int64(math.Round(row.ExpiresAt * 1e6))) // unixSeconds' inverse
	kept.remembered = row.Remembered
	return kept, nil
}

// ChangePasswordHandler serves the change of password of the signed-in
// user: a request without a live session is answered as RequireSession
// answers it (a browser is sent to the login form, an API client gets
// 401). GET shows an HTML form (HTTPConfig.PasswordTemplate replaces it);
// POST takes the fields current_password and new_password, as a form
// (urlencoded or multipart, as LoginHandler) or as the JSON object
// {"current_password","new_password"}, and changes the password as
// ChangePassword does. On success every other session of the user ends,
// and the session of the request is kept under a new token: the response
// sets its new cookie, and the old one no longer works. JSON gets 204; a
// form, a page that says so.
//
// A wrong current password is a failed login, with the generic answer of
// one: 401 and CodeInvalidCredentials, for a locked account too. It spends
// the client's failure budget (HTTPConfig.Throttle; 429 when over it) and
// counts toward the account's lockout. A new password that breaks the
// policy gets 400 with the rule's code (as RegisterHandler); a missing
// current password, CodeCurrentPasswordRequired. The database or the
// hashing capacity being unavailable gets 503. POST is refused across
// origins (403) and bounded by HTTPConfig.MaxBodyBytes.
func (a *Authenticator) ChangePasswordHandler() http.Handler { return a.handlers.passwordHandler() }

// passwordHandler is ChangePasswordHandler. The cross-origin check comes
// before the session's: a forged request is refused before it reads or
// touches a session.
func (h *handlers) passwordHandler() http.Handler {
	get := h.requireSession(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.render(w, http.StatusOK, h.passwordTemplate, h.passwordForm(r, "", ""))
	}))
	post := h.protectPOST(h.requireSession(http.HandlerFunc(h.postPassword)))
	return h.guard(methods(get, post))
}

// passwordForm is the FormData of the password form: the user's name (for
// password managers) and the policy's limits.
func (h *handlers) passwordForm(r *http.Request, msg, code string) FormData {
	username, _ := Username(r.Context())
	return h.withPolicy(FormData{
		Action: formAction(r), Error: msg, ErrorCode: code, Username: username, LoginPath: h.loginPath,
		AppName: h.appName, HomePath: h.homePath,
	})
}

// withPolicy sets the password policy's limits in f, for a form that sets
// a password.
func (h *handlers) withPolicy(f FormData) FormData {
	f.MinLength = h.a.policy.minLength()
	f.MaxLength = h.a.policy.maxLength()
	if b := h.a.policy.MaxBytes; b > 0 {
		f.MaxBytes, f.MaxLength = b, min(f.MaxLength, b)
	}
	return f
}

// Messages of the password form.
const (
	msgWrongCurrent      = "The current password is not right."
	msgPasswordsDisabled = "Changing the password is unavailable right now. Try again shortly."
)

func (h *handlers) postPassword(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	username, _ := Username(ctx) // requireSession put it there
	in, status, code := decodeNewPassword(r)
	isJSON := wantsJSON(r)
	answer := func(status int, code, msg string) {
		if isJSON {
			writeJSON(w, status, codedError{msg, code})
			return
		}
		h.render(w, status, h.passwordTemplate, h.passwordForm(r, msg, code))
	}
	// A wrong current password is a failed login: reserve a token of the
	// client's budget first, given back on success.
	tctx, t, ok := h.attempt(w, r, username)
	if !ok {
		answer(http.StatusTooManyRequests, CodeThrottled, msgThrottled)
		return
	}
	if status != 0 {
		answer(status, code, codeMessage(code))
		return
	}
	kept, err := h.a.changePassword(tctx, username, in.current, in.next, h.newHashWait(), h.sessionToken(r))
	h.settle(w, r, t, username, err)
	var rule *RuleError
	switch {
	case errors.Is(err, errOverBudget):
		answer(http.StatusTooManyRequests, CodeThrottled, msgThrottled)
	case err == nil:
		c := h.sessionCookie(kept.token)
		if kept.remembered {
			h.keepCookie(c, kept.end)
		}
		http.SetCookie(w, c)
		if isJSON {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		f := h.passwordForm(r, "", "")
		f.Done = true
		h.render(w, http.StatusOK, h.passwordTemplate, f)
	case errors.As(err, &rule):
		answer(http.StatusBadRequest, rule.Code, rule.Message())
	case errors.Is(err, password.ErrPasswordTooLong):
		answer(http.StatusBadRequest, CodePasswordTooManyBytes, ruleMessage(CodePasswordTooManyBytes, 0))
	case errors.Is(err, ErrInvalidPassword):
		answer(http.StatusBadRequest, CodePasswordRejected, ruleMessage(CodePasswordRejected, 0))
	case isClientFailure(err):
		if isJSON {
			// A failed login's words, with its code.
			writeJSON(w, http.StatusUnauthorized, codedError{"invalid username or password", CodeInvalidCredentials})
			return
		}
		answer(http.StatusUnauthorized, CodeInvalidCredentials, msgWrongCurrent)
	case errors.Is(err, errNoSession):
		// Signed out meanwhile (a logout in another tab): nothing was
		// changed, and the client is answered as RequireSession would.
		http.SetCookie(w, h.sessionCookie(""))
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "authentication required"})
	default:
		h.failClosed(w, r, err)
		answer(http.StatusServiceUnavailable, CodeUnavailable, msgPasswordsDisabled)
	}
}

// newPassword is a decoded password-change body.
type newPassword struct{ current, next string }

// decodeNewPassword reads a form (urlencoded or multipart) or JSON body
// with the fields current_password and new_password, by the rules of
// decodeBody; both are required.
func decodeNewPassword(r *http.Request) (in newPassword, status int, code string) {
	status, code = decodeBody(r, fieldSet{text: map[string]*string{
		"current_password": &in.current, "new_password": &in.next,
	}})
	switch {
	case status != 0:
		return newPassword{}, status, code
	case in.current == "":
		return in, http.StatusBadRequest, CodeCurrentPasswordRequired
	case in.next == "":
		return in, http.StatusBadRequest, CodePasswordRequired
	}
	return in, 0, ""
}
