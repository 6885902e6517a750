package authn_test

import (
	"context"
	"errors"
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
	"strings"
	"time"

	"github.com/minimost/minimost/authn"
)

func Example() {
	dir, _ := os.MkdirTemp("", "authn-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	a, err := authn.Open(ctx, filepath.Join(dir, "auth.db"), authn.Config{
		Logger: slog.New(slog.DiscardHandler), // keep the example's output short
	})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()

	if err := a.Register(ctx, "alice", "correct horse battery staple"); err != nil {
		log.Fatal(err)
	}
	fmt.Println(a.Authenticate(ctx, "alice", "correct horse battery staple"))
	fmt.Println(a.Authenticate(ctx, "alice", "wrong"))
	fmt.Println(a.Register(ctx, "alice", "short"))
	// Output:
	// <nil>
	// authn: invalid username or password
	// authn: password rejected: shorter than 15 characters
}

func ExampleAuthenticator_Authenticate() {
	dir, _ := os.MkdirTemp("", "authn-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	a, err := authn.Open(ctx, filepath.Join(dir, "auth.db"), authn.Config{
		LockoutThreshold: 3,
		LockoutDuration:  time.Hour,
		Logger:           slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	if err := a.Register(ctx, "bob", "bob's long passphrase here"); err != nil {
		log.Fatal(err)
	}

	for range 3 {
		a.Authenticate(ctx, "bob", "guess")
	}
	err = a.Authenticate(ctx, "bob", "bob's long passphrase here")
	var locked *authn.LockedError
	switch {
	case errors.As(err, &locked):
		// The application may tell the user apart; an HTTP client is told
		// only "invalid username or password".
		fmt.Println("locked for", time.Until(locked.Until).Round(time.Hour))
	case errors.Is(err, authn.ErrInvalidCredentials):
		fmt.Println("invalid credentials")
	case err != nil:
		fmt.Println("service unavailable:", err) // database down, ErrBusy: fail closed
	default:
		fmt.Println("welcome")
	}
	// Output: locked for 1h0m0s
}

func ExamplePasswordPolicy_Check() {
	p := authn.PasswordPolicy{}
	fmt.Println(p.Check("carol", "carol"))
	fmt.Println(p.Check("carol", "passwordpasswordpassword"))
	fmt.Println(p.Check("carol", "qwerty1234567890!"))
	fmt.Println(p.Check("carol", "plenty of entropy in here"))
	// Output:
	// authn: password rejected: shorter than 15 characters
	// authn: password rejected: a short pattern repeated
	// authn: password rejected: a common password with digits or symbols around it
	// <nil>
}

func ExampleAuthenticator_BasicAuth() {
	dir, _ := os.MkdirTemp("", "authn-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	a, err := authn.Open(ctx, filepath.Join(dir, "auth.db"), authn.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	if err := a.Register(ctx, "alice", "correct horse battery staple"); err != nil {
		log.Fatal(err)
	}

	// Any existing handler; authn.Username says who is there.
	admin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := authn.Username(r.Context())
		fmt.Fprintf(w, "hello %s", user)
	})
	srv := httptest.NewServer(a.BasicAuth(admin))
	defer srv.Close()

	for _, pw := range []string{"correct horse battery staple", "guess"} {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.SetBasicAuth("alice", pw)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, resp.Header.Get("WWW-Authenticate"), strings.TrimSpace(string(body)))
	}
	// Output:
	// 200  hello alice
	// 401 Basic realm="restricted", charset="UTF-8" unauthorized
}

func ExampleAuthenticator_LoginHandler() {
	dir, _ := os.MkdirTemp("", "authn-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	a, err := authn.Open(ctx, filepath.Join(dir, "auth.db"), authn.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	if err := a.Register(ctx, "alice", "correct horse battery staple"); err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.Handle("/login", a.LoginHandler())   // GET: the form; POST: form or JSON
	mux.Handle("/logout", a.LogoutHandler()) // POST
	mux.Handle("/app/", a.RequireSession(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := authn.Username(r.Context())
		fmt.Fprintf(w, "%s's page", user)
	})))
	srv := httptest.NewTLSServer(mux) // session cookies are Secure by default
	defer srv.Close()

	jar, _ := cookiejar.New(nil)
	client := srv.Client()
	client.Jar = jar
	resp, err := client.PostForm(srv.URL+"/login", url.Values{
		"username": {"alice"}, "password": {"correct horse battery staple"}, "next": {"/app/"},
	})
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body) // the client followed the 303 to /app/
	resp.Body.Close()
	fmt.Println(resp.StatusCode, resp.Request.URL.Path, string(body))
	// Output: 200 /app/ alice's page
}
