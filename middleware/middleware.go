// Package middleware holds net/http middleware that authentication handlers
// need but that knows nothing of users: the client's IP address behind
// trusted proxies, a per-client throttle on failed requests, request body
// limits, no-store headers, and Chain to compose them. Each works on its own.
package middleware

import "net/http"

// Chain composes middleware: Chain(a, b, c)(h) is a(b(c(h))), so a request
// passes through a first.
func Chain(mw ...func(http.Handler) http.Handler) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		for i := len(mw) - 1; i >= 0; i-- {
			h = mw[i](h)
		}
		return h
	}
}

// NoStore marks every response as not to be stored by browsers or proxies,
// as responses that carry credentials, sessions or personal pages must be.
func NoStore(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The key is in canonical form already: Set would canonicalize it
		// again on every request.
		w.Header()["Cache-Control"] = []string{"no-store"}
		next.ServeHTTP(w, r)
	})
}

// MaxBytes limits request bodies to n bytes: a read past the limit fails
// with *http.MaxBytesError (answer it with 413) and the server closes the
// connection after the response. A Content-Length over the limit is answered
// 413 at once, before the handler runs.
func MaxBytes(n int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > n {
				http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, n)
			next.ServeHTTP(w, r)
		})
	}
}
