// Package examples holds every Go example of the guides in docs/ and of
// README.md, compiled here (a module of its own, so that echo, gin and
// Prometheus stay out of the library's go.sum); TestDocBlocks fails when a
// Go block of the guides is not in these files, and the tests serve each
// router's example.
package examples

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/go-chi/chi/v5"
	"github.com/labstack/echo/v4"
	"github.com/minimost/minimost/authn"
)

// app is a page behind the session: it greets the signed-in user.
var app = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	user, _ := authn.Username(r.Context())
	w.Write([]byte("Hello, " + user))
})

// stdlibRoutes mounts the routes on net/http's ServeMux, with
// HTTPConfig{Prefix: "/auth"}.
func stdlibRoutes(a *authn.Authenticator) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/auth/", a.Routes())           // Prefix "/auth": Routes sees the whole path
	mux.Handle("/app/", a.RequireSession(app)) // else to /auth/login?next=…
	return mux
}

// stripPrefixRoutes mounts the routes under http.StripPrefix, with
// HTTPConfig{LoginPath: "/auth/login"} and no Prefix.
func stripPrefixRoutes(a *authn.Authenticator) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/auth/", http.StripPrefix("/auth", a.Routes())) // Routes sees /login: Prefix ""
	mux.Handle("/app/", a.RequireSession(app))                  // LoginPath names the outer path
	return mux
}

// chiRoutes mounts the routes on chi, with HTTPConfig{Prefix: "/auth"}.
func chiRoutes(a *authn.Authenticator) http.Handler {
	r := chi.NewRouter()
	r.Mount("/auth", a.Routes()) // chi leaves r.URL.Path whole: Prefix "/auth"
	r.With(a.RequireSession).Get("/app/", app)
	return r
}

// echoRoutes mounts the routes on echo, with HTTPConfig{Prefix: "/auth"}.
func echoRoutes(a *authn.Authenticator) http.Handler {
	e := echo.New()
	e.Any("/auth/*", echo.WrapHandler(a.Routes()))          // the whole path: Prefix "/auth"
	e.GET("/app/", echo.WrapHandler(a.RequireSession(app))) // a handler behind the session
	return e
}

// ginRoutes mounts the routes on gin, with HTTPConfig{Prefix: "/auth"}.
func ginRoutes(a *authn.Authenticator) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	g := gin.New()
	g.Any("/auth/*path", gin.WrapH(a.Routes()))      // the whole path: Prefix "/auth"
	g.GET("/app/", gin.WrapH(a.RequireSession(app))) // a handler behind the session
	return g
}
