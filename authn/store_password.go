package authn

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/minimost/minimost/model"
	"github.com/uptrace/bun"
)

// changePassword is the write of a change of password, in one transaction:
// it stores encoded as username's hash and clears the counter and the lock,
// provided the row still has the hash verified and is not locked at now
// (errSessionRefused otherwise: a SetPassword, Lock or Delete that came in
// between wins); then it carries the user's tokens over to the new hash
// and ends the user's sessions. When keep is not "", the session of that
// token hash is kept under the token hash renamed, bound to the new hash,
// its last use set to now, and its row returned (its end and whether it is
// remembered); errNoSession when it is no longer a live session of the
// user, and nothing is written then. On PostgreSQL the UPDATE locks the
// user's row, so a concurrent change waits for this one and then finds the
// hash changed.
func (s *store) changePassword(ctx context.Context, username, verified, encoded string, now time.Time, keep, renamed string) (model.Session, error) {
	var kept model.Session
	if err := s.check(); err != nil {
		return kept, err
	}
	t := unixSeconds(now)
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res, err := clearLock(tx).Set("password_hash = ?", encoded).
			Where("username = ?", username).Where("password_hash = ?", verified).
			Where(unlockedSQL, unlockedArgs(t)...).Exec(ctx)
		if err := oneRow(res, err); errors.Is(err, ErrNotFound) {
			return errSessionRefused
		} else if err != nil {
			return err
		}
		if err := rebindCredentials(ctx, tx, username, verified, encoded); err != nil {
			return err
		}
		end := tx.NewDelete().Model((*model.Session)(nil)).Where("username = ?", username)
		if keep != "" {
			end = end.Where("token_hash <> ?", keep)
		}
		if _, err := end.Exec(ctx); err != nil {
			return err
		}
		if keep == "" {
			return nil
		}
		rename := tx.NewUpdate().Model((*model.Session)(nil)).
			Set("token_hash = ?", renamed).Set("last_seen = ?", t).Set("user_hash = ?", encoded).
			Where("token_hash = ?", keep).Where("username = ?", username).Where("user_hash = ?", verified).Where("expires_at > ?", t).
			Returning("expires_at, remembered")
		err = scanWritten(ctx, tx.Tx, s.db.QueryGen(), rename, &kept.ExpiresAt, &kept.Remembered)
		if errors.Is(err, sql.ErrNoRows) {
			return errNoSession
		}
		return err
	})
	switch {
	case err == nil:
		return kept, nil
	case errors.Is(err, errSessionRefused), errors.Is(err, errNoSession):
		return kept, err
	}
	return kept, notWritten("changing the password of "+quoteName(username), err)
}
