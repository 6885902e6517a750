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
// hash deserves.
type UserRecord struct {
	Username       string
	PasswordHash   string
	FailedAttempts int
	LockedUntil    time.Time // zero: not locked
}

// ReadUsers calls fn for every row of the users table of db, a database
// with the schema of the Python application or of this package, in name
// order, and stops at fn's first error. It reads in pages, so memory stays
// bounded, and only reads: db may be opened read-only, and is not changed.
func ReadUsers(ctx context.Context, db bun.IDB, fn func(UserRecord) error) error {
	const page = 500
	after := ""
	for {
		var users []model.User
		err := db.NewSelect().Model(&users).Where("username > ?", after).
			OrderExpr("username ASC").Limit(page).Scan(ctx)
		if err != nil {
			return fmt.Errorf("authn: reading users: %w", err)
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
		rec.LockedUntil = fromUnixSeconds(*u.LockoutUntil)
	}
	return rec
}

// ImportUser writes a user with an existing hash and lockout state, as
// given: no password policy applies, since the password is not known. The
// username must pass CheckUsername and the hash password.Check. A taken name
// gives ErrUserExists, unless replace is true: then the row is replaced and
// the user's sessions end, in one transaction.
func (a *Authenticator) ImportUser(ctx context.Context, rec UserRecord, replace bool) error {
	if err := a.checkFile(); err != nil {
		return err
	}
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
	u := &model.User{Username: rec.Username, PasswordHash: rec.PasswordHash, FailedAttempts: &failed}
	if !rec.LockedUntil.IsZero() {
		until := unixSeconds(rec.LockedUntil)
		u.LockoutUntil = &until
	}
	if !replace {
		if err := a.insertRow(ctx, u); err != nil {
			return err
		}
		a.emit(ctx, Event{Type: EventRegistered, Username: rec.Username, Reason: "imported"})
		return nil
	}
	err := a.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		_, err := tx.NewInsert().Model(u).
			On("CONFLICT (username) DO UPDATE").
			Set("password_hash = EXCLUDED.password_hash").
			Set("failed_attempts = EXCLUDED.failed_attempts").
			Set("lockout_until = EXCLUDED.lockout_until").
			Exec(ctx)
		if err != nil {
			return err
		}
		return deleteSessions(ctx, tx, rec.Username)
	})
	if err != nil {
		return fmt.Errorf("authn: import %s: %w", rec.Username, err)
	}
	a.emit(ctx, Event{Type: EventPasswordChanged, Username: rec.Username, Reason: "imported"})
	return nil
}
