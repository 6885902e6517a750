package authn

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/minimost/minimost/authn/password"
	"github.com/minimost/minimost/middleware"
)

//go:embed templates/*.html
var templateFiles embed.FS

// defaultTemplates are the built-in forms. Parsing embedded, fixed files
// cannot fail at run time without failing every test first.
var defaultTemplates = template.Must(template.ParseFS(templateFiles, "templates/*.html"))

// FormData is what the login, registration and password templates are
// executed with.
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

// LoginHandler serves the login route. GET shows an HTML form; POST takes
// the fields username, password, an optional next and an optional remember
// (a checkbox: "on", "true" or "1"), as application/x-www-form-urlencoded
// or multipart/form-data (what fetch sends with new FormData(form); no
// files), or a JSON object {"username","password","next","remember"}
// (remember a boolean). A correct login starts a new session (cookie; with
// remember, a cookie with a Max-Age and a session that lasts
// HTTPConfig.RememberFor) and, for a form, redirects (303) to next when it
// is a local path, else to "/" (an htmx request: 200 with HX-Redirect);
// JSON gets 200 {"username":…}. Every
// failed login (unknown user, malformed name, wrong password, locked
// account) gets the same 401 answer for the same request: the form shown
// again keeps the name typed, when it is a valid username, whatever the
// account's state. See the package documentation for the other statuses.
func (a *Authenticator) LoginHandler() http.Handler { return a.handlers.loginHandler() }

// loginHandler is LoginHandler.
func (h *handlers) loginHandler() http.Handler {
	get := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.render(w, http.StatusOK, h.loginTemplate, h.loginForm(r, "", "", r.URL.Query().Get("next")))
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
	}
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
	// Every login may fail: reserve a token of the client's budget before
	// it is checked, given back when it succeeds.
	res, ok := h.reserve(w, r, h.throttle, in.Username)
	if !ok {
		fail(http.StatusTooManyRequests, CodeThrottled, msgThrottled, msgTooManyFailures)
		return
	}
	if status != 0 {
		h.a.emit(r.Context(), Event{Type: EventLoginFailed, Username: loggable(in.Username), Reason: ReasonMalformedHeader})
		fail(status, code, badRequestMessage(status), strings.ToLower(http.StatusText(status)))
		return
	}
	stored, err := h.a.authenticate(r.Context(), in.Username, in.Password, h.newHashWait())
	if err == nil {
		err = h.startSession(w, r, in.Username, stored, in.Remember && h.offerRemember)
	}
	if !isClientFailure(err) {
		res.Cancel() // a success, or not the client's failure
	}
	switch {
	case isClientFailure(err):
		fail(http.StatusUnauthorized, CodeInvalidCredentials, msgInvalid, "invalid username or password")
	case err != nil:
		h.failClosed(w, r, err)
		fail(http.StatusServiceUnavailable, CodeUnavailable, msgUnavailable, "service unavailable, try again later")
	case isJSON:
		writeJSON(w, http.StatusOK, map[string]string{"username": in.Username})
	default:
		h.redirect(w, r, localRedirect(in.Next, "/"))
	}
}

// startSession ends the sessions the request came with, if any (a new
// token at every login), and sets the cookie of a new one for username,
// whose password was verified against the hash verified; a remembered one
// (remember-me) when remember is true. It reports the login as succeeded,
// or as failed when the account changed since the password check.
func (h *handlers) startSession(w http.ResponseWriter, r *http.Request, username, verified string, remember bool) error {
	ctx := r.Context()
	if _, err := h.endSessions(ctx, r); err != nil {
		return err
	}
	start := h.a.now()
	token, err := h.a.createSession(ctx, username, verified, remember, newSessionClient(r))
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
// page (an htmx request: 200 with HX-Redirect), or answers 204 to an API
// client. Other methods get 405.
func (a *Authenticator) LogoutHandler() http.Handler { return a.handlers.logoutHandler() }

// logoutHandler is LogoutHandler.
func (h *handlers) logoutHandler() http.Handler {
	post := h.protectPOST(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every cookie of the name: one tossed in from elsewhere too.
		users, err := h.endSessions(r.Context(), r)
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
		h.redirect(w, r, h.loginPath)
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
	return h.withPolicy(h.loginForm(r, msg, username, ""))
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
		h.render(w, status, h.registerTemplate, f)
	}
	// A registration may fail, and spends the client's failure budget
	// then; and every one spends the registration budget, successes too,
	// since each costs a hash and a row.
	res, ok := h.reserve(w, r, h.throttle, in.Username)
	if !ok {
		answer(http.StatusTooManyRequests, CodeThrottled, msgThrottled)
		return
	}
	if status != 0 {
		answer(status, code, codeMessage(code))
		return
	}
	regRes, ok := h.reserve(w, r, h.registerThrottle, in.Username)
	if !ok {
		res.Cancel() // not a failure: a registration too many
		answer(http.StatusTooManyRequests, CodeTooManyRegistrations, codeMessage(CodeTooManyRegistrations))
		return
	}
	err := h.a.register(r.Context(), in.Username, in.Password, h.newHashWait())
	var rule *RuleError
	switch {
	case err == nil:
		res.Cancel()
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
		res.Cancel() // not the client's doing
		regRes.Cancel()
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

// redirect sends the client to target, the URL the caller would give
// http.Redirect (a local path: localRedirect's, or LoginPath), with a 303.
// Every redirect of the handlers goes through it, so that an htmx request
// (HX-Request: true) gets instead 200 with HX-Redirect set to the Location
// the 303 would have had, which htmx follows with a full page load (a 303
// it would follow inside its request, and swap the page it got into the
// element that asked). HX-Request is a header any client can send: it
// chooses the shape of the answer and nothing else, the target is the same.
func (h *handlers) redirect(w http.ResponseWriter, r *http.Request, target string) {
	h.redirectWith(w, r, target, http.StatusOK)
}

// redirectWith is redirect with the status of the htmx answer: 200, or 401
// for a request refused for want of a session, whose body then says so.
func (h *handlers) redirectWith(w http.ResponseWriter, r *http.Request, target string, htmxStatus int) {
	if !isHTMX(r) {
		http.Redirect(w, r, target, http.StatusSeeOther)
		return
	}
	w.Header().Set("HX-Redirect", redirectLocation(r, target))
	if htmxStatus == http.StatusOK {
		w.WriteHeader(http.StatusOK)
		return
	}
	writeError(w, r, htmxStatus, strings.ToLower(http.StatusText(htmxStatus)))
}

// isHTMX reports whether r was sent by htmx, which sets HX-Request: true on
// its requests (https://htmx.org/reference/#request_headers).
func isHTMX(r *http.Request) bool { return r.Header.Get("HX-Request") == "true" }

// redirectLocation returns the Location header http.Redirect would send
// for target: a relative path made absolute and cleaned as it does it.
func redirectLocation(r *http.Request, target string) string {
	rec := locationRecorder{http.Header{}}
	http.Redirect(rec, r, target, http.StatusSeeOther)
	return rec.h.Get("Location")
}

// locationRecorder keeps the header of a response and drops the rest.
type locationRecorder struct{ h http.Header }

func (l locationRecorder) Header() http.Header         { return l.h }
func (l locationRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (l locationRecorder) WriteHeader(int)             {}

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
	hdr.Set("Referrer-Policy", "same-origin")
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
)

// contentSecurityPolicy is the policy of a page of t: the configured one,
// else the strict one of the built-in forms, which load nothing, or a
// same-origin one for a custom template, which may load its own files.
func (h *handlers) contentSecurityPolicy(t *template.Template) string {
	switch {
	case h.csp != "":
		return h.csp
	case t == builtinLogin || t == builtinRegister || t == builtinPassword || t == builtinSessions:
		return DefaultContentSecurityPolicy
	}
	return CustomContentSecurityPolicy
}

// formAction is the path a form posts back to: the path of the URL the
// client asked for (see clientPath), so that a handler under
// http.StripPrefix, which has rewritten r.URL.Path, still names the outer
// path.
func formAction(r *http.Request) string {
	p, _ := clientPath(r)
	return p
}

// clientPath returns the path and the raw query of the URL the client
// asked for: its request-URI, or r.URL for a request made in the program
// (no RequestURI) or one whose request-URI does not parse. Only the path of
// an absolute-form request-URI ("http://elsewhere/login") is taken, and
// leading slashes collapse into one, since "//host/login" would be another
// site's URL. The path stays escaped as the client sent it (a backslash or
// control character comes out percent-encoded), so it is always a path on
// this site.
func clientPath(r *http.Request) (path, rawQuery string) {
	u := r.URL
	if r.RequestURI != "" {
		if parsed, err := url.ParseRequestURI(r.RequestURI); err == nil {
			u = parsed
		}
	}
	return sitePath(u), u.RawQuery
}

// sitePath is the escaped path of u with its leading slashes collapsed
// into one: a path on this site whatever u held ("//host/x" would be
// another site's URL).
func sitePath(u *url.URL) string { return "/" + strings.TrimLeft(u.EscapedPath(), "/") }

// credentials is a decoded login or registration body.
type credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Next     string `json:"next"`
	// Remember asks a login for a remembered session (see
	// HTTPConfig.RememberFor).
	Remember bool `json:"remember"`
}

// decodeCredentials reads a form (urlencoded or multipart) or JSON body.
// status is 0 on success, or 413 (body too large), 415 (another content
// type) or 400 (malformed, a field repeated, a file, or username or password
// missing); code is the Code constant of the failure.
func decodeCredentials(r *http.Request) (in credentials, status int, code string) {
	status, code = decodeBody(r, in.fields())
	switch {
	case status == http.StatusRequestEntityTooLarge:
		return credentials{}, status, code
	case status != 0:
		return in, status, code
	case in.Username == "":
		return in, http.StatusBadRequest, CodeUsernameRequired
	case in.Password == "":
		return in, http.StatusBadRequest, CodePasswordRequired
	}
	return in, 0, ""
}

// fields maps the names of the fields to where their values go.
func (in *credentials) fields() fieldSet {
	return fieldSet{
		text:  map[string]*string{"username": &in.Username, "password": &in.Password, "next": &in.Next},
		flags: map[string]*bool{"remember": &in.Remember},
	}
}

// fieldSet names the fields a body may have and where their values go: text
// fields, and flags (checkboxes; booleans in JSON). Every other field of a
// form is ignored, and every other key of a JSON object is an error.
type fieldSet struct {
	text  map[string]*string
	flags map[string]*bool
}

// set stores the value of the form field name, and reports whether the
// field is one of fs. A flag is "on" (what a browser sends for a ticked
// checkbox), "true" or "1", or "", "off", "false" or "0"; any other value
// is an error.
func (fs fieldSet) set(name, value string) (known bool, err error) {
	if dst, ok := fs.text[name]; ok {
		*dst = value
		return true, nil
	}
	dst, ok := fs.flags[name]
	if !ok {
		return false, nil
	}
	switch value {
	case "on", "true", "1":
		*dst = true
	case "", "off", "false", "0":
		*dst = false
	default:
		return true, fmt.Errorf("authn: form field %q is not a flag", name)
	}
	return true, nil
}

// names lists the fields of fs.
func (fs fieldSet) names() []string {
	names := make([]string, 0, len(fs.text)+len(fs.flags))
	for name := range fs.text {
		names = append(names, name)
	}
	for name := range fs.flags {
		names = append(names, name)
	}
	return names
}

// decodeBody reads a form (urlencoded or multipart) or JSON body into fs.
// status is 0 on success, or 413 (body too large), 415 (another content
// type) or 400 (malformed, a field repeated, a file); code is the Code
// constant of the failure. Which fields are required is the caller's to
// check.
func decodeBody(r *http.Request, fs fieldSet) (status int, code string) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return http.StatusUnsupportedMediaType, CodeUnsupportedMediaType
	}
	switch mt {
	case "application/x-www-form-urlencoded":
		err = decodeForm(r, fs)
	case "multipart/form-data":
		err = decodeMultipart(r.Body, params["boundary"], fs)
	case "application/json":
		err = decodeJSON(r.Body, fs)
	default:
		return http.StatusUnsupportedMediaType, CodeUnsupportedMediaType
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, CodeBodyTooLarge
	case err != nil:
		return http.StatusBadRequest, CodeMalformedBody
	}
	return 0, ""
}

var errRepeated = errors.New("authn: a field is repeated")

// decodeForm reads an urlencoded body into fs: each field of fs at most
// once, other fields ignored.
func decodeForm(r *http.Request, fs fieldSet) error {
	if err := r.ParseForm(); err != nil {
		return err
	}
	for _, name := range fs.names() {
		switch v := r.PostForm[name]; len(v) {
		case 0:
		case 1:
			if _, err := fs.set(name, v[0]); err != nil {
				return err
			}
		default:
			return errRepeated
		}
	}
	return nil
}

// decodeMultipart reads a multipart/form-data body (what fetch sends with
// new FormData(form)) into fs by decodeForm's rules: each field of fs at
// most once, other fields ignored. Each part is read into memory within
// the body's limit (the caller's http.MaxBytesReader), and never spills to
// disk as Request.ParseMultipartForm's files do. Anything a browser would
// not send for a text field is an error, so that no two readers of the body
// can disagree on what it says: a missing or malformed boundary, a part
// with a file name (an <input type=file>, even empty), with a content type
// other than text/plain, with a Content-Transfer-Encoding or any header
// but those two and Content-Disposition, a disposition other than form-data
// with a name, one whose parameters readers parse differently (see
// plainDisposition; a field whose name has a backslash is refused with
// them), or a body that ends before the closing boundary.
func decodeMultipart(body io.Reader, boundary string, fs fieldSet) error {
	// RFC 2046, section 5.1.1: 1 to 70 characters.
	if boundary == "" || len(boundary) > 70 {
		return errors.New("authn: multipart body without a valid boundary")
	}
	// The multipart reader passes on the body's errors (wrapped), so that
	// errors.As finds an *http.MaxBytesError: 413, not 400.
	mr := multipart.NewReader(body, boundary)
	seen := make(map[string]bool)
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name, err := textFieldName(p.Header)
		if err != nil {
			return err
		}
		value, err := io.ReadAll(p)
		if err != nil {
			return err
		}
		if seen[name] {
			return errRepeated
		}
		known, err := fs.set(name, string(value))
		if err != nil {
			return err
		}
		if known {
			seen[name] = true
		}
	}
}

// textFieldName returns the field name of a multipart part that is a text
// field as browsers send it, or an error for anything else (see
// decodeMultipart).
func textFieldName(h textproto.MIMEHeader) (string, error) {
	for key := range h {
		if key != "Content-Disposition" && key != "Content-Type" {
			return "", fmt.Errorf("authn: multipart part with a %s header", key)
		}
	}
	if ct := h.Values("Content-Type"); len(ct) > 1 || len(ct) == 1 && mediaType(ct[0]) != "text/plain" {
		return "", errors.New("authn: multipart part that is not text/plain")
	}
	cd := h.Values("Content-Disposition")
	if len(cd) != 1 {
		return "", errors.New("authn: multipart part without one Content-Disposition")
	}
	if !plainDisposition(cd[0]) {
		return "", errors.New("authn: multipart part with an escaped or extended parameter")
	}
	disposition, params, err := mime.ParseMediaType(cd[0])
	if err != nil || disposition != "form-data" {
		return "", errors.New("authn: multipart part that is not form-data")
	}
	if _, file := params["filename"]; file {
		return "", errors.New("authn: multipart part that is a file")
	}
	name, ok := params["name"]
	if !ok {
		return "", errors.New("authn: multipart part without a name")
	}
	return name, nil
}

// plainDisposition reports whether a Content-Disposition value is one that
// every multipart reader parses alike, as browsers write it: no backslash
// and no '*' outside a quoted string. mime.ParseMediaType keeps a
// backslash before an ordinary character (name="pass\word" is pass\word,
// password to RFC 7578's readers) and applies RFC 2231 extended and
// continued parameters (name*=utf-8'en'username overrides name="password"),
// which form-data does not have and most readers ignore. Browsers
// percent-encode a quote in a field name and never write either form.
func plainDisposition(v string) bool {
	quoted := false
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '\\':
			return false
		case '"':
			quoted = !quoted
		case '*':
			if !quoted {
				return false
			}
		}
	}
	return true
}

// decodeJSON reads into fs exactly one flat JSON object whose keys are the
// fields of fs, each at most once, with string values for text fields and
// true or false for flags. Anything else (duplicate keys, which parsers
// resolve differently; other keys; nesting; null; invalid UTF-8 and lone
// UTF-16 surrogate escapes such as \ud800, which encoding/json would
// silently replace with U+FFFD) is an error, so that no two readers of the
// body can disagree on what it says.
func decodeJSON(body io.Reader, fs fieldSet) error {
	raw, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	if !utf8.Valid(raw) {
		return errors.New("authn: JSON body is not valid UTF-8")
	}
	if hasLoneSurrogate(raw) {
		return errors.New("authn: JSON body has a lone UTF-16 surrogate escape")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errors.New("authn: JSON body is not an object")
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key := tok.(string) // an object's keys are strings, or Token fails
		text, isText := fs.text[key]
		flag, isFlag := fs.flags[key]
		if !isText && !isFlag || seen[key] {
			return fmt.Errorf("authn: JSON key %q is unknown or repeated", key)
		}
		seen[key] = true
		value, err := dec.Token()
		if err != nil {
			return err
		}
		switch v := value.(type) {
		case string:
			if !isText {
				return fmt.Errorf("authn: JSON %q is not a boolean", key)
			}
			*text = v
		case bool:
			if !isFlag {
				return fmt.Errorf("authn: JSON %q is not a string", key)
			}
			*flag = v
		default: // a number, null, or the start of an array or object
			return fmt.Errorf("authn: JSON %q is not a string or a boolean", key)
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return errors.New("authn: JSON object not closed")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("authn: data after the JSON object")
	}
	return nil
}

// hasLoneSurrogate reports whether a JSON text has a \u escape of a UTF-16
// surrogate (D800-DFFF) that is not a high one followed at once by an
// escaped low one. It reads the escapes in the raw bytes: the decoder
// replaces such an escape with U+FFFD and gives no error.
func hasLoneSurrogate(raw []byte) bool {
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		r, ok := unicodeEscape(raw[i:])
		switch {
		case !ok: // another escape: skip the escaped byte ("\\" included)
			i++
		case 0xDC00 <= r && r <= 0xDFFF: // a low one with no high one before
			return true
		case 0xD800 <= r && r <= 0xDBFF:
			low, ok := unicodeEscape(raw[i+6:])
			if !ok || low < 0xDC00 || low > 0xDFFF {
				return true
			}
			i += 11 // the pair
		default:
			i += 5
		}
	}
	return false
}

// unicodeEscape reads a \uXXXX escape at the start of b.
func unicodeEscape(b []byte) (rune, bool) {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[2:6]), 16, 16)
	return rune(n), err == nil
}

// localRedirect returns next if it is a path on this site, else def. It
// refuses what browsers would take to another host: "//host", "/\host",
// schemes, and control characters, which browsers strip ("/\t/host").
func localRedirect(next, def string) string {
	if len(next) == 0 || len(next) > 2048 || next[0] != '/' {
		return def
	}
	if len(next) > 1 && (next[1] == '/' || next[1] == '\\') {
		return def
	}
	if strings.ContainsFunc(next, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
		return def
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return def
	}
	return next
}

// mediaType returns the media type of a Content-Type value, lower-cased,
// or "".
func mediaType(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	return mt
}

// containsToken reports whether a comma-separated header value lists the
// media type mt (parameters ignored).
func containsToken(header, mt string) bool {
	for part := range strings.SplitSeq(header, ",") {
		if mediaType(strings.TrimSpace(part)) == mt {
			return true
		}
	}
	return false
}
