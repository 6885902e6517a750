package authn

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"strings"

	"github.com/minimost/minimost/authn/password"
)

// RecoveryData is what the recovery pages (HTTPConfig.ResetTemplate,
// ResetConfirmTemplate, EmailTemplate) are executed with: a FormData and
// the fields of recovery. Its strings are text, never HTML.
type RecoveryData struct {
	FormData
	// Token is, on the new-password page, the link's token, which the
	// form posts back as the field token; "" when the link does not work
	// (Error says so).
	Token string
	// SecondFactor is true, on the new-password page, when the account
	// has a second factor: the form asks for its code (field code).
	SecondFactor bool
	// Email is, on the email page, the user's verified address, or "".
	Email string
	// VerifyPage is true for the page of a verification link.
	VerifyPage bool
}

// The notices of the email page.
const (
	// NoticeEmailSent: a link to verify the new address was sent.
	NoticeEmailSent = "email_sent"
	// NoticeEmailVerified: the page of a verification link that worked.
	NoticeEmailVerified = "email_verified"
)

// Messages of the recovery pages.
const (
	msgInvalidLink     = "This link is invalid or has expired. Ask for a new one."
	msgIdentifier      = "Enter your username or email address."
	msgRecoveryDown    = "This is unavailable right now. Try again shortly."
	msgAdminLocked     = "This account is locked by an administrator: a reset cannot unlock it. Ask them."
	msgCodeRequired    = "Enter the code of your second factor."
	msgCodeWrong       = "The code is not right."
	msgEmailTaken      = "This address is already used by another account."
	msgTooManyRequests = "Too many requests from your network. Try again later."
	msgTooManyMails    = "Too many links were asked for this account. Try again later."
	msgEmailSent       = "A link is on its way to the new address. It counts once you follow it."
	msgEmailVerified   = "Your email address is verified: password reset links go there."
)

// askEmail reports whether the registration form asks for an address.
func (h *handlers) askEmail() bool { return h.registrationEmail && h.a.mailer != nil }

// recoveryData starts the data of a recovery page.
func (h *handlers) recoveryData(r *http.Request, msg, code string) RecoveryData {
	username, _ := Username(r.Context())
	return RecoveryData{FormData: h.withPolicy(FormData{
		Action: formAction(r), Error: msg, ErrorCode: code, Username: username,
		LoginPath: h.loginPath, AppName: h.appName, HomePath: h.homePath, ResetPath: h.resetPath,
	})}
}

// renderRecovery renders a recovery page with a Referrer-Policy of
// no-referrer: its URL may hold a link's token.
func (h *handlers) renderRecovery(w http.ResponseWriter, status int, t recoveryPage, data RecoveryData) {
	w.Header().Set("Referrer-Policy", "no-referrer")
	h.render(w, status, t.template(h), data)
}

// recoveryPage names one of the recovery templates.
type recoveryPage int

const (
	pageReset recoveryPage = iota
	pageConfirm
	pageEmail
)

func (p recoveryPage) template(h *handlers) *template.Template {
	switch p {
	case pageReset:
		return h.resetTemplate
	case pageConfirm:
		return h.confirmTemplate
	}
	return h.emailTemplate
}

// resetHandler serves {Prefix}/reset: GET shows the form that asks for a
// reset link; POST takes {"username"} or {"email"} (a form's field
// username may hold either) and answers 202 to every well-formed request,
// in the same time, whoever it names: the search for the account, the
// account's bound and the mail happen in the mail queue, after the answer.
// Only the client's own bound (RecoveryConfig.RequestsPerClient, counted
// for every request alike) answers otherwise: 429.
func (h *handlers) resetHandler() http.Handler {
	get := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.renderRecovery(w, http.StatusOK, pageReset, h.recoveryData(r, "", ""))
	})
	post := h.protectPOST(http.HandlerFunc(h.postReset))
	return h.guard(methods(get, post))
}

func (h *handlers) postReset(w http.ResponseWriter, r *http.Request) {
	var username, email string
	status, code := decodeBody(r, fieldSet{text: map[string]*string{"username": &username, "email": &email}})
	isJSON := wantsJSON(r)
	answer := func(status int, code, msg string) {
		if isJSON {
			writeJSON(w, status, codedError{msg, code})
			return
		}
		h.renderRecovery(w, status, pageReset, h.recoveryData(r, msg, code))
	}
	ident := strings.TrimSpace(username)
	if ident == "" {
		ident = strings.TrimSpace(email)
	}
	switch {
	case status != 0:
		answer(status, code, codeMessage(code))
		return
	case ident == "" || len(ident) > maxAddressBytes:
		answer(http.StatusBadRequest, CodeIdentifierRequired, msgIdentifier)
		return
	}
	ctx := r.Context()
	if h.a.recovery.perClient >= 0 {
		key, ok := h.a.clientKey(ctx)
		if !ok {
			key = h.a.clientPrefix(clientAddr(ctx))
		}
		counts, err := h.a.store.countRequests(ctx, []string{limitHash("client\x00" + key.String())}, h.a.now(), h.a.recovery.window)
		switch {
		case err != nil:
			h.failClosed(w, r, err)
			answer(http.StatusServiceUnavailable, CodeUnavailable, msgRecoveryDown)
			return
		case counts[0] > int64(h.a.recovery.perClient):
			h.a.stats.throttled.Add(1)
			w.Header().Set("Retry-After", retryAfter(h.a.recovery.window))
			answer(http.StatusTooManyRequests, CodeTooManyResetRequests, msgTooManyRequests)
			return
		}
	}
	if isJSON {
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "accepted"})
	} else {
		data := h.recoveryData(r, "", "")
		data.Done = true
		h.renderRecovery(w, http.StatusAccepted, pageReset, data)
	}
	// After the answer: nothing of what follows shows in it.
	a := h.a
	a.enqueue(ctx, "reset request", func(ctx context.Context) {
		err := a.requestReset(ctx, ident, func(username string, m MailMessage) {
			a.deliver(ctx, "reset", username, m)
		})
		if err != nil && ctx.Err() == nil {
			a.logger.ErrorContext(ctx, "authn: reset request failed", "error", err)
		}
	})
}

// confirmHandler serves {Prefix}/reset/confirm, the page of a reset link:
// GET ?token= shows the new-password form (or says that the link does not
// work, 400); POST takes {"token","new_password"} and, for an account with
// a second factor, "code", and resets the password (see Recovery.Reset):
// 204 to JSON, a redirect (303) to the login form, which says so, for a
// form. A link that does not work gets 400 (CodeInvalidLink); a missing
// or wrong code 401 (CodeSecondFactorRequired, CodeInvalidCode), both
// spending the client's failure budget; a password the policy refuses 400
// with its rule's code (the link still works); an administrator's lock
// 403 (CodeAccountLocked).
func (h *handlers) confirmHandler() http.Handler {
	get := http.HandlerFunc(h.getConfirm)
	post := h.protectPOST(http.HandlerFunc(h.postConfirm))
	return h.guard(methods(get, post))
}

func (h *handlers) getConfirm(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("token")
	link, err := h.a.peekReset(r.Context(), token)
	switch {
	case errors.Is(err, ErrInvalidLink):
		h.renderRecovery(w, http.StatusBadRequest, pageConfirm, h.recoveryData(r, msgInvalidLink, CodeInvalidLink))
		return
	case err != nil:
		h.failClosed(w, r, err)
		h.renderRecovery(w, http.StatusServiceUnavailable, pageConfirm, h.recoveryData(r, msgRecoveryDown, CodeUnavailable))
		return
	}
	data := h.recoveryData(r, "", "")
	data.Token, data.Username = token, link.Username
	data.SecondFactor, err = h.a.hasSecondFactor(r.Context(), link.Username)
	if err != nil {
		h.failClosed(w, r, err)
		h.renderRecovery(w, http.StatusServiceUnavailable, pageConfirm, h.recoveryData(r, msgRecoveryDown, CodeUnavailable))
		return
	}
	h.renderRecovery(w, http.StatusOK, pageConfirm, data)
}

func (h *handlers) postConfirm(w http.ResponseWriter, r *http.Request) {
	var token, next, code string
	status, bodyCode := decodeBody(r, fieldSet{text: map[string]*string{"token": &token, "new_password": &next, "code": &code}})
	isJSON := wantsJSON(r)
	ctx := r.Context()
	answer := func(status int, code, msg string) {
		if isJSON {
			writeJSON(w, status, codedError{msg, code})
			return
		}
		data := h.recoveryData(r, msg, code)
		// The form again, for what the user can fix; none for a link
		// that does not work.
		if code != CodeInvalidLink && code != CodeAccountLocked {
			if link, err := h.a.peekReset(ctx, token); err == nil {
				data.Token, data.Username = token, link.Username
				data.SecondFactor, _ = h.a.hasSecondFactor(ctx, link.Username)
			}
		}
		h.renderRecovery(w, status, pageConfirm, data)
	}
	// A link that does not work, or a wrong code, is a failed attempt:
	// reserve a token of the client's budget, given back on success.
	res, err := h.reserve(w, r, h.failures, "")
	switch {
	case errors.Is(err, errOverBudget):
		answer(http.StatusTooManyRequests, CodeThrottled, msgThrottled)
		return
	case err != nil:
		h.failClosed(w, r, err)
		answer(http.StatusServiceUnavailable, CodeUnavailable, msgRecoveryDown)
		return
	}
	switch {
	case status != 0:
		answer(status, bodyCode, codeMessage(bodyCode))
		return
	case token == "":
		answer(http.StatusBadRequest, CodeInvalidLink, msgInvalidLink)
		return
	case next == "":
		answer(http.StatusBadRequest, CodePasswordRequired, ruleMessage(CodePasswordRequired, 0))
		return
	}
	_, err = h.a.resetWithLink(ctx, token, next, code, h.newHashWait())
	var rule *RuleError
	switch {
	case err == nil:
		res.cancel(ctx)
		// Every session of the user ended, this browser's too, if it had one.
		http.SetCookie(w, h.sessionCookie(""))
		if isJSON {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.redirect(w, r, noticeURL(h.loginPath, NoticePasswordReset))
	case errors.Is(err, ErrInvalidLink):
		answer(http.StatusBadRequest, CodeInvalidLink, msgInvalidLink)
	case errors.Is(err, errResetLocked):
		res.cancel(ctx)
		answer(http.StatusForbidden, CodeAccountLocked, msgAdminLocked)
	case errors.As(err, &rule):
		answer(http.StatusBadRequest, rule.Code, rule.Message())
	case errors.Is(err, password.ErrPasswordTooLong):
		answer(http.StatusBadRequest, CodePasswordTooManyBytes, ruleMessage(CodePasswordTooManyBytes, 0))
	case errors.Is(err, ErrInvalidPassword):
		answer(http.StatusBadRequest, CodePasswordRejected, ruleMessage(CodePasswordRejected, 0))
	case errors.Is(err, ErrSecondFactorRequired):
		answer(http.StatusUnauthorized, CodeSecondFactorRequired, msgCodeRequired)
	case isClientFailure(err):
		answer(http.StatusUnauthorized, CodeInvalidCode, msgCodeWrong)
	default:
		if !spendsBudget(err) {
			res.cancel(ctx)
		}
		h.failClosed(w, r, err)
		answer(http.StatusServiceUnavailable, CodeUnavailable, msgRecoveryDown)
	}
}

// emailHandler serves {Prefix}/email for the signed-in user (others are
// answered as RequireSession answers them): GET shows the verified
// address and a form for a new one; POST takes {"email","password"} and
// mails a link that verifies the address (202), or {"remove":true,
// "password"} and removes the address (204; a form: the page again). The
// password is checked as ChangePasswordHandler checks the current one (a
// wrong one is a failed login: 401, counted toward the lockout), so that
// somebody who has only the session cannot make the account's resets
// their own. The answer is the same whether or not another account has
// the address: only following the link says so, to whoever reads the
// address's mail.
func (h *handlers) emailHandler() http.Handler {
	get := h.requireSession(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.renderEmailPage(w, r, http.StatusOK, "", "", "")
	}))
	post := h.protectPOST(h.requireSession(http.HandlerFunc(h.postEmail)))
	return h.guard(methods(get, post))
}

// renderEmailPage renders the email page with the user's address.
func (h *handlers) renderEmailPage(w http.ResponseWriter, r *http.Request, status int, msg, code, notice string) {
	data := h.recoveryData(r, msg, code)
	data.NoticeCode, data.Notice = notice, recoveryNotice(notice)
	address, err := h.a.store.email(r.Context(), data.Username)
	if err != nil {
		h.failClosed(w, r, err)
		status, data.Error, data.ErrorCode = http.StatusServiceUnavailable, msgRecoveryDown, CodeUnavailable
	}
	data.Email = address
	h.renderRecovery(w, status, pageEmail, data)
}

// recoveryNotice is the text of a notice of the email page.
func recoveryNotice(code string) string {
	switch code {
	case NoticeEmailSent:
		return msgEmailSent
	case NoticeEmailVerified:
		return msgEmailVerified
	}
	return ""
}

func (h *handlers) postEmail(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	username, _ := Username(ctx)
	var address, pw string
	var remove bool
	status, code := decodeBody(r, fieldSet{
		text:  map[string]*string{"email": &address, "password": &pw},
		flags: map[string]*bool{"remove": &remove},
	})
	isJSON := wantsJSON(r)
	answer := func(status int, code, msg string) {
		if isJSON {
			writeJSON(w, status, codedError{msg, code})
			return
		}
		h.renderEmailPage(w, r, status, msg, code, "")
	}
	res, err := h.reserve(w, r, h.failures, username)
	switch {
	case errors.Is(err, errOverBudget):
		answer(http.StatusTooManyRequests, CodeThrottled, msgThrottled)
		return
	case err != nil:
		h.failClosed(w, r, err)
		answer(http.StatusServiceUnavailable, CodeUnavailable, msgRecoveryDown)
		return
	}
	address = strings.TrimSpace(address)
	switch {
	case status != 0:
		answer(status, code, codeMessage(code))
		return
	case pw == "":
		answer(http.StatusBadRequest, CodeCurrentPasswordRequired, codeMessage(CodeCurrentPasswordRequired))
		return
	case !remove && CheckEmail(address) != nil:
		res.cancel(ctx)
		answer(http.StatusBadRequest, CodeEmailInvalid, codeMessage(CodeEmailInvalid))
		return
	}
	_, err = h.a.authenticate(ctx, username, pw, h.newHashWait(), passwordAgain)
	if err == nil {
		if remove {
			err = h.a.Recovery().RemoveEmail(ctx, username)
		} else {
			err = h.a.Recovery().RequestVerification(ctx, username, address)
		}
	}
	switch {
	case err == nil:
		res.cancel(ctx)
		switch {
		case remove && isJSON:
			w.WriteHeader(http.StatusNoContent)
		case remove:
			h.renderEmailPage(w, r, http.StatusOK, "", "", "")
		case isJSON:
			writeJSON(w, http.StatusAccepted, map[string]string{"status": "sent"})
		default:
			h.renderEmailPage(w, r, http.StatusAccepted, "", "", NoticeEmailSent)
		}
	case isClientFailure(err):
		if isJSON {
			writeJSON(w, http.StatusUnauthorized, codedError{"invalid username or password", CodeInvalidCredentials})
			return
		}
		answer(http.StatusUnauthorized, CodeInvalidCredentials, msgWrongCurrent)
	case errors.Is(err, ErrTooManyMails):
		res.cancel(ctx)
		w.Header().Set("Retry-After", retryAfter(h.a.recovery.window))
		answer(http.StatusTooManyRequests, CodeTooManyResetRequests, msgTooManyMails)
	default:
		if !spendsBudget(err) {
			res.cancel(ctx)
		}
		h.failClosed(w, r, err)
		answer(http.StatusServiceUnavailable, CodeUnavailable, msgRecoveryDown)
	}
}

// verifyHandler serves {Prefix}/email/verify, the page of a verification
// link: GET ?token= makes the link's address its user's verified address
// (200, a page that says so; 204 to JSON), or answers 400
// (CodeInvalidLink) or 409 (CodeEmailTaken: another account verified it
// first). HEAD uses up nothing.
func (h *handlers) verifyHandler() http.Handler {
	return h.guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		isJSON := wantsJSON(r)
		answer := func(status int, code, msg, notice string) {
			if isJSON {
				if status == http.StatusOK {
					w.WriteHeader(http.StatusNoContent)
					return
				}
				writeJSON(w, status, codedError{msg, code})
				return
			}
			data := h.recoveryData(r, msg, code)
			data.VerifyPage = true
			data.NoticeCode, data.Notice = notice, recoveryNotice(notice)
			h.renderRecovery(w, status, pageEmail, data)
		}
		switch r.Method {
		case http.MethodHead:
			w.WriteHeader(http.StatusOK)
			return
		case http.MethodGet:
		default:
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, r, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		_, err := h.a.Recovery().VerifyEmail(r.Context(), r.URL.Query().Get("token"))
		switch {
		case err == nil:
			answer(http.StatusOK, "", "", NoticeEmailVerified)
		case errors.Is(err, ErrInvalidLink):
			answer(http.StatusBadRequest, CodeInvalidLink, msgInvalidLink, "")
		case errors.Is(err, ErrEmailTaken):
			answer(http.StatusConflict, CodeEmailTaken, msgEmailTaken, "")
		default:
			h.failClosed(w, r, err)
			answer(http.StatusServiceUnavailable, CodeUnavailable, msgRecoveryDown, "")
		}
	}))
}

// requestVerification mails a link that verifies address to username
// after a registration; a failure is logged, since the account was made.
func (h *handlers) requestVerification(r *http.Request, username, address string) {
	if err := h.a.Recovery().RequestVerification(r.Context(), username, address); err != nil {
		h.a.logger.ErrorContext(r.Context(), "authn: mailing the verification link of a new account failed", "user", username, "error", err)
	}
}
