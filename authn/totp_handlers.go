package authn

import (
	"errors"
	"html/template"
	"net/http"
	"strings"
)

// TOTPPage is what the built-in TOTP page ({Prefix}/totp) shows: the state
// of the user's second factor and, after a step, what it gave.
type TOTPPage struct {
	Enabled           bool
	RecoveryCodesLeft int
	// Secret, URI and QR are a new secret, after the password was given:
	// the base32 key, its otpauth:// URI, and a QR code of the URI as a
	// data: URL (the page's CSP allows img-src data:).
	Secret, URI string
	QR          template.URL // made by the library: a PNG, never a client's text
	// RecoveryCodes are shown once, after the confirmation.
	RecoveryCodes []string
	// EnrollPath, ConfirmPath and DisablePath are where the forms post.
	EnrollPath, ConfirmPath, DisablePath string
}

// qrURL marks the data: URL of a QR code that enroll made as safe for the
// page's img src, which html/template would otherwise replace (it lets no
// data: URL through on its own). Anything else is dropped.
func qrURL(s string) template.URL {
	if !strings.HasPrefix(s, "data:image/png;base64,") || strings.ContainsAny(s, "\"'<> ") {
		return ""
	}
	return template.URL(s)
}

// Messages of the TOTP page.
const (
	msgTOTPWrongPassword = "The password is not right."
	msgTOTPWrongCode     = "The code is not right. Check the time on your device and try again."
	msgTOTPWrongEither   = "The password or the code is not right."
	msgTOTPUnavailable   = "Two-step sign-in is unavailable right now. Try again shortly."
	msgTOTPEnabled       = "Two-step sign-in is already on."
	msgTOTPNoEnrolment   = "Set up two-step sign-in first."
	msgTOTPDisabled      = "Two-step sign-in is off."
)

// totpBase is the path of the TOTP page as the client asked for it, for
// the forms of the page: the path of r up to and including "/totp".
func (h *handlers) totpBase(r *http.Request) string {
	p := formAction(r)
	if i := strings.LastIndex(p, "/totp"); i >= 0 {
		return p[:i+len("/totp")]
	}
	return h.prefix + "/totp"
}

// totpPage is the FormData of the TOTP page of the signed-in user.
func (h *handlers) totpPage(r *http.Request, msg string, page TOTPPage) FormData {
	username, _ := Username(r.Context())
	base := h.totpBase(r)
	page.EnrollPath, page.ConfirmPath, page.DisablePath = base, base+"/confirm", base+"/disable"
	return FormData{
		Action: base, Error: msg, Username: username, LoginPath: h.loginPath,
		AppName: h.appName, HomePath: h.homePath, TOTP: &page,
	}
}

// totpHandlers serves the routes of the TOTP second factor, for a
// signed-in user (others are answered as RequireSession answers them):
//
//	GET  {Prefix}/totp          the page: its state, and the forms
//	POST {Prefix}/totp          {"password"} -> 200 {"secret","uri"} (form: the secret and its QR code)
//	POST {Prefix}/totp/confirm  {"code"}     -> 200 {"recovery_codes":[...]}, shown once
//	POST {Prefix}/totp/disable  {"password","code"} -> 204 (form: the page)
func (h *handlers) totpHandlers() map[string]http.Handler {
	get := h.requireSession(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		username, _ := Username(r.Context())
		st, err := h.a.TOTP().Status(r.Context(), username)
		if err != nil {
			h.failClosed(w, r, err)
			h.render(w, http.StatusServiceUnavailable, h.totpTemplate, h.totpPage(r, msgTOTPUnavailable, TOTPPage{}))
			return
		}
		page := TOTPPage{Enabled: st.Enabled, RecoveryCodesLeft: st.RecoveryCodesLeft}
		h.render(w, http.StatusOK, h.totpTemplate, h.totpPage(r, "", page))
	}))
	post := func(f http.HandlerFunc) http.Handler { return h.protectPOST(h.requireSession(f)) }
	return map[string]http.Handler{
		"/totp":         h.guard(methods(get, post(h.postTOTPEnroll))),
		"/totp/confirm": h.guard(methods(nil, post(h.postTOTPConfirm))),
		"/totp/disable": h.guard(methods(nil, post(h.postTOTPDisable))),
	}
}

// totpAnswer answers a TOTP request with a refusal: JSON {"error","code"},
// or the page with msg.
func (h *handlers) totpAnswer(w http.ResponseWriter, r *http.Request, status int, code, msg string, page TOTPPage) {
	if wantsJSON(r) {
		writeJSON(w, status, codedError{msg, code})
		return
	}
	f := h.totpPage(r, msg, page)
	f.ErrorCode = code
	h.render(w, status, h.totpTemplate, f)
}

// totpFailed answers a TOTP request that ended with err: 401 for a wrong
// password or code (which spent the client's budget, whose account is t),
// 429 for a client over it, 503
// for the rest.
func (h *handlers) totpFailed(w http.ResponseWriter, r *http.Request, t *budgetTicket, err error, wrong string, page TOTPPage) {
	username, _ := Username(r.Context())
	h.settle(w, r, t, username, err)
	switch {
	case errors.Is(err, errOverBudget):
		h.totpAnswer(w, r, http.StatusTooManyRequests, CodeThrottled, msgThrottled, page)
	case isClientFailure(err):
		h.totpAnswer(w, r, http.StatusUnauthorized, CodeInvalidCredentials, wrong, page)
	case errors.Is(err, ErrNoSecretKey):
		h.a.logger.ErrorContext(r.Context(), "authn: TOTP enrolment refused: no Config.SecretKey (New was given none)")
		w.Header().Set("Retry-After", "5")
		h.totpAnswer(w, r, http.StatusServiceUnavailable, CodeUnavailable, msgTOTPUnavailable, page)
	default:
		h.failClosed(w, r, err)
		h.totpAnswer(w, r, http.StatusServiceUnavailable, CodeUnavailable, msgTOTPUnavailable, page)
	}
}

func (h *handlers) postTOTPEnroll(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	username, _ := Username(ctx)
	var pw string
	status, code := decodeBody(r, fieldSet{text: map[string]*string{"password": &pw}})
	// The password's claim takes a token of the client's budget.
	tctx, t, ok := h.attempt(w, r, username)
	switch {
	case !ok:
		h.totpAnswer(w, r, http.StatusTooManyRequests, CodeThrottled, msgThrottled, TOTPPage{})
		return
	case status != 0:
		h.totpAnswer(w, r, status, code, codeMessage(code), TOTPPage{})
		return
	case pw == "":
		h.totpAnswer(w, r, http.StatusBadRequest, CodeCurrentPasswordRequired, codeMessage(CodeCurrentPasswordRequired), TOTPPage{})
		return
	}
	e, err := h.a.TOTP().enroll(tctx, username, pw, h.newHashWait())
	switch {
	case errors.Is(err, ErrTOTPEnabled):
		t.cancel(ctx)
		h.totpAnswer(w, r, http.StatusConflict, CodeTOTPEnabled, msgTOTPEnabled, TOTPPage{Enabled: true})
	case err != nil:
		h.totpFailed(w, r, t, err, msgTOTPWrongPassword, TOTPPage{})
	case wantsJSON(r):
		t.cancel(ctx)
		writeJSON(w, http.StatusOK, e)
	default:
		t.cancel(ctx)
		h.render(w, http.StatusOK, h.totpTemplate, h.totpPage(r, "", TOTPPage{Secret: e.Secret, URI: e.URI, QR: qrURL(e.QR)}))
	}
}

func (h *handlers) postTOTPConfirm(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	username, _ := Username(ctx)
	var in string
	status, code := decodeBody(r, fieldSet{text: map[string]*string{"code": &in}})
	// The first code is checked with no claim: a token of the client's
	// budget is taken first, in a statement of its own.
	t, err := h.reserve(w, r, h.failures, username)
	switch {
	case errors.Is(err, errOverBudget):
		h.totpAnswer(w, r, http.StatusTooManyRequests, CodeThrottled, msgThrottled, TOTPPage{})
		return
	case err != nil:
		h.failClosed(w, r, err)
		h.totpAnswer(w, r, http.StatusServiceUnavailable, CodeUnavailable, msgTOTPUnavailable, TOTPPage{})
		return
	case status != 0:
		h.totpAnswer(w, r, status, code, codeMessage(code), TOTPPage{})
		return
	}
	codes, err := h.a.TOTP().Confirm(ctx, username, in)
	switch {
	case errors.Is(err, ErrInvalidCode):
		// A wrong first code spends the client's budget: the page lets
		// the user try again with the same secret, which it no longer
		// shows (it is not kept anywhere readable): start again.
		h.totpAnswer(w, r, http.StatusBadRequest, CodeInvalidCode, msgTOTPWrongCode, TOTPPage{})
	case errors.Is(err, ErrNotFound):
		t.cancel(ctx)
		h.totpAnswer(w, r, http.StatusConflict, CodeNoTOTPEnrolment, msgTOTPNoEnrolment, TOTPPage{})
	case err != nil:
		h.totpFailed(w, r, t, err, msgTOTPWrongCode, TOTPPage{})
	case wantsJSON(r):
		t.cancel(ctx)
		writeJSON(w, http.StatusOK, map[string][]string{"recovery_codes": codes})
	default:
		t.cancel(ctx)
		h.render(w, http.StatusOK, h.totpTemplate, h.totpPage(r, "", TOTPPage{Enabled: true, RecoveryCodes: codes}))
	}
}

func (h *handlers) postTOTPDisable(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	username, _ := Username(ctx)
	var pw, in string
	status, code := decodeBody(r, fieldSet{text: map[string]*string{"password": &pw, "code": &in}})
	// The password's claim takes a token of the client's budget; the
	// code's claim, in the same request, takes none more.
	tctx, t, ok := h.attempt(w, r, username)
	switch {
	case !ok:
		h.totpAnswer(w, r, http.StatusTooManyRequests, CodeThrottled, msgThrottled, TOTPPage{Enabled: true})
		return
	case status != 0:
		h.totpAnswer(w, r, status, code, codeMessage(code), TOTPPage{Enabled: true})
		return
	case pw == "" || in == "":
		h.totpAnswer(w, r, http.StatusBadRequest, CodeCurrentPasswordRequired, msgTOTPWrongEither, TOTPPage{Enabled: true})
		return
	}
	err := h.a.TOTP().disable(tctx, username, pw, in, h.newHashWait())
	switch {
	case err != nil:
		h.totpFailed(w, r, t, err, msgTOTPWrongEither, TOTPPage{Enabled: true})
	case wantsJSON(r):
		t.cancel(ctx)
		w.WriteHeader(http.StatusNoContent)
	default:
		t.cancel(ctx)
		f := h.totpPage(r, "", TOTPPage{})
		f.Notice = msgTOTPDisabled
		h.render(w, http.StatusOK, h.totpTemplate, f)
	}
}

// Codes of the TOTP routes' refusals, beside the Code constants of
// policy.go: in JSON {"error","code"} and FormData.ErrorCode.
const (
	// CodeTOTPEnabled: an enrolment for an account whose TOTP second
	// factor is on already (409).
	CodeTOTPEnabled = "totp_enabled"
	// CodeNoTOTPEnrolment: a confirmation with no enrolment waiting (409).
	CodeNoTOTPEnrolment = "no_totp_enrolment"
	// CodeInvalidCode: a wrong or malformed first code of an enrolment
	// (400).
	CodeInvalidCode = "invalid_code"
)
