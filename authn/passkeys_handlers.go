package authn

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/minimost/minimost/middleware"
)

// The passkey routes of Routes (with HTTPConfig.WebAuthnRPID set):
//
//	GET       {Prefix}/passkey.js       the ceremonies' script (static)
//	POST      {Prefix}/passkey/begin    start a passwordless sign-in -> the options for navigator.credentials.get
//	POST      {Prefix}/passkey/finish   {"credential","next","remember"} -> a login's success
//	POST      {Prefix}/passkey/verify/begin   the pending login's cookie -> options (the second step after a password)
//	POST      {Prefix}/passkey/verify/finish  {"credential"} -> a login's success
//	GET, POST {Prefix}/passkeys         signed in: list (page or JSON), rename, delete
//	POST      {Prefix}/passkeys/begin   signed in, {"password"} -> the options for navigator.credentials.create
//	POST      {Prefix}/passkeys/finish  signed in, {"name","credential"} -> 201 the passkey
//
// Each ceremony's challenge is a database row, keyed by the SHA-256 of a
// random handle that the browser holds in an HttpOnly cookie, used once
// and for passkeyChallengeTTL at most: any instance finishes what another
// began.

//go:embed static/passkey.js
var passkeyScript []byte

// maxPasskeyBody bounds the body of a ceremony's finish: an attestation
// may carry certificates, more than a login form's MaxBodyBytes.
const maxPasskeyBody = 64 << 10

// Cookie names of the ceremonies' handles (the __Host- prefix unless
// InsecureCookies), one per kind, so that a sign-in begun in one tab does
// not spoil a registration in another.
func (h *handlers) ceremonyCookieName(kind string) string {
	name := "passkey-" + kind
	if h.secure {
		return "__Host-" + name
	}
	return name
}

// setCeremonyCookie hands the browser the handle of a ceremony begun.
func (h *handlers) setCeremonyCookie(w http.ResponseWriter, kind, handle string) {
	c := &http.Cookie{
		Name: h.ceremonyCookieName(kind), Value: handle, Path: "/",
		MaxAge: int(passkeyChallengeTTL / time.Second), HttpOnly: true, Secure: h.secure, SameSite: http.SameSiteStrictMode,
	}
	if handle == "" {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

// ceremonyHandle is the handle of the request's ceremony of kind, or "".
// Two cookies of the name (one tossed in from elsewhere) give none.
func (h *handlers) ceremonyHandle(r *http.Request, kind string) string {
	cs := r.CookiesNamed(h.ceremonyCookieName(kind))
	if len(cs) != 1 {
		return ""
	}
	return cs[0].Value
}

// passkeyScriptHandler serves passkey.js: a static file, so that the
// pages keep a CSP without inline script (script-src 'self').
func (h *handlers) passkeyScriptHandler() http.Handler {
	return middleware.NoStore(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Write(passkeyScript)
	}))
}

// protectCeremony is protectPOST with the larger body limit of a
// ceremony's finish.
func (h *handlers) protectCeremony(next http.Handler) http.Handler {
	return h.crossOrigin.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxPasskeyBody)
		next.ServeHTTP(w, r)
	}))
}

// ceremonyBody is the JSON body of a ceremony's finish: the credential as
// the browser gives it (PublicKeyCredential's JSON), and the fields of
// the step.
type ceremonyBody struct {
	Credential json.RawMessage `json:"credential"`
	Name       string          `json:"name"`     // registration: the passkey's name
	Next       string          `json:"next"`     // sign-in: where to go
	Remember   bool            `json:"remember"` // sign-in: remember me
}

// decodeCeremony reads a ceremony's finish body: one JSON object, nothing
// after it. status is 0, or 413, 415 or 400.
func decodeCeremony(r *http.Request) (in ceremonyBody, status int) {
	if mediaType(r.Header.Get("Content-Type")) != "application/json" {
		return in, http.StatusUnsupportedMediaType
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(&in)
	if err == nil {
		if _, err2 := dec.Token(); err2 != io.EOF {
			err = errors.New("data after the object")
		}
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return ceremonyBody{}, http.StatusRequestEntityTooLarge
	case err != nil || len(in.Credential) == 0:
		return ceremonyBody{}, http.StatusBadRequest
	}
	return in, 0
}

// Messages of the passkey routes.
const (
	msgPasskeyFailed  = "passkey sign-in failed"
	msgPasskeysOff    = "passkeys are unavailable right now, try again later"
	msgPasskeyInvalid = "the passkey was not verified: try again"
)

// passkeyBeginHandler starts a passwordless sign-in. Each one stores a
// challenge row: a client gets a burst of them, then one per interval
// (HTTPConfig.PasskeyThrottle), so that nobody can fill the database.
func (h *handlers) passkeyBeginHandler() http.Handler {
	return h.guard(methods(nil, h.protectPOST(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.overBudget(w, r, "") {
			tooManyFailures(w, r)
			return
		}
		// Spent whatever the outcome: every begin stores a row.
		if _, err := h.reserve(w, r, h.passkeyStarts, ""); err != nil {
			h.refuseBasic(w, r, err)
			return
		}
		c, err := h.a.beginPasskeyLogin(r.Context())
		if err != nil {
			h.unavailable(w, r, err)
			return
		}
		h.setCeremonyCookie(w, ceremonyLogin, c.handle)
		writeRawJSON(w, http.StatusOK, c.options)
	}))))
}

// passkeyFinishHandler finishes a passwordless sign-in through the login
// core (finishLogin, answerLogin): JSON 200 {"username","redirect"} and a
// session. A failure of any kind (no, used or expired challenge, unknown
// credential, wrong signature, an administrator's lock, a passkey unbound
// by a password written outside the library) gets the 401 of a failed
// login and spends the client's failure budget; a lockout by failed
// passwords does not stop it.
func (h *handlers) passkeyFinishHandler() http.Handler {
	return h.guard(methods(nil, h.protectCeremony(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := h.reserve(w, r, h.failures, "")
		if err != nil {
			h.refuseBasic(w, r, err)
			return
		}
		handle := h.ceremonyHandle(r, ceremonyLogin)
		h.setCeremonyCookie(w, ceremonyLogin, "") // used, whatever comes next
		in, status := decodeCeremony(r)
		if status != 0 { // 400, 413 or 415, as a login's; the budget stays spent
			h.a.emit(r.Context(), Event{Type: EventLoginFailed, Reason: ReasonMalformedHeader})
			writeJSON(w, status, map[string]string{"error": strings.ToLower(http.StatusText(status))})
			return
		}
		proof, err := h.a.finishPasskeyLogin(r.Context(), handle, in.Credential)
		if err == nil {
			err = h.finishLogin(w, r, proof, in.Remember && h.offerRemember)
		}
		h.answerLogin(w, r, res, asLoginFailure(err), loginAnswer{
			username: proof.username, next: in.Next, jsonInvalid: msgPasskeyFailed, redirect: true,
			fail: func(status int, _, msg string) { writeJSON(w, status, map[string]string{"error": msg}) },
		})
	}))))
}

// asLoginFailure makes a passkey that did not verify a failed login's
// error (ErrInvalidCredentials), which the login core answers 401.
func asLoginFailure(err error) error {
	if errors.Is(err, ErrPasskeyFailed) && !isClientFailure(err) {
		return fmt.Errorf("%w: %w", ErrInvalidCredentials, err)
	}
	return err
}

// passkeyFactorBeginHandler starts the second step of a login with a
// passkey: the pending login's cookie (the password was right) ->
// the options for navigator.credentials.get, with the user's passkeys.
// No pending login, or a user without a passkey, gets the 401 of a failed
// login and spends the client's failure budget. Each begin stores a
// challenge row, so each also spends a token of PasskeyThrottle, as a
// passwordless begin does: a pending login must not be a way to fill the
// database.
func (h *handlers) passkeyFactorBeginHandler() http.Handler {
	return h.guard(methods(nil, h.protectPOST(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := h.reserve(w, r, h.passkeyStarts, ""); err != nil {
			h.refuseBasic(w, r, err)
			return
		}
		res, err := h.reserve(w, r, h.failures, "")
		if err != nil {
			h.refuseBasic(w, r, err)
			return
		}
		ctx := r.Context()
		p, err := h.a.pendingOf(ctx, h.pendingHandle(r))
		var c ceremony
		if err == nil {
			c, err = h.a.beginPasskeyFactor(ctx, p)
		}
		switch {
		case err == nil:
			res.cancel(r.Context())
			h.setCeremonyCookie(w, ceremonySecondFactor, c.handle)
			writeRawJSON(w, http.StatusOK, c.options)
		case errors.Is(err, errNoPendingLogin) || errors.Is(err, ErrPasskeyFailed):
			h.a.emit(ctx, Event{Type: EventLoginFailed, Username: p.username, Reason: ReasonNoPendingLogin})
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": msgPasskeyFailed})
		default:
			res.cancel(r.Context())
			h.failClosed(w, r, err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": msgPasskeysOff})
		}
	}))))
}

// passkeyFactorFinishHandler finishes the second step of a login with a
// passkey: the pending login's cookie, the challenge's, and
// {"credential"} -> the login's success through the login core (JSON 200
// {"username","redirect"}, a session). A failure gets the 401 of a failed
// login and spends the client's failure budget; the pending login stays
// for another try until it expires.
func (h *handlers) passkeyFactorFinishHandler() http.Handler {
	return h.guard(methods(nil, h.protectCeremony(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := h.reserve(w, r, h.failures, "")
		if err != nil {
			h.refuseBasic(w, r, err)
			return
		}
		ctx := r.Context()
		handle := h.ceremonyHandle(r, ceremonySecondFactor)
		h.setCeremonyCookie(w, ceremonySecondFactor, "")
		in, status := decodeCeremony(r)
		if status != 0 { // 400, 413 or 415, as a login's; the budget stays spent
			h.a.emit(ctx, Event{Type: EventLoginFailed, Reason: ReasonMalformedHeader})
			writeJSON(w, status, map[string]string{"error": strings.ToLower(http.StatusText(status))})
			return
		}
		var proof loginProof
		p, err := h.a.pendingOf(ctx, h.pendingHandle(r))
		if errors.Is(err, errNoPendingLogin) {
			h.a.emit(ctx, Event{Type: EventLoginFailed, Reason: ReasonNoPendingLogin})
			err = ErrInvalidCredentials
		}
		if err == nil {
			proof, err = h.a.finishPasskeyFactor(ctx, p, handle, in.Credential)
		}
		if err == nil {
			err = h.finishLogin(w, r, proof, p.remember)
		}
		h.answerLogin(w, r, res, asLoginFailure(err), loginAnswer{
			username: p.username, next: p.next, jsonInvalid: msgPasskeyFailed, redirect: true,
			fail: func(status int, _, msg string) { writeJSON(w, status, map[string]string{"error": msg}) },
		})
	}))))
}

// writeRawJSON writes b, JSON already, with status.
func writeRawJSON(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(b)
}

// PasskeysData is what the passkeys page ({Prefix}/passkeys of Routes)
// is executed with. Its strings are text, never HTML.
type PasskeysData struct {
	Action   string        // the path the forms post to: the one the client asked for
	Username string        // the signed-in user
	Passkeys []PasskeyInfo // the user's passkeys, the oldest first
	Error    string        // a message for the user, or ""
	// Notice confirms what the user just did, or is "": NoticeCode names
	// it (NoticePasskeyAdded, NoticePasskeyRenamed, NoticePasskeyRemoved).
	Notice     string
	NoticeCode string
	AppName    string // HTTPConfig.AppName, or ""
	HomePath   string // the link back to the application
	// PasskeyPath is where Routes is mounted as the browser sees it (see
	// FormData.PasskeyPath).
	PasskeyPath string
}

// Notices of the passkeys page (see NoticeSignedOut).
const (
	NoticePasskeyAdded   = "passkey_added"
	NoticePasskeyRenamed = "passkey_renamed"
	NoticePasskeyRemoved = "passkey_removed"
)

// passkeyNoticeMessage is the text of a passkey notice code.
func passkeyNoticeMessage(code string) string {
	switch code {
	case NoticePasskeyAdded:
		return "The passkey was added. You can sign in with it."
	case NoticePasskeyRenamed:
		return "The passkey was renamed."
	case NoticePasskeyRemoved:
		return "The passkey was removed. It signs in no more."
	}
	return ""
}

// passkeysHandler serves {Prefix}/passkeys: a signed-in user's passkeys.
// GET shows the page (JSON: an array of PasskeyInfo); POST takes the
// fields action ("rename" or "delete"), id and, to rename, name, as a
// form or JSON: a form is redirected (303) back to the page, which
// confirms it; JSON gets 204. An ID that is not the user's is 404, a bad
// name 400, a name taken 409.
func (h *handlers) passkeysHandler() http.Handler {
	post := h.protectPOST(http.HandlerFunc(h.postPasskeys))
	return h.requireSession(methods(http.HandlerFunc(h.getPasskeys), post))
}

func (h *handlers) getPasskeys(w http.ResponseWriter, r *http.Request) {
	code := r.URL.Query().Get("notice")
	h.showPasskeys(w, r, http.StatusOK, "", code, passkeyNoticeMessage(code))
}

// showPasskeys answers with the user's passkeys, as JSON or as the page,
// or with msg and status when msg is set.
func (h *handlers) showPasskeys(w http.ResponseWriter, r *http.Request, status int, msg, noticeCode, notice string) {
	if msg != "" && wantsJSON(r) {
		writeJSON(w, status, map[string]string{"error": msg})
		return
	}
	ctx := r.Context()
	username, _ := Username(ctx)
	list, err := h.a.Passkeys().List(ctx, username)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	if wantsJSON(r) {
		writeJSON(w, http.StatusOK, list)
		return
	}
	if notice == "" {
		noticeCode = ""
	}
	h.render(w, status, builtinPasskeys, PasskeysData{
		Action: formAction(r), Username: username, Passkeys: list, Error: msg,
		Notice: notice, NoticeCode: noticeCode, AppName: h.appName, HomePath: h.homePath, PasskeyPath: h.mountPath(r),
	})
}

func (h *handlers) postPasskeys(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	username, _ := Username(ctx)
	var action, id, name string
	status, _ := decodeBody(r, fieldSet{text: map[string]*string{"action": &action, "id": &id, "name": &name}})
	if status != 0 {
		h.showPasskeys(w, r, status, "The form could not be read. Reload the page and send it again.", "", "")
		return
	}
	var err error
	var notice string
	switch action {
	case "rename":
		err, notice = h.a.Passkeys().Rename(ctx, username, id, name), NoticePasskeyRenamed
	case "delete":
		err, notice = h.a.Passkeys().Delete(ctx, username, id), NoticePasskeyRemoved
	default:
		h.showPasskeys(w, r, http.StatusBadRequest, `action must be "rename" or "delete".`, "", "")
		return
	}
	switch {
	case err == nil && wantsJSON(r):
		w.WriteHeader(http.StatusNoContent)
	case err == nil:
		h.redirect(w, r, noticeURL(formAction(r), notice))
	case errors.Is(err, ErrNotFound):
		h.showPasskeys(w, r, http.StatusNotFound, "No such passkey.", "", "")
	case errors.Is(err, ErrInvalidPasskeyName):
		h.showPasskeys(w, r, http.StatusBadRequest, "A passkey's name has 1 to 64 printable characters and no space at either end.", "", "")
	case errors.Is(err, ErrPasskeyExists):
		h.showPasskeys(w, r, http.StatusConflict, "You have a passkey of that name already. Choose another.", "", "")
	default:
		h.unavailable(w, r, err)
	}
}

// passkeysBeginHandler starts the registration of a passkey by the
// signed-in user, who gives their password again ({"password"}): it is
// checked as a login's (a wrong one counts toward the lockout and spends
// the client's failure budget: 401), and the passkey is bound to it.
func (h *handlers) passkeysBeginHandler() http.Handler {
	return h.requireSession(methods(nil, h.protectPOST(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		username, _ := Username(ctx)
		var pw string
		status, code := decodeBody(r, fieldSet{text: map[string]*string{"password": &pw}})
		res, err := h.reserve(w, r, h.failures, username)
		if err != nil {
			h.refuseBasic(w, r, err)
			return
		}
		switch {
		case status != 0:
			writeJSON(w, status, codedError{codeMessage(code), code})
			return
		case pw == "":
			writeJSON(w, http.StatusBadRequest, codedError{codeMessage(CodeCurrentPasswordRequired), CodeCurrentPasswordRequired})
			return
		}
		verified, err := h.a.authenticate(ctx, username, pw, h.newHashWait(), passwordAgain)
		if err == nil {
			res.cancel(r.Context())
			var c ceremony
			if c, err = h.a.beginRegistration(ctx, username, verified.hash); err == nil {
				h.setCeremonyCookie(w, ceremonyRegister, c.handle)
				writeRawJSON(w, http.StatusOK, c.options)
				return
			}
		}
		switch {
		case isClientFailure(err):
			writeJSON(w, http.StatusUnauthorized, codedError{"invalid username or password", CodeInvalidCredentials})
		case errors.Is(err, ErrPasskeyExists):
			writeJSON(w, http.StatusConflict, map[string]string{"error": "you have as many passkeys as a user may have: remove one first"})
		default:
			if !spendsBudget(err) {
				res.cancel(r.Context())
			}
			h.failClosed(w, r, err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": msgPasskeysOff})
		}
	}))))
}

// passkeysFinishHandler finishes the registration the signed-in user
// began: {"name","credential"} -> 201 the PasskeyInfo. A credential that
// does not verify (or a challenge used, expired or another user's) is 400
// and spends the client's failure budget; a bad name 400, a name or
// credential registered already 409.
func (h *handlers) passkeysFinishHandler() http.Handler {
	return h.requireSession(methods(nil, h.protectCeremony(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		username, _ := Username(ctx)
		res, err := h.reserve(w, r, h.failures, username)
		if err != nil {
			h.refuseBasic(w, r, err)
			return
		}
		handle := h.ceremonyHandle(r, ceremonyRegister)
		h.setCeremonyCookie(w, ceremonyRegister, "")
		in, status := decodeCeremony(r)
		if status != 0 {
			writeJSON(w, status, map[string]string{"error": http.StatusText(status)})
			return
		}
		info, err := h.a.finishRegistration(ctx, username, handle, in.Name, in.Credential)
		switch {
		case err == nil:
			res.cancel(r.Context())
			writeJSON(w, http.StatusCreated, info)
		case errors.Is(err, ErrPasskeyFailed):
			h.a.logger.InfoContext(ctx, "authn: a passkey registration failed", "user", username, "error", err, "client", clientIP(ctx))
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": msgPasskeyInvalid})
		case errors.Is(err, ErrInvalidPasskeyName):
			res.cancel(r.Context())
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "a passkey's name has 1 to 64 printable characters and no space at either end"})
		case errors.Is(err, ErrPasskeyExists):
			res.cancel(r.Context())
			writeJSON(w, http.StatusConflict, map[string]string{"error": "you have this passkey, or one of that name, already"})
		default:
			res.cancel(r.Context())
			h.failClosed(w, r, err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": msgPasskeysOff})
		}
	}))))
}
