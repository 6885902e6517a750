package authn_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"

	"github.com/minimost/minimost/authn"
)

func ExampleAuthenticator_Routes() {
	dir, _ := os.MkdirTemp("", "authn-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	a, err := authn.Open(ctx, filepath.Join(dir, "auth.db"), authn.Config{
		Logger: slog.New(slog.DiscardHandler),
		HTTP: authn.HTTPConfig{
			Prefix:            "/auth", // login, logout and register under /auth/
			AllowRegistration: true,    // strangers may create accounts
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()

	mux := http.NewServeMux()
	mux.Handle("/auth/", a.Routes())
	mux.Handle("/app/", a.RequireSession(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := authn.Username(r.Context())
		fmt.Fprintf(w, "%s's page", user)
	})))
	srv := httptest.NewTLSServer(mux) // session cookies are Secure by default
	defer srv.Close()

	jar, _ := cookiejar.New(nil)
	client := srv.Client()
	client.Jar = jar
	show := func(resp *http.Response, err error) {
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Header.Get("Content-Type") == "text/plain; charset=utf-8" {
			fmt.Println(resp.StatusCode, resp.Request.URL.RequestURI(), string(body))
		} else { // a form
			fmt.Println(resp.StatusCode, resp.Request.URL.RequestURI())
		}
	}

	// Without a session, the app sends the browser to the login form.
	show(client.Get(srv.URL + "/app/"))
	// Registering and signing in, as the forms post.
	account := url.Values{"username": {"alice"}, "password": {"correct horse battery staple"}}
	show(client.PostForm(srv.URL+"/auth/register", account))
	account.Set("next", "/app/")
	show(client.PostForm(srv.URL+"/auth/login", account))
	show(client.PostForm(srv.URL+"/auth/logout", nil))
	// Output:
	// 200 /auth/login?next=%2Fapp%2F
	// 201 /auth/register
	// 200 /app/ alice's page
	// 200 /auth/login?notice=signed_out
}
