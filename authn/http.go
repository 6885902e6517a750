package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minimost/minimost/middleware"
)

// HTTPConfig configures the HTTP handlers of an Authenticator. The zero
// value serves HTTPS deployments; see InsecureCookies for plain-HTTP
// development.
type HTTPConfig struct {
	// Realm is the Basic authentication realm. "" means "restricted".
	Realm string
	// Prefix is the path under which Authenticator.Routes serves its
	// routes, as the handler sees it in r.URL.Path: "/auth" serves
	// /auth/login, /auth/logout and /auth/register. It is "" (the routes
	// at the root) or a clean path that starts with "/" and does not end
	// with one, made of the characters a URL path needs no escaping for
	// (letters, digits and -._~!$&'()*+,;=:@); New fails for any other
	// value. Under http.StripPrefix, Routes sees the path already
	// stripped: Prefix is then what is left (usually ""), and LoginPath
	// and RegisterPath name the paths as the browser sees them.
	Prefix string
	// LoginPath is where RequireSession sends browsers without a session,
	// where logout redirects, and what the registration page links. ""
	// means Prefix+"/login".
	LoginPath string
	// RegisterPath, when set, is linked from the login form. When it is
	// "", LoginHandler's form links no registration page, and the form of
	// Routes links Prefix+"/register" when AllowRegistration is set.
	RegisterPath string
	// AllowRegistration lets strangers create accounts: Routes serves
	// {Prefix}/register and its login form links it. It is off by
	// default, so that routes mounted on an internal tool let nobody in
	// who has no account: accounts are then made by an administrator
	// (Register, ImportUser, authctl add). RegisterHandler serves
	// whoever mounts it, whatever this says.
	AllowRegistration bool
	// AfterLoginPath is where a form login without a next (or with one
	// that is not a local path) lands: a local path such as "/app/". ""
	// means "/". New fails for a value that is not a local path.
	AfterLoginPath string
	// AppName is the application's name, which the built-in pages show
	// in their title and heading ("Sign in · Example"), so that users see
	// which site asks for their password. "" shows none. It is text, not
	// HTML: the pages escape it. Custom templates get it as
	// FormData.AppName and SessionsData.AppName.
	AppName string
	// HomePath is the link back to the application from the password and
	// sessions pages: a local path such as "/app/". "" means
	// AfterLoginPath (itself "/" by default), where a login lands. New
	// fails for a value that is not a local path, so that the link never
	// leads to another site.
	HomePath string

	// BaseURL is the address at which browsers reach the paths that
	// Routes sees: links in mail (password reset, email verification) are
	// BaseURL + Prefix + the route, and never built from a request's Host
	// header, which a client chooses. "https://example.com" with Prefix
	// "/auth" mails https://example.com/auth/reset/confirm?token=…; under
	// http.StripPrefix, where Prefix is "", BaseURL names the mount point
	// ("https://example.com/auth"). It must be an absolute https URL with
	// no query, fragment or user information; http is accepted for a
	// loopback host (localhost, 127.0.0.1, [::1]) or with InsecureCookies
	// (development). New fails for any other value, and when
	// Config.Mailer is set without it. Without it, no link is made and the
	// recovery routes are not served.
	BaseURL string
	// RegistrationEmail lets the registration form (with a Config.Mailer)
	// ask for an email address, optional: when one is given, a link that
	// verifies it is mailed after the account is created.
	RegistrationEmail bool

	// SessionIdleTimeout ends a session not used for this long. 0 means
	// 30 minutes.
	SessionIdleTimeout time.Duration
	// SessionLifetime ends a session this long after login, used or not.
	// 0 means 12 hours.
	SessionLifetime time.Duration
	// RememberFor is the absolute lifetime of a session started with
	// "remember me" (the login form's remember box, or "remember": true in
	// JSON), in place of SessionLifetime, and the Max-Age of its cookie.
	// Other sessions have a browser-session cookie (no Max-Age or
	// Expires), which the browser drops when it closes. 0 means 30 days;
	// negative disables remember-me: the box is not shown and the field
	// is ignored.
	RememberFor time.Duration
	// RememberIdleTimeout ends a remembered session not used for this
	// long. 0 (or negative) means none: a session the user asked to be
	// remembered ends only at RememberFor, as its cookie does.
	RememberIdleTimeout time.Duration
	// SessionCleanupInterval is how often a background goroutine deletes
	// expired sessions. 0 means 10 minutes; negative disables it.
	SessionCleanupInterval time.Duration
	// MaxSessionsPerUser bounds the sessions a user has at once: a login
	// that would make one more ends the user's sessions that have ended
	// already but await the cleanup, then those used longest ago, in the
	// same transaction as the new session's insert, so that parallel
	// logins cannot overrun it. 0 means 50; negative means no limit.
	MaxSessionsPerUser int
	// CookieName names the session cookie. "" means "__Host-session"
	// ("session" with InsecureCookies, since the __Host- prefix requires
	// Secure).
	CookieName string
	// InsecureCookies drops the Secure attribute and the __Host- prefix,
	// so that sessions work over plain HTTP. For local development only.
	//
	// Without it, a browser drops the session cookie of a login over plain
	// HTTP (but to localhost, a name under .localhost, 127.0.0.0/8 or ::1,
	// which browsers treat as secure), and the user sees the login form
	// again after every successful login. When a login sets the cookie on
	// such a request (no TLS, and no trusted proxy saying
	// X-Forwarded-Proto: https or Forwarded: proto=https; see
	// TrustedProxies), the Authenticator logs it once, as a WARN line
	// "authn: Secure session cookie set over plain HTTP; browsers drop it
	// and the login loops", with the host and what to do: serve HTTPS, or
	// list the TLS-terminating proxy in TrustedProxies, or set this field
	// for local development.
	InsecureCookies bool

	// TrustedProxies are the reverse proxies whose X-Forwarded-For is
	// believed when finding a client's address, and whose
	// X-Forwarded-Proto or Forwarded proto is believed when telling
	// whether the browser used HTTPS (see InsecureCookies). None by
	// default.
	TrustedProxies []netip.Prefix
	// Throttle sets the budget of failed attempts per client address,
	// shared by every handler of the Authenticator (one budget, not one
	// per route) and by every instance on its database: its Burst,
	// Interval, IPv6PrefixLen, MaxClients and Now are used, and the
	// counts are kept in the database (the client_budgets table), not in
	// the Throttle, so that N instances give a client the budget of one.
	// A Throttle given to several Authenticators, or used by the
	// application's own middleware too, shares nothing with them but its
	// settings. nil means middleware.NewThrottle(middleware.ThrottleConfig{}).
	Throttle *middleware.Throttle
	// RegisterThrottle sets the budget of registrations per client
	// address, counted in the database as Throttle's: unlike Throttle,
	// every registration spends it, successful or not, since each one
	// costs a hash and a row. nil means a burst of 10, then one a minute
	// (middleware.ThrottleConfig{Burst: 10, Interval: time.Minute}).
	RegisterThrottle *middleware.Throttle
	// MaxBodyBytes bounds every POST body of the handlers (login,
	// registration, password change, sessions). 0 means 8 KiB.
	MaxBodyBytes int64
	// HashWait is how long a request waits for hashing capacity (a free
	// hashing slot, of its client's and of the Authenticator's, and free
	// hashing memory, all waits together) before it is answered 503. 0
	// means 5 seconds. A login's claim, which waits while another
	// transaction holds a lock on the account's row or, on SQLite, the
	// database, and the hashing slot it takes again after such a wait,
	// have a HashWait of their own; on SQLite, the one claim that waits
	// for the write lock at a time may wait up to SQLite's busy timeout
	// (10 s) instead, which no deadline interrupts.
	HashWait time.Duration

	// BasicAuthCacheTTL is how long a verified Basic-auth credential is
	// remembered (as an HMAC, never in plain). 0 means 5 minutes;
	// negative disables the cache.
	BasicAuthCacheTTL time.Duration
	// BasicAuthCacheSize bounds the remembered credentials. 0 means 10,000.
	BasicAuthCacheSize int

	// ForwardAuthUserHeader names the response header in which
	// ForwardAuthHandler gives the proxy the user's name. "" means
	// "Remote-User". New fails for a name that is not an HTTP token, and
	// for the names the handler or HTTP itself give a meaning (Location,
	// WWW-Authenticate, Set-Cookie, Content-Type and the framing headers).
	ForwardAuthUserHeader string

	// LoginTemplate, RegisterTemplate and PasswordTemplate (the change of
	// password, see ChangePasswordHandler) replace the built-in forms. They
	// are executed with a FormData. A page of a custom template is sent
	// with a same-origin Content-Security-Policy (see
	// ContentSecurityPolicy), so that it may load its own stylesheets,
	// scripts and images from the application's origin; inline scripts and
	// anything from another origin need ContentSecurityPolicy.
	LoginTemplate    *template.Template
	RegisterTemplate *template.Template
	PasswordTemplate *template.Template
	// SessionsTemplate replaces the built-in page of SessionsHandler, under
	// the same rules as the forms' templates. It is executed with a
	// SessionsData.
	SessionsTemplate *template.Template
	// ResetTemplate (the request for a reset link, {Prefix}/reset),
	// ResetConfirmTemplate (the new password, {Prefix}/reset/confirm) and
	// EmailTemplate (the address of the signed-in user, {Prefix}/email,
	// and the page of a verification link) replace the built-in pages of
	// account recovery, under the same rules as the forms' templates.
	// They are executed with a RecoveryData.
	ResetTemplate        *template.Template
	ResetConfirmTemplate *template.Template
	EmailTemplate        *template.Template

	// ContentSecurityPolicy, when set, is sent as is as the
	// Content-Security-Policy of every page the handlers render (the
	// login, registration, password and sessions pages, built-in or
	// custom). "" means DefaultContentSecurityPolicy for a built-in page,
	// which loads nothing from anywhere, and CustomContentSecurityPolicy
	// for a page of a custom template. New fails for a value with a
	// control character.
	ContentSecurityPolicy string

	// WebAuthnRPID turns passkeys on (see Authenticator.Passkeys): it is
	// the WebAuthn relying party ID, the site's host name ("example.com",
	// or "localhost" for development), to which every passkey is bound.
	// Routes then serves {Prefix}/passkeys (a signed-in user's passkeys),
	// {Prefix}/passkey/… (signing in with one) and {Prefix}/passkey.js,
	// and the login form offers "Sign in with a passkey". "" (the default)
	// leaves passkeys off. New fails for a value that is not a lower-case
	// host name (no scheme, port or IP address: browsers accept none).
	WebAuthnRPID string
	// PasskeyThrottle limits the passwordless sign-ins each client begins
	// (each stores a challenge row for a few minutes), successful or not.
	// It is counted in the database, one budget for every instance, as
	// Throttle's. nil means a burst of 30, then one every 2 seconds.
	PasskeyThrottle *middleware.Throttle
	// WebAuthnRPDisplayName is the site's name as the browser shows it
	// while creating a passkey. "" means AppName, or else WebAuthnRPID.
	WebAuthnRPDisplayName string
	// WebAuthnOrigins are the origins (scheme://host[:port]) whose pages
	// may use the passkeys: each https, with a host that is WebAuthnRPID
	// or a name under it; http only for localhost (and names under
	// .localhost), the one non-secure origin where browsers allow
	// WebAuthn. New fails for any other. Empty means
	// "https://"+WebAuthnRPID.
	WebAuthnOrigins []string
}

// The Content-Security-Policy values of the forms when
// HTTPConfig.ContentSecurityPolicy is "". Both forbid framing (against
// clickjacking), forms that post to another origin and a base URL from
// elsewhere.
const (
	// DefaultContentSecurityPolicy is the policy of the built-in forms:
	// their inline style and nothing else.
	DefaultContentSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
	// CustomContentSecurityPolicy is the policy of a custom template
	// (LoginTemplate, RegisterTemplate, PasswordTemplate,
	// SessionsTemplate): anything from the application's own origin,
	// inline styles and data: images, but no inline script, plugin or
	// other origin.
	CustomContentSecurityPolicy = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'self'"
	// PasskeyContentSecurityPolicy is the policy of the built-in pages
	// that run the passkey ceremonies (the login form of Routes with
	// passkeys on, and the passkeys page): DefaultContentSecurityPolicy
	// and the library's own script file (passkey.js), which calls back its
	// own origin. No inline script.
	PasskeyContentSecurityPolicy = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

// validate reports the first setting New must refuse. A wrong Prefix would
// serve the routes at paths the application does not expect, and a
// Content-Security-Policy with a line break is no header value: both fail
// New instead.
func (c HTTPConfig) validate() error {
	if err := checkPrefix(c.Prefix); err != nil {
		return fmt.Errorf("authn: HTTPConfig.Prefix %q: %w", c.Prefix, err)
	}
	if strings.ContainsFunc(c.ContentSecurityPolicy, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
		return errors.New("authn: HTTPConfig.ContentSecurityPolicy has a control character")
	}
	if err := checkUserHeader(c.ForwardAuthUserHeader); err != nil {
		return fmt.Errorf("authn: HTTPConfig.ForwardAuthUserHeader %q: %w", c.ForwardAuthUserHeader, err)
	}
	if c.AfterLoginPath != "" && localRedirect(c.AfterLoginPath, "") == "" {
		return fmt.Errorf("authn: HTTPConfig.AfterLoginPath %q: not a local path (one that starts with a single \"/\")", c.AfterLoginPath)
	}
	if c.HomePath != "" && localRedirect(c.HomePath, "") == "" {
		return fmt.Errorf("authn: HTTPConfig.HomePath %q: not a local path (one that starts with a single \"/\")", c.HomePath)
	}
	if err := checkBaseURL(c.BaseURL, c.InsecureCookies); err != nil {
		return fmt.Errorf("authn: HTTPConfig.BaseURL %q: %w", c.BaseURL, err)
	}
	return checkWebAuthn(c)
}

// checkBaseURL reports what is wrong with a BaseURL: "" or an absolute
// https URL (http for a loopback host, or with insecure for development)
// with a host and no user information, query or fragment.
func checkBaseURL(s string, insecure bool) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return err
	case u.Host == "" || u.Opaque != "":
		return errors.New("not an absolute URL with a host")
	case u.User != nil:
		return errors.New("has user information")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(s, "?#"):
		return errors.New("has a query or a fragment")
	case strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return errors.New("has a space or control character")
	case u.Scheme == "https":
		return nil
	case u.Scheme != "http":
		return errors.New(`must start with "https://"`)
	case insecure || isLoopbackHost(u.Hostname()):
		return nil
	}
	return errors.New(`http is only for a loopback host or with InsecureCookies: use "https://"`)
}

// checkPrefix reports what is wrong with a Prefix: "" or a clean path
// ("/auth", "/a/b") of characters that need no escaping in a URL path. A
// Prefix that starts with "//" would make LoginPath another host's URL;
// one with "." segments, a trailing slash or escapes would never equal the
// path of a request that routers have cleaned.
func checkPrefix(p string) error {
	switch {
	case p == "":
		return nil
	case p[0] != '/':
		return errors.New(`must start with "/"`)
	case strings.HasSuffix(p, "/"):
		return errors.New(`must not end with "/" (use "" for the root)`)
	case path.Clean(p) != p:
		return errors.New(`must be a clean path: no "//", "." or ".." segments`)
	}
	for _, r := range p {
		if !isPathChar(r) {
			return fmt.Errorf("has %q, which a URL path must escape", r)
		}
	}
	return nil
}

// isPathChar reports whether r may appear unescaped in a URL path segment
// (RFC 3986's pchar, without percent-encoding), or is the "/" between
// segments.
func isPathChar(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return true
	}
	return strings.ContainsRune("/-._~!$&'()*+,;=:@", r)
}

// web is an HTTPConfig with its defaults applied.
type web struct {
	realm, prefix                   string
	loginPath, registerPath         string
	afterLoginPath                  string
	appName, homePath               string
	allowRegistration               bool
	csp                             string // HTTPConfig.ContentSecurityPolicy
	wwwAuthenticate                 string // the challenge of BasicAuth
	idle, lifetime, cleanupEvery    time.Duration
	maxSessions                     int           // negative: no limit
	rememberFor, rememberIdle       time.Duration // rememberIdle 0: none
	offerRemember                   bool          // RememberFor is not negative
	cookieName                      string
	secure                          bool
	trusted                         []netip.Prefix
	throttle, registerThrottle      *middleware.Throttle
	passkeyBegins                   *middleware.Throttle // passwordless sign-ins begun, per client
	maxBody                         int64
	hashWait                        time.Duration
	basicAuthCacheTTL               time.Duration
	basicAuthCacheSize              int
	userHeader                      string // HTTPConfig.ForwardAuthUserHeader, canonical
	loginTemplate, registerTemplate *template.Template
	verifyTemplate, totpTemplate    *template.Template
	passwordTemplate                *template.Template
	sessionsTemplate                *template.Template
	resetTemplate, confirmTemplate  *template.Template
	emailTemplate                   *template.Template
	registrationEmail               bool
	resetPath                       string // the reset page the login form links; "" for none
	crossOrigin                     *http.CrossOriginProtection
}

func newWeb(c HTTPConfig) web {
	w := web{
		realm:              or(c.Realm, "restricted"),
		prefix:             c.Prefix,
		loginPath:          or(c.LoginPath, c.Prefix+"/login"),
		registerPath:       c.RegisterPath,
		afterLoginPath:     or(c.AfterLoginPath, "/"),
		appName:            c.AppName,
		homePath:           or(c.HomePath, or(c.AfterLoginPath, "/")),
		csp:                c.ContentSecurityPolicy,
		idle:               orDuration(c.SessionIdleTimeout, 30*time.Minute),
		lifetime:           orDuration(c.SessionLifetime, 12*time.Hour),
		cleanupEvery:       orDuration(c.SessionCleanupInterval, 10*time.Minute),
		secure:             !c.InsecureCookies,
		trusted:            c.TrustedProxies,
		throttle:           c.Throttle,
		registerThrottle:   c.RegisterThrottle,
		maxBody:            c.MaxBodyBytes,
		hashWait:           orDuration(c.HashWait, 5*time.Second),
		basicAuthCacheTTL:  orDuration(c.BasicAuthCacheTTL, 5*time.Minute),
		basicAuthCacheSize: c.BasicAuthCacheSize,
		userHeader:         http.CanonicalHeaderKey(or(c.ForwardAuthUserHeader, "Remote-User")),
		loginTemplate:      c.LoginTemplate,
		registerTemplate:   c.RegisterTemplate,
		passwordTemplate:   c.PasswordTemplate,
		sessionsTemplate:   c.SessionsTemplate,
		resetTemplate:      c.ResetTemplate,
		confirmTemplate:    c.ResetConfirmTemplate,
		emailTemplate:      c.EmailTemplate,
		registrationEmail:  c.RegistrationEmail,
		crossOrigin:        http.NewCrossOriginProtection(),
	}
	w.wwwAuthenticate = basicChallenge(w.realm)
	w.rememberFor, w.rememberIdle, w.offerRemember = rememberSettings(c)
	w.allowRegistration = c.AllowRegistration
	w.maxSessions = c.MaxSessionsPerUser
	if w.maxSessions == 0 {
		w.maxSessions = 50
	}
	if c.SessionCleanupInterval < 0 {
		w.cleanupEvery = 0
	}
	if c.BasicAuthCacheTTL < 0 {
		w.basicAuthCacheTTL = 0
	}
	w.cookieName = c.CookieName
	if w.cookieName == "" {
		w.cookieName = "__Host-session"
		if !w.secure {
			w.cookieName = "session"
		}
	}
	if w.throttle == nil {
		w.throttle = middleware.NewThrottle(middleware.ThrottleConfig{})
	}
	if w.registerThrottle == nil {
		w.registerThrottle = middleware.NewThrottle(middleware.ThrottleConfig{Burst: 10, Interval: time.Minute})
	}
	// Every passwordless sign-in begun stores a challenge row for a few
	// minutes: a client gets a burst of them, then one every 2 seconds.
	w.passkeyBegins = c.PasskeyThrottle
	if w.passkeyBegins == nil {
		w.passkeyBegins = middleware.NewThrottle(middleware.ThrottleConfig{Burst: 30, Interval: 2 * time.Second})
	}
	if w.maxBody <= 0 {
		w.maxBody = 8 << 10
	}
	if w.basicAuthCacheSize <= 0 {
		w.basicAuthCacheSize = 10_000
	}
	if w.loginTemplate == nil {
		w.loginTemplate = builtinLogin
	}
	if w.registerTemplate == nil {
		w.registerTemplate = builtinRegister
	}
	if w.passwordTemplate == nil {
		w.passwordTemplate = builtinPassword
	}
	if w.sessionsTemplate == nil {
		w.sessionsTemplate = builtinSessions
	}
	if w.resetTemplate == nil {
		w.resetTemplate = builtinReset
	}
	if w.confirmTemplate == nil {
		w.confirmTemplate = builtinResetConfirm
	}
	if w.emailTemplate == nil {
		w.emailTemplate = builtinEmail
	}
	w.verifyTemplate, w.totpTemplate = builtinVerify, builtinTOTP
	return w
}

// rememberSettings applies the defaults of RememberFor and
// RememberIdleTimeout: the lifetime and the idle timeout of a remembered
// session (0: none), and whether logins may ask for one.
func rememberSettings(c HTTPConfig) (lifetime, rememberIdle time.Duration, offer bool) {
	lifetime = orDuration(c.RememberFor, 30*24*time.Hour)
	if c.RememberIdleTimeout > 0 {
		rememberIdle = c.RememberIdleTimeout
	}
	return lifetime, rememberIdle, c.RememberFor >= 0
}

// handlers are the HTTP side of an Authenticator: the settings of
// HTTPConfig (templates and cross-origin protection included), the cache of
// verified Basic credentials and the throttles' log. They hold no account
// state of their own: every decision about a user is the Authenticator's,
// and every statement its store's.
type handlers struct {
	a *Authenticator
	web
	cache       *credentialCache // verified Basic credentials; nil: disabled
	throttleLog *throttleLog     // which refusals of throttled clients are logged
	// failures and registrations are the per-client budgets of Throttle
	// and RegisterThrottle, counted in the database (see budget).
	failures, registrations *budget
	// passkeyStarts is the budget of PasskeyThrottle: passwordless
	// sign-ins begun, counted in the database as the others.
	passkeyStarts *budget

	// crossOriginLog is which refused cross-origin requests are logged.
	crossOriginLog *throttleLog
	// offerPasskeys is set on the handlers of Routes with passkeys on:
	// their login form offers "Sign in with a passkey" (FormData.Passkeys).
	offerPasskeys bool
	// insecureCookieWarned is set once the Secure cookie over plain HTTP
	// has been reported (see warnInsecureCookie): once per Authenticator,
	// so that no client can flood the log with it. A pointer, since Routes
	// serves from a copy of the handlers that must share it.
	insecureCookieWarned *atomic.Bool
	// misplacedWarned is set once Routes has reported a request for one
	// of its routes under a path it was not told about (see
	// warnMisplaced), once per Authenticator as insecureCookieWarned.
	misplacedWarned *atomic.Bool
}

func newHandlers(a *Authenticator, c HTTPConfig) *handlers {
	h := &handlers{a: a, web: newWeb(c), throttleLog: newThrottleLog(), crossOriginLog: newThrottleLog(),
		insecureCookieWarned: new(atomic.Bool), misplacedWarned: new(atomic.Bool)}
	h.cache = newCredentialCache(h.basicAuthCacheSize, h.basicAuthCacheTTL, a.now)
	h.failures = newBudget(budgetFailures, h.throttle, a)
	h.registrations = newBudget(budgetRegistrations, h.registerThrottle, a)
	h.passkeyStarts = newBudget(budgetPasskeyStarts, h.passkeyBegins, a)
	h.crossOrigin.SetDenyHandler(http.HandlerFunc(h.crossOriginDenied))
	return h
}

// newHashWait starts a request's HashWait: it bounds how long the request
// waits for a hashing slot and hashing memory, all waits together, without
// a deadline on the rest: a login that got its slot finishes its
// statements, its claim within a HashWait of its own (hashWait.again).
func (h *handlers) newHashWait() hashWait {
	return hashWait{d: h.web.hashWait, until: time.Now().Add(h.web.hashWait)}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func orDuration(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// guard wraps every handler of the Authenticator: the client's address in
// the context, no-store on every response, and 503 while Open's database
// file is missing or broken.
func (h *handlers) guard(next http.Handler) http.Handler {
	return middleware.Chain(middleware.ClientIP(h.trusted), middleware.NoStore, h.fileGuard)(next)
}

// fileGuard answers 503 while the database file is missing or broken.
func (h *handlers) fileGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h.a.store.check(); err != nil {
			h.unavailable(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// protectPOST adds what state-changing endpoints need inside guard:
// cross-origin protection against CSRF, and a body limit. Unlike
// middleware.MaxBytes, it leaves the answer to a body declared over the
// limit to the handler, which answers every 413 in its own format (JSON
// with a code, or the form): such a body is not read, its first read fails
// with *http.MaxBytesError.
func (h *handlers) protectPOST(next http.Handler) http.Handler {
	return h.crossOrigin.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := h.maxBody
		if r.ContentLength > limit {
			limit = 0
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		next.ServeHTTP(w, r)
	}))
}

// clientIP is the client's address as guard resolved it, as text.
func clientIP(ctx context.Context) string {
	if ip, ok := middleware.ClientIPFromContext(ctx); ok && ip.IsValid() {
		return ip.String()
	}
	return ""
}

// clientAddr is the client's address as guard resolved it; the zero Addr
// outside an HTTP request.
func clientAddr(ctx context.Context) netip.Addr {
	ip, _ := middleware.ClientIPFromContext(ctx)
	return ip
}

// overBudget reports, without a statement, whether the client is over
// its failure budget as far as this process knows (see budget.allow); if
// so it sets Retry-After and reports the attempt, and the caller answers
// 429. It is the cheap look of a request that may check no password (a
// remembered Basic credential): a client over budget only on another
// instance gets through with a good credential, which is no failure.
func (h *handlers) overBudget(w http.ResponseWriter, r *http.Request, username string) bool {
	ok, wait := h.failures.allow(clientAddr(r.Context()))
	if ok {
		return false
	}
	h.throttled(w, r, username, wait)
	return true
}

// reserve takes a token of b, a budget of the client, in a statement of
// its own, before an attempt that may fail and is not a login (whose claim
// takes it: see attempt), so that requests in flight, on this instance or
// any other on the database, cannot overrun it. The caller cancels the
// ticket when the attempt succeeds (or fails through no fault of the
// client's); otherwise the token stays spent. When the client is over
// budget, the error is errOverBudget: reserve has set Retry-After and
// reported the attempt, and the caller answers 429. Any other error is the
// database's: the caller fails closed (503), and nothing was counted.
func (h *handlers) reserve(w http.ResponseWriter, r *http.Request, b *budget, username string) (*budgetTicket, error) {
	t := b.ticket(clientAddr(r.Context()))
	wait, err := t.spend(r.Context(), h.web.hashWait)
	if errors.Is(err, errOverBudget) {
		h.throttled(w, r, username, wait)
	}
	return t, err
}

// attempt starts a login's account with the client's failure budget: ok is
// false, and the caller answers 429, for a client this process knows to be
// over it (overBudget); otherwise the returned context carries the ticket
// whose token the login's claim takes, in its own transaction (see
// store.claim). settle ends the account once the login is done.
func (h *handlers) attempt(w http.ResponseWriter, r *http.Request, username string) (context.Context, *budgetTicket, bool) {
	if h.overBudget(w, r, username) {
		return nil, nil, false
	}
	t := h.failures.ticket(clientAddr(r.Context()))
	return withBudgetTicket(r.Context(), t), t, true
}

// settle ends the account of a login made with t that ended with err. A
// login refused for its client's budget (errOverBudget) gets Retry-After
// and is reported; the caller answers 429. A failure that spends the budget
// (see spendsBudget) but took no token, since it ended before a claim (a
// malformed name, say, which checks no password), takes one now; a login
// that took one and did not fail by the client's fault gives it back.
func (h *handlers) settle(w http.ResponseWriter, r *http.Request, t *budgetTicket, username string, err error) {
	switch {
	case errors.Is(err, errOverBudget):
		wait, _ := h.failures.over.lookup(t.key, h.failures.now())
		h.throttled(w, r, username, wait)
	case spendsBudget(err):
		if !t.spent {
			t.spend(r.Context(), h.web.hashWait) // a refusal only matters to the next request
		}
	default:
		t.cancel(r.Context())
	}
}

// refuseBasic answers a Basic or Bearer request whose reservation failed
// with err: 429 over budget, 503 for the database.
func (h *handlers) refuseBasic(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errOverBudget) {
		tooManyFailures(w, r)
		return
	}
	h.unavailable(w, r, err)
}

// throttled reports a request refused for its client's budget and sets
// Retry-After.
func (h *handlers) throttled(w http.ResponseWriter, r *http.Request, username string, wait time.Duration) {
	h.emitThrottled(r.Context(), Event{Type: EventLoginFailed, Username: loggable(username), Reason: ReasonThrottled})
	w.Header().Set("Retry-After", retryAfter(wait))
}

func retryAfter(d time.Duration) string {
	s := int((d + time.Second - 1) / time.Second)
	return strconv.Itoa(max(s, 1))
}

// msgTooManyFailures is the text of every 429 for a client over its
// failure budget, as JSON or plain text.
const msgTooManyFailures = "too many failed attempts, try again later"

// tooManyFailures answers 429 to a client over its failure budget, whose
// Retry-After overBudget or reserve has set.
func tooManyFailures(w http.ResponseWriter, r *http.Request) {
	writeError(w, r, http.StatusTooManyRequests, msgTooManyFailures)
}

// unavailable answers 503 for an error that is not the client's: a
// database error, or no free hashing slot. The cause is logged, not sent.
func (h *handlers) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	h.failClosed(w, r, err)
	writeError(w, r, http.StatusServiceUnavailable, "service unavailable, try again later")
}

// failClosed starts every 503: it logs err and sets Retry-After; the caller
// writes the body in its own format (plain text, JSON or a form). Running
// out of hashing slots is already one event line (reason "hashing capacity
// exhausted"), and under a flood there is one per request, so it gets no
// second line.
func (h *handlers) failClosed(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, ErrBusy) {
		h.a.stats.busy.Add(1)
	} else {
		h.a.stats.unavailable.Add(1)
		h.a.logger.ErrorContext(r.Context(), "authn: request failed closed", "error", err, "client", clientIP(r.Context()))
	}
	w.Header().Set("Retry-After", "5")
}

// isClientFailure reports whether err is the client's fault: wrong or
// unknown credentials, a locked account, or a password alone where a
// second factor is required.
func isClientFailure(err error) bool {
	return errors.Is(err, ErrInvalidCredentials) || errors.Is(err, ErrLocked) || errors.Is(err, ErrSecondFactorRequired)
}

// spendsBudget reports whether a login that ended with err spends its
// client's failure budget: a client failure, or ErrBusy after its attempt
// was claimed (countedBusyError). The latter is answered 503, but it
// counted toward the account's lockout: a client that kept the hashing
// slots busy must not count more attempts on accounts than its budget.
func spendsBudget(err error) bool {
	var counted countedBusyError
	return isClientFailure(err) || errors.As(err, &counted)
}

// wantsJSON reports whether the request is an API call (a JSON body, or a
// client asking for JSON and not HTML).
func wantsJSON(r *http.Request) bool {
	if mediaType(r.Header.Get("Content-Type")) == "application/json" {
		return true
	}
	accept := r.Header.Get("Accept")
	return containsToken(accept, "application/json") && !containsToken(accept, "text/html")
}

// writeJSON writes v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeError answers with status and a message, as JSON for an API call and
// as plain text otherwise.
func writeError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if wantsJSON(r) {
		writeJSON(w, status, map[string]string{"error": msg})
		return
	}
	http.Error(w, msg, status)
}

type usernameKey struct{}

// Username returns the name of the user that BasicAuth, RequireSession or
// OptionalSession authenticated for this request; ok is false when none did.
func Username(ctx context.Context) (string, bool) {
	name, ok := ctx.Value(usernameKey{}).(string)
	return name, ok
}

func withUsername(r *http.Request, name string) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), usernameKey{}, name))
}
