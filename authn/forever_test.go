package authn_test

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
)

// setLockout stores v in a user's lockout_until as a driver parameter, the
// way Python's sqlite3 and psycopg write a float: +Inf as a REAL infinity,
// not bun's quoted 'Infinity' (which SQLite would keep as TEXT).
func setLockout(t *testing.T, db *testdb.DB, name string, v float64) {
	t.Helper()
	q := "UPDATE users SET lockout_until = ? WHERE username = ?"
	if db.Name == "postgres" {
		q = "UPDATE users SET lockout_until = $1 WHERE username = $2"
	}
	if _, err := db.Raw.DB.Exec(q, v, name); err != nil {
		t.Fatal(err)
	}
}

// storedLockout reads lockout_until back with its SQL type, so that a REAL
// infinity and a TEXT 'Infinity' are told apart.
func storedLockout(t *testing.T, db *testdb.DB, name string) (v float64, valid bool, typ string) {
	t.Helper()
	q := "SELECT lockout_until, typeof(lockout_until) FROM users WHERE username = ?"
	if db.Name == "postgres" {
		q = "SELECT lockout_until, pg_typeof(lockout_until)::text FROM users WHERE username = $1"
	}
	var f *float64
	if err := db.Raw.DB.QueryRow(q, name).Scan(&f, &typ); err != nil {
		t.Fatal(err)
	}
	if f == nil {
		return 0, false, typ
	}
	return *f, true, typ
}

// foreverValues are lockout_until values that are no finite time between
// the years 0 and 9999: an administrator's way of disabling an account.
func foreverValues(db *testdb.DB) map[string]float64 {
	vals := map[string]float64{
		"inf":         math.Inf(1),
		"1e300":       1e300,
		"maxfloat":    math.MaxFloat64,
		"year-33658":  1e12, // finite, but past year 9999
		"minus-inf":   math.Inf(-1),
		"minus-1e300": -1e300,
	}
	if db.Name == "postgres" { // SQLite stores a NaN as NULL
		vals["nan"] = math.NaN()
	}
	return vals
}

// TestLockedForever: a lockout_until that is not a finite time in range
// (Inf, NaN, 1e300, ...) locks the account until it is changed, in every
// read: the claim of a login, a cached Basic credential, Account,
// ListAccounts and ReadUsers; and ImportUser copies the value as it is.
func TestLockedForever(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		a := db.Open(t, authn.Config{})
		h := a.BasicAuth(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		for label, v := range foreverValues(db) {
			name := "u-" + label
			if err := a.Register(ctx, name, goodPassword); err != nil {
				t.Fatal(err)
			}
			if code := serve(h, basicRequest(name, goodPassword)); code != 200 { // now cached
				t.Fatalf("%s: Basic before the lock: %d", label, code)
			}
			setLockout(t, db, name, v)

			if code := serve(h, basicRequest(name, goodPassword)); code != 401 {
				t.Errorf("%s: cached Basic credential after the lock: %d, want 401", label, code)
			}
			err := a.Authenticate(ctx, name, goodPassword)
			var locked *authn.LockedError
			if !errors.As(err, &locked) || !locked.Forever {
				t.Errorf("%s: Authenticate = %v, want a LockedError with Forever", label, err)
			}
			acc, err := a.Account(ctx, name)
			if err != nil || !acc.LockedForever || !acc.LockedUntil.After(time.Now().AddDate(1000, 0, 0)) {
				t.Errorf("%s: Account = %+v, %v; want locked forever", label, acc, err)
			}
			list, err := a.ListAccounts(ctx, authn.ListOptions{After: name[:len(name)-1], LockedOnly: true})
			if err != nil || !containsAccount(list, name) {
				t.Errorf("%s: ListAccounts(LockedOnly) = %v, %v; want it listed", label, list, err)
			}
		}

		// ReadUsers sees them locked forever; ImportUser writes them back
		// as they were, into the same kind of database and into SQLite.
		recs := map[string]authn.UserRecord{}
		if err := authn.ReadUsers(ctx, db.Raw, func(r authn.UserRecord) error { recs[r.Username] = r; return nil }); err != nil {
			t.Fatal(err)
		}
		targets := map[string]*testdb.DB{"sqlite": testdb.SQLite(t)}
		if db.Name == "postgres" {
			targets["postgres"] = testdb.Postgres(t)
		}
		for tname, tdb := range targets {
			b := tdb.Open(t, authn.Config{})
			for label, v := range foreverValues(db) {
				name := "u-" + label
				rec := recs[name]
				if !rec.LockedForever {
					t.Errorf("%s: ReadUsers record %+v not locked forever", label, rec)
				}
				if err := b.ImportUser(ctx, rec, false); err != nil {
					t.Fatalf("%s: import into %s: %v", label, tname, err)
				}
				got, valid, typ := storedLockout(t, tdb, name)
				want := v
				if math.IsNaN(v) && tdb.Name == "sqlite" {
					want = math.Inf(1) // SQLite cannot hold a NaN
				}
				same := got == want || math.IsNaN(got) && math.IsNaN(want)
				if !valid || !same || (tdb.Name == "sqlite" && typ != "real") {
					t.Errorf("%s: imported into %s as %v (%s, valid %v), want %v as a real", label, tname, got, typ, valid, strconv.FormatFloat(want, 'g', -1, 64))
				}
				if err := b.Authenticate(ctx, name, goodPassword); !errors.Is(err, authn.ErrLocked) {
					t.Errorf("%s: login after the import into %s: %v, want locked", label, tname, err)
				}
			}
		}

		// Unlock and SetPassword change the value: the account opens.
		if err := a.Unlock(ctx, "u-inf"); err != nil {
			t.Fatal(err)
		}
		if err := a.Authenticate(ctx, "u-inf", goodPassword); err != nil {
			t.Fatalf("after Unlock: %v", err)
		}
	})
}

func containsAccount(list []authn.Account, name string) bool {
	for _, acc := range list {
		if acc.Username == name {
			return true
		}
	}
	return false
}

// TestLockForever: Lock with Forever stores +Inf (a REAL on SQLite, not
// the string 'Infinity'), as the Python application disables an account:
// Account and ListAccounts say locked forever, logins, the cached Basic
// credential and app tokens are refused, and the lock outlasts any time
// until Unlock ends it.
func TestLockForever(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		clk := newClock()
		a := db.Open(t, authn.Config{Now: clk.Now})
		if err := a.Register(ctx, "mallory", goodPassword); err != nil {
			t.Fatal(err)
		}
		token, err := a.CreateToken(ctx, "mallory", "ci")
		if err != nil {
			t.Fatal(err)
		}
		h := a.BasicAuth(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		if code := serve(h, basicRequest("mallory", goodPassword)); code != 200 { // now cached
			t.Fatalf("Basic before the lock: %d", code)
		}
		if err := a.Lock(ctx, "mallory", authn.Forever); err != nil {
			t.Fatal(err)
		}
		if v, valid, typ := storedLockout(t, db, "mallory"); !valid || !math.IsInf(v, 1) || db.Name == "sqlite" && typ != "real" {
			t.Fatalf("stored lockout_until %v (%s, valid %v), want +Inf as a number", v, typ, valid)
		}
		for range 3 { // past the longest Duration, about 292 years
			clk.Advance(100 * 365 * 24 * time.Hour)
		}
		acc, err := a.Account(ctx, "mallory")
		if err != nil || !acc.LockedForever {
			t.Fatalf("Account = %+v, %v; want locked forever", acc, err)
		}
		list, err := a.ListAccounts(ctx, authn.ListOptions{LockedOnly: true})
		if err != nil || !containsAccount(list, "mallory") || !list[0].LockedForever {
			t.Errorf("ListAccounts(LockedOnly) = %+v, %v; want mallory locked forever", list, err)
		}
		var locked *authn.LockedError
		if err := a.Authenticate(ctx, "mallory", goodPassword); !errors.As(err, &locked) || !locked.Forever {
			t.Errorf("Authenticate = %v, want a LockedError with Forever", err)
		}
		if code := serve(h, basicRequest("mallory", goodPassword)); code != 401 {
			t.Errorf("cached Basic credential: %d, want 401", code)
		}
		if code := serve(h, withAuthorization(bearer(token))); code != 401 {
			t.Errorf("app token: %d, want 401", code)
		}
		if err := a.Unlock(ctx, "mallory"); err != nil {
			t.Fatal(err)
		}
		if err := a.Authenticate(ctx, "mallory", goodPassword); err != nil {
			t.Errorf("after Unlock: %v", err)
		}
		if code := serve(h, withAuthorization(bearer(token))); code != 200 {
			t.Errorf("app token after Unlock: %d, want 200", code)
		}
	})
}

// withAuthorization is a GET with that Authorization header.
func withAuthorization(v string) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", v)
	return r
}
