package authn

import (
	"context"
	"sync/atomic"
	"time"
)

// failureTiming keeps failed logins from telling accounts apart by their
// timing. The reference is what an unknown user costs: a verification of the
// dummy hash, made with the configured Hasher. A wrong password for a user
// whose stored hash is cheaper than that (an older PBKDF2 count, bcrypt from
// htpasswd, an unusable string) would answer sooner, and one sample would
// tell that the account exists; so every failure is padded to the moving
// average of the dummy verifications, after its hashing slot is released
// (the wait holds no capacity). Authelia pads failures the same way.
//
// What remains: a stored hash slower than the dummy still takes longer than
// an unknown user (padding can only add time), until the next successful
// login re-hashes it with the configured Hasher.
type failureTiming struct {
	avg atomic.Int64 // nanoseconds; an exponential moving average
}

// observe adds the duration of one dummy verification to the average, with
// a weight of 1/8: quick to follow a change of load, slow to be moved by one
// outlier.
func (f *failureTiming) observe(d time.Duration) {
	for {
		old := f.avg.Load()
		next := old + (int64(d)-old)/8
		if old == 0 {
			next = int64(d)
		}
		if f.avg.CompareAndSwap(old, next) {
			return
		}
	}
}

// pad waits until a failure that started at start has taken as long as a
// dummy verification, or until ctx ends.
func (f *failureTiming) pad(ctx context.Context, start time.Time) {
	wait := time.Duration(f.avg.Load()) - time.Since(start)
	if wait <= 0 {
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
