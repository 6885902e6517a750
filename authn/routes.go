package authn

import (
	"net/http"
	"strings"
)

// Routes returns a handler that serves every drop-in route of the
// Authenticator under HTTPConfig.Prefix:
//
//	GET, POST  {Prefix}/login     LoginHandler
//	POST       {Prefix}/logout    LogoutHandler
//	GET, POST  {Prefix}/register  RegisterHandler (with AllowRegistration only)
//	GET, POST  {Prefix}/sessions  SessionsHandler
//	GET, POST  {Prefix}/password  ChangePasswordHandler
//	GET, POST  {Prefix}/email     the signed-in user's address (with Config.Mailer)
//	GET        {Prefix}/email/verify  a verification link (with Config.Mailer)
//	GET, POST  {Prefix}/reset     ask for a password reset link (with Config.Mailer)
//	GET, POST  {Prefix}/reset/confirm  a reset link: the new password (with HTTPConfig.BaseURL)
//
// (see Recovery for what they promise)
//
//	GET, POST  {Prefix}/login/verify  the second step of a login (see TOTP)
//	GET, POST  {Prefix}/totp      the TOTP second factor: enrol (POST {"password"}),
//	POST       {Prefix}/totp/confirm  confirm it ({"code"}: the recovery codes),
//	POST       {Prefix}/totp/disable  and turn it off ({"password","code"})
//
// With passkeys (HTTPConfig.WebAuthnRPID), also {Prefix}/passkeys (a
// signed-in user's passkeys: list, add, rename, remove), {Prefix}/passkey/begin
// and {Prefix}/passkey/finish (signing in with one) and {Prefix}/passkey.js
// (the script of the ceremonies); see Passkeys.
//
// Any other path answers 404. It matches r.URL.Path exactly (no trailing
// slash, no cleaning), so it is mounted where the router leaves the path
// whole, with Prefix set to the mount point:
//
//	mux.Handle("/auth/", a.Routes()) // Prefix "/auth"
//	r.Mount("/auth", a.Routes())     // chi, Prefix "/auth"
//
// Under http.StripPrefix, Routes sees the stripped path, so Prefix is what
// is left after stripping (usually "") and LoginPath and RegisterPath name
// the outer paths, those the browser uses:
//
//	// HTTPConfig{LoginPath: "/auth/login", RegisterPath: "/auth/register"}
//	mux.Handle("/auth/", http.StripPrefix("/auth", a.Routes()))
//
// Either way each form posts back to the URL it was served from. The login
// form links the registration page: RegisterPath when set, else
// Prefix+"/register" with AllowRegistration.
func (a *Authenticator) Routes() http.Handler { return a.handlers.routes() }

// routes is Routes.
func (h *handlers) routes() http.Handler {
	// The login form of Routes links Routes' own registration page; the
	// handlers of a copy of h serve it so, since LoginHandler alone links
	// none by default. The copy shares every throttle, cache and template.
	in := *h
	// With passkeys, the login form and the second step of Routes offer
	// them.
	in.offerPasskeys = h.a.passkeys != nil
	if in.registerPath == "" && in.allowRegistration {
		in.registerPath = in.prefix + "/register"
	}
	if h.a.mailer != nil {
		in.resetPath = in.prefix + "/reset"
	}
	// One line per route: the path under Prefix and its handler.
	table := map[string]http.Handler{
		"/login":    in.loginHandler(),
		"/logout":   in.logoutHandler(),
		"/password": in.passwordHandler(),
	}
	table["/sessions"] = in.sessionsHandler()
	table["/login/verify"] = in.loginVerifyHandler()
	for path, route := range in.totpHandlers() {
		table[path] = route
	}
	if in.allowRegistration {
		table["/register"] = in.registerHandler()
	}
	// Account recovery: the page of a reset link wherever links can be
	// made (BaseURL), the routes that mail them with a Mailer.
	if h.a.recovery.baseURL != "" {
		table["/reset/confirm"] = in.confirmHandler()
	}
	if h.a.mailer != nil {
		table["/reset"] = in.resetHandler()
		table["/email"] = in.emailHandler()
		table["/email/verify"] = in.verifyHandler()
	}
	if h.a.passkeys != nil {
		table["/passkey.js"] = in.passkeyScriptHandler()
		table["/passkey/begin"] = in.passkeyBeginHandler()
		table["/passkey/finish"] = in.passkeyFinishHandler()
		table["/passkey/verify/begin"] = in.passkeyFactorBeginHandler()
		table["/passkey/verify/finish"] = in.passkeyFactorFinishHandler()
		table["/passkeys"] = in.passkeysHandler()
		table["/passkeys/begin"] = in.passkeysBeginHandler()
		table["/passkeys/finish"] = in.passkeysFinishHandler()
	}
	prefix := h.prefix
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, prefix)
		route := table[rest]
		if !ok || route == nil {
			h.warnMisplaced(r)
			writeError(w, r, http.StatusNotFound, "not found")
			return
		}
		route.ServeHTTP(w, r)
	})
}

// routeNames are the last segments of the paths Routes serves.
var routeNames = []string{"/login", "/logout", "/register", "/password", "/sessions", "/reset", "/reset/confirm", "/email", "/email/verify", "/passkeys"}

// warnMisplaced logs, once per Authenticator, a request that Routes does
// not serve for one of its own route names under another path than
// Prefix: most likely Routes is mounted under a path (say /account/) that
// HTTPConfig.Prefix does not name, and every page answers 404. Once, so
// that no client can flood the log with it.
func (h *handlers) warnMisplaced(r *http.Request) {
	for _, name := range routeNames {
		mount, found := strings.CutSuffix(r.URL.Path, name)
		if !found || mount == h.prefix || h.misplacedWarned.Load() || h.misplacedWarned.Swap(true) {
			continue
		}
		h.a.logger.WarnContext(r.Context(), "authn: Routes got a request for one of its routes under a path it was not told about, and answered 404; set HTTPConfig.Prefix to the path Routes is mounted at (or mount it under http.StripPrefix)",
			"path", r.URL.Path, "prefix", h.prefix, "mount", mount)
		return
	}
}
