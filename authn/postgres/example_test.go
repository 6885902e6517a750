package postgres_test

import (
	"context"
	"log"
	"net/http"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/postgres"
)

// A server whose users live in PostgreSQL, shared by all its instances.
func ExampleOpen() {
	ctx := context.Background()
	a, err := postgres.Open(ctx, "postgres://app@db.example/app?sslmode=verify-full", authn.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close() // closes the pool Open made

	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := authn.Username(r.Context())
		w.Write([]byte("Hello, " + user))
	})
	http.Handle("/", a.BasicAuth(hello))
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", nil))
}
