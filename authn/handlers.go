package authn

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/minimost/minimost/authn/password"
	"github.com/minimost/minimost/middleware"
)

//go:embed templates/*.html
var templateFiles embed.FS

// defaultTemplates are the built-in forms. Parsing embedded, fixed files
// cannot fail at run time without failing every test first.
var defaultTemplates = template.Must(template.ParseFS(templateFiles, "templates/*.html"))

// FormData is what the login, registration and password templates are
// executed with. Its strings are text, never HTML: html/template escapes
// them.
type FormData struct {
	Action       string // the path the form posts to: the one the client asked for, before any http.StripPrefix
	Error        string // a message for the user, or ""
	Username     string // the name entered, when well-formed; the password form: the signed-in user
	Next         string // login: where to go after signing in
	LoginPath    string
	RegisterPath string // the registration page the login form links, or "" for none
	// MinLength is, for registration and the password form, the password
	// policy's minimum, in characters.
	MinLength int
	// MaxLength is, for registration and the password form, the most
	// characters a password may have: the policy's MaxLength, or MaxBytes
	// when that is lower. The built-in form sets it as the input's
	// maxlength, which browsers count in UTF-16 units (a character
	// outside the BMP counts twice).
	MaxLength int
	// MaxBytes is, for registration and the password form, the policy's
	// limit in bytes, or 0 when it has none (see PasswordPolicy.MaxBytes):
	// 72 with bcrypt.
	MaxBytes int
	// Done is true, for registration, when the account was created, and
	// for the password form, when the password was changed.
	Done bool

	// ErrorCode names the reason for Error, one of the Code constants
	// (CodeInvalidCredentials, CodePasswordTooShort, ...), or is "" when
	// Error is: a template may show its own words for it.
	ErrorCode string

	// OfferRemember is true, for the login form, when remember-me is
	// enabled (see HTTPConfig.RememberFor): the form shows a checkbox
	// named "remember". Remember is whether it was ticked, when the form
	// is shown again.
	OfferRemember bool
	Remember      bool

	// AppName is HTTPConfig.AppName, for the title and heading, or "".
	AppName string
	// HomePath is the link back to the application (HTTPConfig.HomePath,
	// its default applied): a local path.
	HomePath string
	// Notice says that what the user asked for was done, in the library's
	// own words, or is "". NoticeCode names it, one of the Notice
	// constants, so that a template may show its own words. The login
	// form has NoticeSignedOut after a logout.
	Notice     string
	NoticeCode string

	// ResetPath is, for the login form, the page that sends a password
	// reset link, or "" when there is none (no Config.Mailer).
	ResetPath string
	// AskEmail is true, for registration, when the form asks for an
	// optional email address (HTTPConfig.RegistrationEmail); EmailSent,
	// after it, when a link to verify it was queued.
	AskEmail  bool
	EmailSent bool
	// SecondFactors, for the code page of a login's second step, lists
	// what may finish the login: "totp", "recovery_code" (see the Method
	// constants).
	SecondFactors []string
	// TOTP is, for the TOTP page, the state of the user's second factor
	// and what to show: a new secret, recovery codes.
	TOTP *TOTPPage

	// Passkeys is true, for the login form of Routes with passkeys on
	// (HTTPConfig.WebAuthnRPID), when the form offers "Sign in with a
	// passkey": the built-in form then loads passkey.js (relative to the
	// login page: Routes serves it beside) and marks the username field
	// autocomplete="username webauthn" for the browser's autofill. It is
	// true on the page of a login's second step too, which offers the
	// passkey when SecondFactors lists "passkey".
	Passkeys bool
	// PasskeyPath is where Routes serves its passkey routes, as the
	// browser sees it (the mount point: "" or "/auth"): the built-in
	// pages load PasskeyPath+"/passkey.js" and call the routes under it.
	PasskeyPath string
}

// Offers reports whether a login's second step may be finished by method
// ("totp", "recovery_code", "passkey"): whether SecondFactors lists it.
func (f FormData) Offers(method string) bool {
	for _, m := range f.SecondFactors {
		if m == method {
			return true
		}
	}
	return false
}

// Notices name, in FormData.NoticeCode and SessionsData.NoticeCode, what a
// page confirms was done. Like the Code constants, they are stable. A page
// after a redirect learns which one to show from its URL's notice
// parameter, whose value is one of these codes: only a code the page
// knows shows anything, and always in the library's fixed words (see
// noticeMessage), so that a link cannot put words of its own on the page.
const (
	// NoticeSignedOut: the login form after a logout, or after the user
	// ended their own session on the sessions page. It is not shown to a
	// request that carries a session cookie (the browser clears it at
	// logout), so that a link cannot tell a signed-in user otherwise.
	NoticeSignedOut = "signed_out"
	// NoticeSessionEnded: the sessions page, after the user ended one of
	// their other sessions.
	NoticeSessionEnded = "session_ended"
	// NoticeOtherSessionsEnded: the sessions page, after the user ended
	// all their other sessions.
	NoticeOtherSessionsEnded = "other_sessions_ended"
	// NoticePasswordReset: the login form after a password reset.
	NoticePasswordReset = "password_reset"
)

// noticeMessage is the text of a notice code, or "" for any other value.
func noticeMessage(code string) string {
	switch code {
	case NoticeSignedOut:
		return "You are signed out."
	case NoticeSessionEnded:
		return "The session was ended. It is signed out."
	case NoticeOtherSessionsEnded:
		return "All your other sessions were ended. They are signed out."
	case NoticePasswordReset:
		return "Your password was reset, and every session signed out. Sign in with the new password."
	}
	return ""
}

// noticeURL is target with the notice code set as its notice parameter:
// where a redirect sends the browser to see the page confirm it.
func noticeURL(target, code string) string {
	sep := "?"
	if strings.Contains(target, "?") {
		sep = "&"
	}
	return target + sep + url.Values{"notice": {code}}.Encode()
}

// noticeOf returns the notice that r's URL asks for, when it is one of
// codes: its code and its fixed message; otherwise "" and "".
func noticeOf(r *http.Request, codes ...string) (code, msg string) {
	q := r.URL.Query().Get("notice")
	for _, c := range codes {
		if q == c {
			return c, noticeMessage(c)
		}
	}
	return "", ""
}

// Messages shown to users. Every failed login shows the same one.
const (
	msgInvalid     = "Invalid username or password."
	msgMissing     = "Enter your username and password."
	msgThrottled   = "Too many failed attempts. Try again later."
	msgUnavailable = "Signing in is unavailable right now. Try again shortly."
)

// badRequestMessage tells a user what was wrong with a body that could not
// be read.
func badRequestMessage(status int) string {
	switch status {
	case http.StatusRequestEntityTooLarge:
		return "The form is too large."
	case http.StatusUnsupportedMediaType:
		return "Send the form as application/x-www-form-urlencoded, multipart/form-data or application/json."
	}
	return msgMissing
}

// LoginHandler serves the login route. GET shows an HTML form (saying "You
// are signed out." after a logout: see NoticeSignedOut); POST takes
// the fields username, password, an optional next and an optional remember
// (a checkbox: "on", "true" or "1"), as application/x-www-form-urlencoded
// or multipart/form-data (what fetch sends with new FormData(form); no
// files), or a JSON object {"username","password","next","remember"}
// (remember a boolean). A correct login starts a new session (cookie; with
// remember, a cookie with a Max-Age and a session that lasts
// HTTPConfig.RememberFor) and, for a form, redirects (303) to next when it
// is a local path, else to HTTPConfig.AfterLoginPath (an htmx request: 200
// with HX-Redirect);
// JSON gets 200 {"username":…}. Every
// failed login (unknown user, malformed name, wrong password, locked
// account) gets the same 401 answer for the same request: the form shown
// again keeps the name typed, when it is a valid username, whatever the
// account's state. See the package documentation for the other statuses.
//
// The right password of an account with a second factor (see TOTP) starts
// no session: it answers 200 {"second_factor":[...]} to JSON, and the code
// page to a form, with a pending login's cookie; the second step is
// {Prefix}/login/verify, which only Routes serves.
func (a *Authenticator) LoginHandler() http.Handler { return a.handlers.loginHandler() }

// loginHandler is LoginHandler.
func (h *handlers) loginHandler() http.Handler {
	get := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := h.loginForm(r, "", "", r.URL.Query().Get("next"))
		// After a logout the browser holds no session cookie: a request
		// that sends one is still signed in, whatever its URL says.
		if len(r.CookiesNamed(h.cookieName)) == 0 {
			f.NoticeCode, f.Notice = noticeOf(r, NoticeSignedOut, NoticePasswordReset)
		}
		h.render(w, http.StatusOK, h.loginTemplate, f)
	})
	post := h.protectPOST(http.HandlerFunc(h.postLogin))
	return h.guard(methods(get, post))
}

func (h *handlers) loginForm(r *http.Request, msg, username, next string) FormData {
	if CheckUsername(username) != nil {
		username = "" // it may be a password typed in the wrong field
	}
	return FormData{
		Action: formAction(r), Error: msg, Username: username, Next: localRedirect(next, ""),
		LoginPath: h.loginPath, RegisterPath: h.registerPath, OfferRemember: h.offerRemember,
		AppName: h.appName, HomePath: h.homePath, ResetPath: h.resetPath,
		Passkeys: h.offerPasskeys, PasskeyPath: h.mountPath(r),
	}
}

// mountPath is where the browser sees Routes mounted: the path of r (a
// page of Routes) without its route, under http.StripPrefix too.
func (h *handlers) mountPath(r *http.Request) string {
	p := formAction(r)
	for _, route := range []string{"/login/verify", "/login", "/passkeys"} {
		if mount, ok := strings.CutSuffix(p, route); ok {
			return mount
		}
	}
	return h.prefix
}

func (h *handlers) postLogin(w http.ResponseWriter, r *http.Request) {
	in, status, code := decodeCredentials(r)
	isJSON := wantsJSON(r)
	fail := func(status int, code, msg, jsonMsg string) {
		if isJSON {
			writeJSON(w, status, map[string]string{"error": jsonMsg})
			return
		}
		// The name typed is shown again whatever went wrong: it is the
		// request's, so the page is the same for the same request
		// whatever the account's state. loginForm drops a name that is
		// not a valid username: it may be a password typed there.
		f := h.loginForm(r, msg, in.Username, in.Next)
		f.ErrorCode, f.Remember = code, in.Remember && f.OfferRemember
		h.render(w, status, h.loginTemplate, f)
	}
	// Every login may fail: its claim takes a token of the client's
	// budget before the password is checked, given back when it succeeds.
	ctx, t, ok := h.attempt(w, r, in.Username)
	if !ok {
		fail(http.StatusTooManyRequests, CodeThrottled, msgThrottled, msgTooManyFailures)
		return
	}
	if status != 0 {
		// No claim: the token is taken here.
		_, err := t.spend(ctx, h.web.hashWait)
		switch {
		case errors.Is(err, errOverBudget):
			h.settle(w, r, t, in.Username, err)
			fail(http.StatusTooManyRequests, CodeThrottled, msgThrottled, msgTooManyFailures)
			return
		case err != nil:
			h.failClosed(w, r, err)
			fail(http.StatusServiceUnavailable, CodeUnavailable, msgUnavailable, "service unavailable, try again later")
			return
		}
		h.a.emit(r.Context(), Event{Type: EventLoginFailed, Username: loggable(in.Username), Reason: ReasonMalformedHeader})
		fail(status, code, badRequestMessage(status), strings.ToLower(http.StatusText(status)))
		return
	}
	remember := in.Remember && h.offerRemember
	// A login replaces the browser's pending login, if any.
	if err := h.dropPending(w, r); err != nil {
		h.failClosed(w, r, err)
		fail(http.StatusServiceUnavailable, CodeUnavailable, msgUnavailable, "service unavailable, try again later")
		return
	}
	p, err := h.a.authenticate(ctx, in.Username, in.Password, h.newHashWait(), passwordLogin)
	if err == nil && p.factors != 0 {
		// The right password of an account with a second factor: a
		// pending login, no session yet, and the counter not reset.
		var handle string
		if handle, err = h.a.startPending(r.Context(), p, remember, localRedirect(in.Next, "")); err == nil {
			t.cancel(ctx) // the password was right: its token comes back
			h.answerSecondFactor(w, r, handle, p.factors)
			return
		}
	} else if err == nil {
		err = h.startSession(w, r, in.Username, p.hash, remember)
	}
	h.answerLogin(w, r, t, err, loginAnswer{
		username: in.Username, next: in.Next, jsonInvalid: "invalid username or password",
		fail: func(status int, code, msg string) { fail(status, code, msg, "") },
	})
}

// startSession ends the sessions the request came with, if any (a new
// token at every login), and sets the cookie of a new one for username,
// whose password was verified against the hash verified; a remembered one
// (remember-me) when remember is true. It reports the login as succeeded,
// or as failed when the account changed since the password check.
func (h *handlers) startSession(w http.ResponseWriter, r *http.Request, username, verified string, remember bool) error {
	return h.startSessionWith(w, r, username, remember, func(ctx context.Context) (string, error) {
		return h.a.createSession(ctx, username, verified, remember, newSessionClient(r))
	})
}

// startSessionWith is startSession with the insert of the session,
// create, which returns its token: the password's (createSession) or a
// passkey's (createPasskeySession), each under its lock rule.
func (h *handlers) startSessionWith(w http.ResponseWriter, r *http.Request, username string, remember bool, create func(context.Context) (string, error)) error {
	ctx := r.Context()
	if _, err := h.endSessions(ctx, r); err != nil {
		return err
	}
	start := h.a.now()
	token, err := create(ctx)
	if errors.Is(err, errSessionRefused) {
		return h.a.changedDuringLogin(ctx, username)
	}
	if err != nil {
		return err
	}
	h.clearTossedCookies(w, r)
	c := h.sessionCookie(token)
	if remember {
		h.keepCookie(c, start.Add(h.a.lifetimeOf(true)))
	}
	http.SetCookie(w, c)
	h.warnInsecureCookie(r)
	h.a.emit(ctx, Event{Type: EventLoginSucceeded, Username: username})
	return nil
}

// LogoutHandler serves the logout route: POST ends the request's session in
// the database and clears its cookie, then redirects (303) to the login
// page with the query notice=signed_out (an htmx request: 200 with
// HX-Redirect), where the built-in form says "You are signed out." (see
// NoticeSignedOut), or answers 204 to an API client. Other methods get 405.
func (a *Authenticator) LogoutHandler() http.Handler { return a.handlers.logoutHandler() }

// logoutHandler is LogoutHandler.
func (h *handlers) logoutHandler() http.Handler {
	post := h.protectPOST(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every cookie of the name: one tossed in from elsewhere too.
		users, err := h.endSessions(r.Context(), r)
		if err == nil {
			err = h.dropPending(w, r)
		}
		if err != nil {
			h.unavailable(w, r, err)
			return
		}
		h.clearTossedCookies(w, r)
		http.SetCookie(w, h.sessionCookie(""))
		for _, username := range users {
			h.a.emit(r.Context(), Event{Type: EventLogout, Username: username})
		}
		if wantsJSON(r) {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.redirect(w, r, noticeURL(h.loginPath, NoticeSignedOut))
	}))
	return h.guard(methods(nil, post))
}

// RegisterHandler serves the registration route. GET shows an HTML form;
// POST takes the fields username and password, as a form (urlencoded or
// multipart, as LoginHandler) or as JSON, and answers 201 when the account
// was created, 400 naming the username or password rule broken, 409 when
// the name is taken, 429 when the client is over its failure budget or its
// registration budget (HTTPConfig.RegisterThrottle, which every
// registration spends, successful or not) and 503 when the database or the
// hashing capacity is not available. Every refusal says in plain words what
// to do, with a stable code (see CodeUsernameRequired and the others) in
// FormData.ErrorCode, and in JSON as {"error":…,"code":…}; a JSON success
// is {"username":…}. Registering does not sign in.
func (a *Authenticator) RegisterHandler() http.Handler { return a.handlers.registerHandler() }

// registerHandler is RegisterHandler.
func (h *handlers) registerHandler() http.Handler {
	get := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.render(w, http.StatusOK, h.registerTemplate, h.registerForm(r, "", ""))
	})
	post := h.protectPOST(http.HandlerFunc(h.postRegister))
	return h.guard(methods(get, post))
}

func (h *handlers) registerForm(r *http.Request, msg, username string) FormData {
	f := h.withPolicy(h.loginForm(r, msg, username, ""))
	f.ResetPath = ""
	f.AskEmail = h.askEmail()
	return f
}

func (h *handlers) postRegister(w http.ResponseWriter, r *http.Request) {
	in, status, code := decodeCredentials(r)
	isJSON := wantsJSON(r)
	answer := func(status int, code, msg string) {
		switch {
		case isJSON && status == http.StatusCreated:
			writeJSON(w, status, map[string]string{"username": in.Username})
			return
		case isJSON:
			writeJSON(w, status, codedError{msg, code})
			return
		}
		f := h.registerForm(r, msg, in.Username)
		f.ErrorCode = code
		f.Done = status == http.StatusCreated
		f.EmailSent = f.Done && in.Email != ""
		h.render(w, status, h.registerTemplate, f)
	}
	// A registration may fail, and spends the client's failure budget
	// then; and every one spends the registration budget, successes too,
	// since each costs a hash and a row.
	res, err := h.reserve(w, r, h.failures, in.Username)
	switch {
	case errors.Is(err, errOverBudget):
		answer(http.StatusTooManyRequests, CodeThrottled, msgThrottled)
		return
	case err != nil:
		h.failClosed(w, r, err)
		answer(http.StatusServiceUnavailable, CodeUnavailable, codeMessage(CodeUnavailable))
		return
	}
	if status != 0 {
		answer(status, code, codeMessage(code))
		return
	}
	if in.Email != "" && !h.askEmail() {
		in.Email = "" // not asked for: ignored, as any field the form has not
	}
	if in.Email != "" && CheckEmail(in.Email) != nil {
		answer(http.StatusBadRequest, CodeEmailInvalid, codeMessage(CodeEmailInvalid))
		return
	}
	regRes, err := h.reserve(w, r, h.registrations, in.Username)
	switch {
	case errors.Is(err, errOverBudget):
		res.cancel(r.Context()) // not a failure: a registration too many
		answer(http.StatusTooManyRequests, CodeTooManyRegistrations, codeMessage(CodeTooManyRegistrations))
		return
	case err != nil:
		res.cancel(r.Context()) // not the client's doing
		h.failClosed(w, r, err)
		answer(http.StatusServiceUnavailable, CodeUnavailable, codeMessage(CodeUnavailable))
		return
	}
	err = h.a.register(r.Context(), in.Username, in.Password, h.newHashWait())
	var rule *RuleError
	switch {
	case err == nil:
		res.cancel(r.Context())
		if in.Email != "" {
			h.requestVerification(r, in.Username, in.Email)
		}
		answer(http.StatusCreated, "", "")
	case errors.As(err, &rule):
		answer(http.StatusBadRequest, rule.Code, rule.Message())
	case errors.Is(err, password.ErrPasswordTooLong):
		// A Hasher that did not declare its limit up front: no number
		// to give.
		answer(http.StatusBadRequest, CodePasswordTooManyBytes, ruleMessage(CodePasswordTooManyBytes, 0))
	case errors.Is(err, ErrInvalidUsername): // CheckUsername's are RuleErrors
		answer(http.StatusBadRequest, CodeUsernameInvalidCharacters, ruleMessage(CodeUsernameInvalidCharacters, 0))
	case errors.Is(err, ErrInvalidPassword):
		answer(http.StatusBadRequest, CodePasswordRejected, ruleMessage(CodePasswordRejected, 0))
	case errors.Is(err, ErrUserExists):
		answer(http.StatusConflict, CodeUsernameTaken, codeMessage(CodeUsernameTaken))
	default:
		res.cancel(r.Context()) // not the client's doing
		regRes.cancel(r.Context())
		h.failClosed(w, r, err)
		answer(http.StatusServiceUnavailable, CodeUnavailable, codeMessage(CodeUnavailable))
	}
}

// codedError is the JSON body of a refusal with a code.
type codedError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// codeMessage says in plain words what to do about a refused registration
// whose code is not a RuleError's.
func codeMessage(code string) string {
	switch code {
	case CodeUsernameRequired, CodePasswordRequired:
		return ruleMessage(code, 0)
	case CodeCurrentPasswordRequired:
		return "Enter your current password."
	case CodeUsernameTaken:
		return "That username is taken. Choose another."
	case CodeBodyTooLarge:
		return "The form is too large. Shorten what you typed and send it again."
	case CodeUnsupportedMediaType:
		return badRequestMessage(http.StatusUnsupportedMediaType)
	case CodeTooManyRegistrations:
		return "Too many accounts were created from your network. Try again later."
	case CodeUnavailable:
		return "Registration is unavailable right now. Try again shortly."
	case CodeEmailInvalid:
		return "Enter one email address, such as name@example.com."
	}
	return "The form could not be read. Reload the page and send it again."
}

// RequireSession returns a handler that runs next for requests with a live
// session, with the username in the context (see Username). Without one, a
// browser is redirected (303) to the login page (HTTPConfig.LoginPath) with
// next set to the path and query it asked for, and an API client gets 401
// JSON. An htmx request (HX-Request: true) gets 401 with HX-Redirect set to
// that login URL (with next only for GET and HEAD: another method's URL is
// no page to come back to), which htmx follows with a full page load. A
// database error gets 503; next never runs then.
func (a *Authenticator) RequireSession(next http.Handler) http.Handler {
	return a.handlers.requireSession(next)
}

// requireSession is RequireSession.
func (h *handlers) requireSession(next http.Handler) http.Handler {
	return h.withSession(next, http.HandlerFunc(h.loginRequired))
}

// loginRequired answers a request that RequireSession refused for want of
// a session.
func (h *handlers) loginRequired(w http.ResponseWriter, r *http.Request) {
	page := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case isHTMX(r) && !page:
		h.redirectWith(w, r, h.loginPath, http.StatusUnauthorized)
	case isHTMX(r):
		h.redirectWith(w, r, h.loginURL(r), http.StatusUnauthorized)
	case wantsJSON(r) || !page:
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "authentication required"})
	default:
		h.redirect(w, r, h.loginURL(r))
	}
}

// loginURL is the login page with next set to the URL the browser asked
// for, under http.StripPrefix too.
func (h *handlers) loginURL(r *http.Request) string {
	next, query := clientPath(r)
	if query != "" {
		next += "?" + query
	}
	return h.loginPath + "?" + url.Values{"next": {next}}.Encode()
}

// OptionalSession returns a handler that always runs next: with the
// username in the context (see Username) when the request has a live
// session, and as it came otherwise (no session cookie, a malformed,
// unknown, expired or idle one, or two cookies of the session's name: one
// set from elsewhere, such as a sibling subdomain, and nothing says which
// is this site's; RequireSession refuses those too). It never redirects
// and never answers 401, for pages that show more to signed-in users than
// to others.
//
// A request that carries a session cookie that cannot be checked (a
// database error, or the database file missing or broken) gets 503 and
// next does not run: it fails closed, as RequireSession does, rather than
// run next as anonymous, so that a signed-in user never gets a page, or
// makes a change, as somebody else than who they are, and the page can
// trust that no user in the context means no session it could tell was
// the client's. A request without a session cookie (or with one that is
// not a token of this package) costs no database read and runs next
// whatever the state of the database.
func (a *Authenticator) OptionalSession(next http.Handler) http.Handler {
	return a.handlers.optionalSession(next)
}

// optionalSession is OptionalSession.
func (h *handlers) optionalSession(next http.Handler) http.Handler {
	checked := h.withSession(next, next)
	anonymous := middleware.Chain(middleware.ClientIP(h.trusted), middleware.NoStore)(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !validToken(h.sessionToken(r)) {
			anonymous.ServeHTTP(w, r) // nothing to look up: no database involved
			return
		}
		checked.ServeHTTP(w, r)
	})
}

// withSession is the session lookup of RequireSession and OptionalSession:
// inside guard, it runs next with the username in the context when the
// request has a live session, anonymous when it has none, and answers 503
// when the database cannot say.
func (h *handlers) withSession(next, anonymous http.Handler) http.Handler {
	return h.guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		username, err := h.a.sessionUser(r.Context(), h.sessionToken(r))
		switch {
		case err == nil:
			next.ServeHTTP(w, withUsername(r, username))
		case errors.Is(err, errNoSession):
			anonymous.ServeHTTP(w, r)
		default:
			h.unavailable(w, r, err)
		}
	}))
}

// methods dispatches GET and HEAD to get and POST to post, and answers
// other methods 405 with Allow. A nil get allows POST only.
func methods(get, post http.Handler) http.Handler {
	allow := "GET, HEAD, POST"
	if get == nil {
		allow = "POST"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost:
			post.ServeHTTP(w, r)
		case get != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead):
			get.ServeHTTP(w, r)
		default:
			w.Header().Set("Allow", allow)
			writeError(w, r, http.StatusMethodNotAllowed, "method not allowed")
		}
	})
}

// render executes a page's template (a form's with a FormData), with the
// Content-Security-Policy of HTTPConfig.ContentSecurityPolicy.
func (h *handlers) render(w http.ResponseWriter, status int, t *template.Template, data any) {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Content-Security-Policy", h.contentSecurityPolicy(t))
	hdr.Set("X-Content-Type-Options", "nosniff")
	if hdr.Get("Referrer-Policy") == "" { // the recovery pages set no-referrer
		hdr.Set("Referrer-Policy", "same-origin")
	}
	w.WriteHeader(status)
	if err := t.Execute(w, data); err != nil {
		h.a.logger.Error("authn: rendering a form", "error", err)
	}
}

// builtinLogin, builtinRegister, builtinPassword and builtinSessions are
// the built-in pages, told apart from custom ones by identity: a custom
// template may have the same name.
var (
	builtinLogin    = defaultTemplates.Lookup("login.html")
	builtinRegister = defaultTemplates.Lookup("register.html")
	builtinPassword = defaultTemplates.Lookup("password.html")
	builtinSessions = defaultTemplates.Lookup("sessions.html")

	builtinReset        = defaultTemplates.Lookup("reset.html")
	builtinResetConfirm = defaultTemplates.Lookup("reset_confirm.html")
	builtinEmail        = defaultTemplates.Lookup("email.html")
	builtinPasskeys     = defaultTemplates.Lookup("passkeys.html")
	builtinVerify       = defaultTemplates.Lookup("login_verify.html")
	builtinTOTP         = defaultTemplates.Lookup("totp.html")
)

// contentSecurityPolicy is the policy of a page of t: the configured one,
// else the strict one of the built-in forms, which load nothing, or a
// same-origin one for a custom template, which may load its own files.
func (h *handlers) contentSecurityPolicy(t *template.Template) string {
	switch {
	case h.csp != "":
		return h.csp
	case t == builtinLogin && h.offerPasskeys, t == builtinVerify && h.offerPasskeys, t == builtinPasskeys:
		return PasskeyContentSecurityPolicy
	case t == builtinTOTP:
		// The TOTP page shows its QR code as a data: image.
		return strings.Replace(DefaultContentSecurityPolicy, "default-src 'none';", "default-src 'none'; img-src data:;", 1)
	case t == builtinLogin || t == builtinRegister || t == builtinPassword || t == builtinSessions || t == builtinVerify,
		t == builtinReset || t == builtinResetConfirm || t == builtinEmail:
		return DefaultContentSecurityPolicy
	}
	return CustomContentSecurityPolicy
}
