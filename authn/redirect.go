package authn

import (
	"net/http"
	"net/url"
	"strings"
)

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
