package authn

import (
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
)

// ForwardAuthHandler returns the handler a reverse proxy asks, before it
// forwards a request to an application of its own, whether the request may
// go through: nginx's auth_request, Caddy's forward_auth and Traefik's
// ForwardAuth. It protects any application, in any language, with the
// Authenticator's accounts and sessions; the application reads the user's
// name from the header the proxy sets from the answer.
//
// The proxy passes on the headers of the browser's request. The handler
// answers:
//
//   - 200, with the user's name in the header HTTPConfig.ForwardAuthUserHeader
//     ("Remote-User" by default) and no body, for a request with HTTP Basic
//     credentials that BasicAuth accepts, or, without an Authorization
//     header, with a live session cookie (as RequireSession). Basic
//     credentials go through the very check of BasicAuth: the same failure
//     budget, lockout, cache and events, so that a client cannot guess
//     faster through the proxy than through BasicAuth. When a request
//     carries both, the Authorization header decides.
//   - 401 with the Basic challenge (WWW-Authenticate, as BasicAuth) when
//     the Authorization header is there but not accepted, and when there
//     is neither credential nor live session and the request is not a
//     browser's page load: API clients such as git send their credentials
//     after such a challenge.
//   - For a browser's page load (the browser's method, below, is GET or
//     HEAD, its Accept lists text/html, and it sent no Authorization
//     header) without a live session: 401 with no challenge, so that the
//     browser shows no password dialog, with Location set to the login
//     page (HTTPConfig.LoginPath) and next=the browser's path and query,
//     and a small HTML body linking it. nginx acts on the 401 only; its
//     configuration reads Location and redirects (see docs/proxies.md). When
//     the proxy's request to this handler has the query parameter
//     "redirect" (/auth?redirect=1), such a request gets instead a 303 to
//     the same URL, which Caddy and Traefik copy to the browser as it is.
//   - 429 when the client is over its failure budget and 503 when the
//     credentials cannot be checked, as BasicAuth: never 2xx. nginx turns
//     both into 500.
//
// The browser's method and URL are what the proxy says in
// X-Forwarded-Method and X-Forwarded-Uri (Caddy, Traefik) or X-Original-URI
// (the nginx configuration of docs/proxies.md), and only when the request comes
// from one of HTTPConfig.TrustedProxies; from anyone else they are ignored:
// the method is the request's own and next is "/". The client's address
// for the failure budget is resolved as for every handler (X-Forwarded-For,
// believed from a trusted proxy only). next is only ever a path on the
// site, the path and query of the URL the browser asked for (a longer one
// than 2,048 bytes, or anything else, becomes "/"), and the login route
// redirects only to a local path whatever its next says: there is no
// absolute URL to redirect to, and so no open redirect. The session cookie
// is a host-only cookie (__Host- by default), so the login routes are
// served through the proxy on the same host as the application they
// protect (Routes under a Prefix such as "/authn"); one login for several
// hosts is not supported.
//
// The proxy must overwrite the user header on the request it forwards:
// otherwise a client sends its own. The configurations of docs/proxies.md do.
func (a *Authenticator) ForwardAuthHandler() http.Handler { return a.handlers.forwardAuth() }

// forwardAuth is ForwardAuthHandler.
func (h *handlers) forwardAuth() http.Handler {
	allow := http.HandlerFunc(h.forwardAuthAllow)
	basic := h.guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if username, ok := h.basicUser(w, r); ok {
			allow.ServeHTTP(w, withUsername(r, username))
		}
	}))
	session := h.withSession(allow, http.HandlerFunc(h.forwardAuthRefused))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, sent := r.Header["Authorization"]; sent {
			basic.ServeHTTP(w, r)
			return
		}
		session.ServeHTTP(w, r)
	})
}

// forwardAuthAllow answers 200 with the user's name in the user header.
func (h *handlers) forwardAuthAllow(w http.ResponseWriter, r *http.Request) {
	username, _ := Username(r.Context())
	// Every account's name passes CheckUsername, so this does not happen;
	// if it did, a name with other bytes has no place in a header the
	// application trusts.
	if CheckUsername(username) != nil {
		h.unavailable(w, r, fmt.Errorf("authn: forward auth: username %s is not a header value", quoteName(username)))
		return
	}
	w.Header().Set(h.userHeader, username)
	w.WriteHeader(http.StatusOK)
}

// forwardAuthRefused answers a request with neither credentials nor a live
// session: the browser is offered the login page, anyone else the Basic
// challenge.
func (h *handlers) forwardAuthRefused(w http.ResponseWriter, r *http.Request) {
	if !h.forwardedPageLoad(r) {
		h.challenge(w)
		return
	}
	login := h.loginPath + "?" + url.Values{"next": {h.forwardedPath(r)}}.Encode()
	if r.URL.Query().Has("redirect") {
		http.Redirect(w, r, login, http.StatusSeeOther)
		return
	}
	hdr := w.Header()
	hdr.Set("Location", login)
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Content-Security-Policy", DefaultContentSecurityPolicy)
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprintf(w, "<!doctype html>\n<title>Sign in</title>\n<p><a href=\"%s\">Sign in</a> to see this page.</p>\n", html.EscapeString(login))
}

// forwardedPageLoad reports whether the browser's request, as a trusted
// proxy describes it, loads a page: GET or HEAD, asking for HTML, with no
// Authorization header.
func (h *handlers) forwardedPageLoad(r *http.Request) bool {
	method := r.Method
	if h.fromTrustedProxy(r) {
		if m := r.Header.Values("X-Forwarded-Method"); len(m) == 1 {
			method = m[0]
		}
	}
	page := method == http.MethodGet || method == http.MethodHead
	return page && containsToken(r.Header.Get("Accept"), "text/html")
}

// errNotOrigin: a forwarded URI that is no path and query.
var errNotOrigin = errors.New("not a path and query")

// forwardedPath is the path and query of the browser's request, as a
// trusted proxy says it in X-Forwarded-Uri or X-Original-URI, as a local
// path (see localRedirect), or "/" when no trusted proxy says a good one.
func (h *handlers) forwardedPath(r *http.Request) string {
	if !h.fromTrustedProxy(r) {
		return "/"
	}
	for _, name := range []string{"X-Forwarded-Uri", "X-Original-Uri"} {
		if values := r.Header.Values(name); len(values) > 0 {
			next, err := originForm(values)
			if err != nil {
				return "/"
			}
			return localRedirect(next, "/")
		}
	}
	return "/"
}

// originForm reads the value of a forwarded URI header: exactly one line,
// a request target that starts with "/", and returns it as a path on this
// site (sitePath) and its query.
func originForm(values []string) (string, error) {
	if len(values) != 1 || len(values[0]) > maxNextBytes || len(values[0]) == 0 || values[0][0] != '/' {
		return "", errNotOrigin
	}
	u, err := url.ParseRequestURI(values[0])
	if err != nil {
		return "", fmt.Errorf("%w: %w", errNotOrigin, err)
	}
	next := sitePath(u)
	if u.RawQuery != "" {
		next += "?" + u.RawQuery
	}
	return next, nil
}

// maxNextBytes is the longest next that localRedirect accepts.
const maxNextBytes = 2048

// checkUserHeader reports what is wrong with HTTPConfig.ForwardAuthUserHeader:
// "" (the default) or an HTTP field name (RFC 9110's token) that HTTP and
// this handler give no meaning of their own.
func checkUserHeader(name string) error {
	if name == "" {
		return nil
	}
	if len(name) > 64 {
		return errors.New("longer than 64 bytes")
	}
	for i := 0; i < len(name); i++ {
		if !isTokenByte(name[i]) {
			return fmt.Errorf("has %q, which a header name cannot", name[i])
		}
	}
	switch http.CanonicalHeaderKey(name) {
	case "Location", "Www-Authenticate", "Set-Cookie", "Content-Type", "Content-Length",
		"Content-Encoding", "Transfer-Encoding", "Connection", "Retry-After", "Cache-Control",
		"Trailer", "Upgrade", "Keep-Alive", "Te", "Date":
		return errors.New("is a header HTTP or the handler sets itself")
	}
	return nil
}

// isTokenByte reports whether c may appear in an RFC 9110 token.
func isTokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
