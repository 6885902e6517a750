package authn

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/minimost/minimost/authn/password"
	"github.com/minimost/minimost/model"
	"github.com/uptrace/bun"
)

// UserRecord is a user as stored, hash included: what moves between
// databases (ReadUsers, ImportUser). Handle it with the care a password
// hash deserves. It is one of the three types of a user, each for one
// purpose; see Account for the other two.
type UserRecord struct {
	Username       string
	PasswordHash   string
	FailedAttempts int
	LockedUntil    time.Time // zero: not locked
	// LockedForever is true for a lock with no end (see
	// Account.LockedForever); LockedUntil is then the last second of year
	// 9999.
	LockedForever bool
	// StoredLockout is, when LockedForever, the lockout_until value as
	// ReadUsers read it (+Inf, NaN, 1e300, ...), so that ImportUser copies
	// it exactly. When it is a finite time in range (0 for a record made by
	// hand), ImportUser writes +Inf.
	StoredLockout float64
}

// ReadUsers calls fn for every row of the users table of db, a database
// with the schema of the Python application or of this package, in name
// order, and stops at fn's first error. It reads in pages, so memory stays
// bounded, and only reads: db may be opened read-only, and is not changed.
func ReadUsers(ctx context.Context, db bun.IDB, fn func(UserRecord) error) error {
	const page = 500
	after := ""
	for {
		users, err := readUserPage(ctx, db, after, page)
		if err != nil {
			return err
		}
		for _, u := range users {
			if err := fn(userRecord(u)); err != nil {
				return err
			}
		}
		if len(users) < page {
			return nil
		}
		after = users[len(users)-1].Username
	}
}

func userRecord(u model.User) UserRecord {
	rec := UserRecord{Username: u.Username, PasswordHash: u.PasswordHash}
	if u.FailedAttempts != nil {
		rec.FailedAttempts = int(*u.FailedAttempts)
	}
	if u.LockoutUntil != nil {
		rec.LockedUntil, rec.LockedForever = lockTime(*u.LockoutUntil)
		if rec.LockedForever {
			rec.StoredLockout = *u.LockoutUntil
		}
	}
	return rec
}

// ImportUser writes a user with an existing hash and lockout state, as
// given: no password policy applies, since the password is not known. The
// username must pass CheckUsername and the hash password.Check. A taken name
// gives ErrUserExists, unless replace is true: then the row is replaced and
// the user's sessions end, in one transaction (its app tokens stay, as with
// SetPassword). A user written where there was none never inherits the app
// tokens a user of that name deleted behind the library's back left. A lock with no end
// (LockedForever) is written as the value it was read with, except that
// SQLite, which stores a NaN as NULL (unlocked), gets +Inf for it.
func (a *Authenticator) ImportUser(ctx context.Context, rec UserRecord, replace bool) error {
	if err := CheckUsername(rec.Username); err != nil {
		return err
	}
	if err := password.Check(rec.PasswordHash); err != nil {
		return fmt.Errorf("authn: import %s: %w", rec.Username, err)
	}
	if rec.FailedAttempts < 0 || rec.FailedAttempts > math.MaxInt32 {
		return fmt.Errorf("authn: import %s: failed attempts %d out of range", rec.Username, rec.FailedAttempts)
	}
	failed := int64(rec.FailedAttempts)
	u := &model.User{Username: rec.Username, PasswordHash: rec.PasswordHash, FailedAttempts: &failed,
		LockoutUntil: storedLockout(rec)}
	if !replace {
		if err := a.store.insertRow(ctx, u); err != nil {
			return err
		}
		a.emit(ctx, Event{Type: EventRegistered, Username: rec.Username, Reason: ReasonImported})
		return nil
	}
	if err := a.store.replaceRow(ctx, u); err != nil {
		return err
	}
	a.emit(ctx, Event{Type: EventPasswordChanged, Username: rec.Username, Reason: ReasonImported})
	return nil
}

// storedLockout is the lockout_until ImportUser writes for rec: nil when it
// is not locked, and for a lock with no end the value it was read with, or
// +Inf. A LockedUntil past year 9999 is a lock with no end too.
func storedLockout(rec UserRecord) *float64 {
	var s float64
	switch {
	case rec.LockedForever:
		s = rec.StoredLockout
		if _, forever := lockTime(s); !forever {
			s = math.Inf(1)
		}
	case rec.LockedUntil.IsZero():
		return nil
	case rec.LockedUntil.Before(time.Unix(minLockSeconds, 0)), !rec.LockedUntil.Before(time.Unix(maxLockSeconds, 0)):
		s = math.Inf(1)
	default:
		s = unixSeconds(rec.LockedUntil)
	}
	return &s
}
