package authn_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/password"
	"github.com/minimost/minimost/internal/testdb"
)

// sleepyHasher is the fast test hasher, except that hashing, and verifying
// a hash of the configured kind, sleep for delay: it stands for a default
// hasher that is slower than the hashes a migrated database holds. Sleeping,
// not computing, keeps the figures steady on a loaded machine.
type sleepyHasher struct {
	password.Hasher
	kind  string // the prefix of the configured kind's hashes
	delay time.Duration
}

func (h sleepyHasher) Verify(encoded, pw string) (bool, error) {
	if strings.HasPrefix(encoded, h.kind) {
		time.Sleep(h.delay)
	}
	return h.Hasher.Verify(encoded, pw)
}

func (h sleepyHasher) Hash(pw string) (string, error) {
	time.Sleep(h.delay)
	return h.Hasher.Hash(pw)
}

// TestFailureTimingDoesNotTellHashKinds: a wrong password for a user whose
// stored hash is cheaper than the configured kind (an older PBKDF2, bcrypt
// from htpasswd, an unusable string) takes as long as an unknown user, who
// costs a verification of the dummy hash.
func TestFailureTimingDoesNotTellHashKinds(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		const delay = 40 * time.Millisecond
		h := sleepyHasher{Hasher: password.PBKDF2{Iterations: 1000}, kind: "pbkdf2:sha256:1000$", delay: delay}
		a := db.Open(t, authn.Config{Hasher: h, LockoutThreshold: -1})
		stored := map[string]string{"unusable": "plaintextpassword"}
		for kind, hasher := range map[string]password.Hasher{
			"pbkdf2-sha1": password.PBKDF2{Digest: "sha1", Iterations: 1000},
			"bcrypt-4":    password.Bcrypt{Cost: 4},
			"configured":  h, // for reference: as slow as the dummy
		} {
			encoded, err := hasher.Hash(goodPassword)
			if err != nil {
				t.Fatal(err)
			}
			stored[kind] = encoded
		}
		for kind, encoded := range stored {
			if _, err := db.Raw.Exec("INSERT INTO users (username, password_hash) VALUES (?, ?)", strings.ReplaceAll(kind, "-", "_"), encoded); err != nil {
				t.Fatal(err)
			}
		}
		samples := map[string][]time.Duration{}
		for range 7 { // interleaved, so that a change of load hits every kind
			for kind := range stored {
				samples[kind] = append(samples[kind], timeFailure(t, a, strings.ReplaceAll(kind, "-", "_")))
			}
			samples["unknown"] = append(samples["unknown"], timeFailure(t, a, "nobody"))
		}
		// The promise: every failure takes at least a dummy verification
		// (delay). Against the unknown user's median too, loosely: that
		// path also makes two database round trips, which a loaded
		// machine stretches.
		unknown := median(samples["unknown"])
		if unknown < delay {
			t.Fatalf("unknown user: %v, less than the dummy verification's %v", unknown, delay)
		}
		for kind := range stored {
			// Without padding the cheap kinds answer in about a
			// millisecond (ratios 0.01-0.06 seen before the fix).
			got := median(samples[kind])
			if got < delay*9/10 || float64(got) < 0.5*float64(unknown) {
				t.Errorf("wrong password, %s hash: median %v against %v for an unknown user (ratio %.2f), want at least %v",
					kind, got, unknown, float64(got)/float64(unknown), delay*9/10)
			}
		}
	})
}

// timeFailure times one failed login of user.
func timeFailure(t *testing.T, a *authn.Authenticator, user string) time.Duration {
	t.Helper()
	start := time.Now()
	err := a.Authenticate(context.Background(), user, "a wrong password")
	d := time.Since(start)
	if !errors.Is(err, authn.ErrInvalidCredentials) {
		t.Fatalf("%s: %v, want ErrInvalidCredentials", user, err)
	}
	return d
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestUnknownBearerTakesTheFailureTime: an unknown app token sent as a
// Bearer credential names no account, so nothing is claimed and no hash is
// verified; its 401 still comes after the time of a failed password, so
// that a quick answer does not mark the credential as a token that was
// looked up and missed. The hasher sleeps, so that the failure time is
// long and steady, and the bound is loose: half of it (without padding,
// the answer takes well under a millisecond).
func TestUnknownBearerTakesTheFailureTime(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		const delay = 50 * time.Millisecond
		h := sleepyHasher{Hasher: password.PBKDF2{Iterations: 1000}, kind: "pbkdf2:sha256:1000$", delay: delay}
		a := db.Open(t, authn.Config{Hasher: h, LockoutThreshold: -1, HTTP: authn.HTTPConfig{Throttle: bigThrottle()}})
		basic := a.BasicAuth(okHandler())
		unknown := "mmt_" + strings.Repeat("A", 43)
		var bearerTimes, userTimes []time.Duration
		for range 5 { // interleaved, so that a change of load hits both
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Authorization", "Bearer "+unknown)
			start := time.Now()
			code := serve(basic, r)
			bearerTimes = append(bearerTimes, time.Since(start))
			if code != 401 {
				t.Fatalf("unknown Bearer token: %d, want 401", code)
			}
			userTimes = append(userTimes, timeFailure(t, a, "nobody"))
		}
		got, user := median(bearerTimes), median(userTimes)
		if got < delay/2 || got < user/2 {
			t.Fatalf("unknown Bearer token answered in %v (median), against %v for an unknown user's password; want at least half of both %v and that",
				got, user, delay)
		}
	})
}
