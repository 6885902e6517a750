package authn_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/internal/testdb"
)

// attackInParallel sends n wrong passwords for name at once, spread over the
// Authenticators, and fails the test if any answer is other than
// ErrInvalidCredentials or ErrLocked.
func attackInParallel(t *testing.T, n int, name string, as ...*authn.Authenticator) {
	t.Helper()
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			err := as[i%len(as)].Authenticate(context.Background(), name, "wrong password, try again")
			if !errors.Is(err, authn.ErrInvalidCredentials) && !errors.Is(err, authn.ErrLocked) {
				errs <- err
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("parallel wrong password: %v", err)
	}
}

// TestLockoutUnderParallelAttack: with T=5, 200 wrong passwords at once check
// the real hash exactly 5 times; then the right password is refused until
// the lock ends, and works after it with the counter at 0.
func TestLockoutUnderParallelAttack(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		h := newCountingHasher(fastHasher)
		clk := newClock()
		a := db.Open(t, authn.Config{Hasher: h, Now: clk.Now, LockoutThreshold: 5, LockoutDuration: time.Hour})
		ctx := context.Background()
		if err := a.Register(ctx, "victim", goodPassword); err != nil {
			t.Fatal(err)
		}
		stored := readUser(t, db.Raw, "victim").Hash

		attackInParallel(t, 200, "victim", a)

		if got := h.Verifies(stored); got != 5 {
			t.Fatalf("real password checks = %d, want exactly 5", got)
		}
		err := a.Authenticate(ctx, "victim", goodPassword)
		var locked *authn.LockedError
		if !errors.As(err, &locked) || !errors.Is(err, authn.ErrLocked) {
			t.Fatalf("right password while locked: %v, want a *LockedError", err)
		}
		if want := clk.Now().Add(time.Hour); !locked.Until.Equal(want) {
			t.Errorf("locked until %v, want %v", locked.Until, want)
		}
		if got := h.Verifies(stored); got != 5 {
			t.Fatalf("the locked account's hash was checked again: %d checks", got)
		}
		acc, err := a.Account(ctx, "victim")
		if err != nil || acc.LockedUntil.IsZero() || acc.FailedAttempts != 0 {
			t.Fatalf("Account = %+v, %v; want locked with 0 failed attempts", acc, err)
		}

		clk.Advance(time.Hour)
		if err := a.Authenticate(ctx, "victim", goodPassword); err != nil {
			t.Fatalf("right password after the lock: %v", err)
		}
		row := readUser(t, db.Raw, "victim")
		if row.Failed.Int64 != 0 || row.Until.Valid {
			t.Fatalf("after success: failed_attempts=%v lockout_until=%v, want 0 and NULL", row.Failed, row.Until)
		}
	})
}

// TestLockoutAcrossPools: two Authenticators on two connection pools over
// one database, as two processes or machines would have, still allow
// exactly T checks in all.
func TestLockoutAcrossPools(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		h := newCountingHasher(fastHasher)
		a1 := db.Open(t, authn.Config{Hasher: h, LockoutThreshold: 5})
		a2 := db.Open(t, authn.Config{Hasher: h, LockoutThreshold: 5})
		ctx := context.Background()
		if err := a1.Register(ctx, "victim", goodPassword); err != nil {
			t.Fatal(err)
		}
		stored := readUser(t, db.Raw, "victim").Hash

		attackInParallel(t, 200, "victim", a1, a2)

		if got := h.Verifies(stored); got != 5 {
			t.Fatalf("real password checks over two pools = %d, want exactly 5", got)
		}
		for _, a := range []*authn.Authenticator{a1, a2} {
			if err := a.Authenticate(ctx, "victim", goodPassword); !errors.Is(err, authn.ErrLocked) {
				t.Fatalf("right password after the attack: %v, want ErrLocked", err)
			}
		}
		// The premise: two pools, not one shared (nor one sql.DB under two
		// bun.DBs). Closing the first leaves the second working.
		if err := a1.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a2.Authenticate(ctx, "victim", goodPassword); !errors.Is(err, authn.ErrLocked) {
			t.Fatalf("second Authenticator after the first closed: %v, want ErrLocked (do they share a pool?)", err)
		}
	})
}

// TestLockoutCountsConsecutiveFailures checks the rule step by step: the
// T-th failure locks and resets the counter, a success resets it. The
// success is the third claim of four, so that it is the reset, not a lock,
// that brings the counter back to 0.
func TestLockoutCountsConsecutiveFailures(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		clk := newClock()
		a := db.Open(t, authn.Config{Now: clk.Now, LockoutThreshold: 4, LockoutDuration: time.Minute})
		ctx := context.Background()
		if err := a.Register(ctx, "u", goodPassword); err != nil {
			t.Fatal(err)
		}
		raw := db.Raw
		wrong := func() {
			t.Helper()
			if err := a.Authenticate(ctx, "u", "not the password"); !errors.Is(err, authn.ErrInvalidCredentials) {
				t.Fatalf("wrong password: %v", err)
			}
		}
		wrong()
		wrong()
		if got := readUser(t, raw, "u").Failed.Int64; got != 2 {
			t.Fatalf("failed_attempts = %d, want 2", got)
		}
		if err := a.Authenticate(ctx, "u", goodPassword); err != nil {
			t.Fatal(err)
		}
		if got := readUser(t, raw, "u").Failed.Int64; got != 0 {
			t.Fatalf("failed_attempts after success = %d, want 0", got)
		}
		wrong()
		wrong()
		wrong()
		if got := readUser(t, raw, "u").Failed.Int64; got != 3 {
			t.Fatalf("failed_attempts = %d after 3 failures since the success, want 3", got)
		}
		wrong() // the fourth locks
		row := readUser(t, raw, "u")
		if row.Failed.Int64 != 0 || !row.Until.Valid {
			t.Fatalf("after 4 failures: failed_attempts=%v lockout_until=%v, want 0 and a time", row.Failed, row.Until)
		}
		if want := float64(clk.Now().Add(time.Minute).UnixMicro()) / 1e6; row.Until.Float64 != want {
			t.Fatalf("lockout_until = %f, want %f", row.Until.Float64, want)
		}
		// A refused attempt on a locked account changes nothing.
		if err := a.Authenticate(ctx, "u", "not the password"); !errors.Is(err, authn.ErrLocked) {
			t.Fatalf("attempt while locked: %v", err)
		}
		if after := readUser(t, raw, "u"); after != row {
			t.Fatalf("a refused attempt wrote: %+v -> %+v", row, after)
		}
		clk.Advance(time.Minute)
		wrong() // the lock has ended: counting starts again
		if row := readUser(t, raw, "u"); row.Failed.Int64 != 1 || row.Until.Valid {
			t.Fatalf("first failure after the lock: %+v, want 1 and NULL", row)
		}
	})
}

func TestLockoutDisabled(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		h := newCountingHasher(fastHasher)
		a := db.Open(t, authn.Config{Hasher: h, LockoutThreshold: -1})
		ctx := context.Background()
		if err := a.Register(ctx, "u", goodPassword); err != nil {
			t.Fatal(err)
		}
		for range 20 {
			if err := a.Authenticate(ctx, "u", "not the password"); !errors.Is(err, authn.ErrInvalidCredentials) {
				t.Fatal(err)
			}
		}
		if got := h.Verifies(readUser(t, db.Raw, "u").Hash); got != 20 {
			t.Fatalf("checks = %d, want 20 with lockout disabled", got)
		}
		if err := a.Authenticate(ctx, "u", goodPassword); err != nil {
			t.Fatal(err)
		}
		// An explicit lock still holds.
		if err := a.Lock(ctx, "u", time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := a.Authenticate(ctx, "u", goodPassword); !errors.Is(err, authn.ErrLocked) {
			t.Fatalf("after Lock: %v, want ErrLocked", err)
		}
	})
}

// TestUnknownUserRunsDummyVerification: failures that check no real hash
// still run one verification, against the dummy hash, so they take as long.
func TestUnknownUserRunsDummyVerification(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		h := newCountingHasher(fastHasher)
		a := db.Open(t, authn.Config{Hasher: h})
		ctx := context.Background()
		if err := a.Register(ctx, "locked", goodPassword); err != nil {
			t.Fatal(err)
		}
		if err := a.Lock(ctx, "locked", time.Hour); err != nil {
			t.Fatal(err)
		}
		cases := []struct{ user, pw string }{
			{"nobody", goodPassword},
			{"bad name!", goodPassword},
			{"locked", goodPassword},
			{"nobody", ""},
		}
		for _, c := range cases {
			err := a.Authenticate(ctx, c.user, c.pw)
			if !errors.Is(err, authn.ErrInvalidCredentials) && !errors.Is(err, authn.ErrLocked) {
				t.Fatalf("Authenticate(%q): %v", c.user, err)
			}
		}
		if total := h.TotalVerifies(); total != len(cases) {
			t.Fatalf("%d verifications for %d failures, want one each", total, len(cases))
		}
	})
}

// TestPasswordChangedDuringLogin: a login whose password was verified just
// as the password changed must fail, not reset the new row.
func TestPasswordChangedDuringLogin(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		h := newCountingHasher(fastHasher)
		a := db.Open(t, authn.Config{Hasher: h})
		ctx := context.Background()
		if err := a.Register(ctx, "u", goodPassword); err != nil {
			t.Fatal(err)
		}
		var once sync.Once
		h.SetOnVerify(func(string) {
			once.Do(func() {
				if err := a.SetPassword(ctx, "u", "the brand new passphrase"); err != nil {
					t.Error(err)
				}
			})
		})
		if err := a.Authenticate(ctx, "u", goodPassword); !errors.Is(err, authn.ErrInvalidCredentials) {
			t.Fatalf("login racing a password change: %v, want ErrInvalidCredentials", err)
		}
		h.SetOnVerify(nil)
		if err := a.Authenticate(ctx, "u", "the brand new passphrase"); err != nil {
			t.Fatalf("new password: %v", err)
		}
	})
}

// TestBusy: with every hashing slot taken, a login whose context ends gets
// ErrBusy and writes nothing.
func TestBusy(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		h := newCountingHasher(fastHasher)
		a := db.Open(t, authn.Config{Hasher: h, HashConcurrency: 1})
		ctx := context.Background()
		if err := a.Register(ctx, "u", goodPassword); err != nil {
			t.Fatal(err)
		}
		inside, leave := make(chan struct{}), make(chan struct{})
		h.SetOnVerify(func(string) { close(inside); <-leave })
		done := make(chan error)
		go func() { done <- a.Authenticate(ctx, "u", goodPassword) }()
		<-inside // the only slot is taken

		before := readUser(t, db.Raw, "u")
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		if err := a.Authenticate(short, "u", "not the password"); !errors.Is(err, authn.ErrBusy) {
			t.Fatalf("login with no free slot: %v, want ErrBusy", err)
		}
		short, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if err := a.Register(short, "v", goodPassword); !errors.Is(err, authn.ErrBusy) {
			t.Fatalf("register with no free slot: %v, want ErrBusy", err)
		}
		if after := readUser(t, db.Raw, "u"); after != before {
			t.Fatalf("a refused login wrote: %+v -> %+v", before, after)
		}
		close(leave)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
