package authn

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/minimost/minimost/model"
	"github.com/uptrace/bun"
)

// The statements of the TOTP second factor and its recovery codes.

// beginTOTP stores a new, unconfirmed sealed secret of username, over an
// unconfirmed one, and reports false when username has a confirmed one
// (which only Disable or Reset removes).
func (s *store) beginTOTP(ctx context.Context, username, sealed string, now time.Time) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	n, err := rowsAffected(s.db.ExecContext(ctx, `INSERT INTO totp_secrets (username, sealed, confirmed, last_step, created_at)
VALUES (?, ?, ?, 0, ?)
ON CONFLICT (username) DO UPDATE SET sealed = EXCLUDED.sealed, created_at = EXCLUDED.created_at, last_step = 0
WHERE totp_secrets.confirmed = ?`, username, sealed, false, unixSeconds(now), false))
	if err != nil {
		return false, notWritten("storing a TOTP secret", err)
	}
	return n == 1, nil
}

// totpSecret reads username's TOTP row; sql.ErrNoRows when there is none.
func (s *store) totpSecret(ctx context.Context, username string) (model.TOTPSecret, error) {
	var row model.TOTPSecret
	if err := s.check(); err != nil {
		return row, err
	}
	err := s.db.NewSelect().Model(&row).Where("username = ?", username).Scan(ctx)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("authn: reading a TOTP secret: %w", err)
	}
	return row, err
}

// useStep records that a code of time step step was accepted for
// username's confirmed secret, in one statement that succeeds only if no
// code of that step or a later one was (RFC 6238 §5.2): of two requests
// with the same code, on any instances, one records it. It reports
// whether this one did.
func (s *store) useStep(ctx context.Context, username string, step int64) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	n, err := rowsAffected(s.db.NewUpdate().Model((*model.TOTPSecret)(nil)).
		Set("last_step = ?", step).
		Where("username = ?", username).Where("confirmed").Where("last_step < ?", step).Exec(ctx))
	if err != nil {
		return false, notWritten("recording a TOTP time step", err)
	}
	return n == 1, nil
}

// confirmTOTP activates username's unconfirmed secret sealed, the one the
// code was checked against, recording step as used, and replaces the
// user's recovery codes with codeHashes, in one transaction. It reports
// false when that secret is no longer the unconfirmed one (confirmed
// already, replaced, or removed).
func (s *store) confirmTOTP(ctx context.Context, username, sealed string, step int64, codeHashes []string) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	var n int64
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var err error
		n, err = rowsAffected(tx.NewUpdate().Model((*model.TOTPSecret)(nil)).
			Set("confirmed = ?", true).Set("last_step = ?", step).
			Where("username = ?", username).Where("sealed = ?", sealed).Where("NOT confirmed").Exec(ctx))
		if err != nil || n != 1 {
			return err
		}
		return replaceRecoveryCodes(ctx, tx, username, codeHashes)
	})
	if err != nil {
		return false, notWritten("confirming a TOTP secret", err)
	}
	return n == 1, nil
}

// replaceRecoveryCodes deletes username's recovery codes and stores
// codeHashes, in tx.
func replaceRecoveryCodes(ctx context.Context, tx bun.Tx, username string, codeHashes []string) error {
	if _, err := tx.NewDelete().Model((*model.RecoveryCode)(nil)).Where("username = ?", username).Exec(ctx); err != nil {
		return err
	}
	rows := make([]model.RecoveryCode, len(codeHashes))
	for i, h := range codeHashes {
		rows[i] = model.RecoveryCode{CodeHash: h, Username: username}
	}
	_, err := tx.NewInsert().Model(&rows).Returning("NULL").Exec(ctx)
	return err
}

// newRecoveryCodes replaces the recovery codes of username, who must have
// a confirmed TOTP secret (ErrNotFound otherwise), with codeHashes.
func (s *store) newRecoveryCodes(ctx context.Context, username string, codeHashes []string) error {
	if err := s.check(); err != nil {
		return err
	}
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		ok, err := tx.NewSelect().Model((*model.TOTPSecret)(nil)).Where("username = ?", username).Where("confirmed").Exists(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotFound
		}
		return replaceRecoveryCodes(ctx, tx, username, codeHashes)
	})
	if errors.Is(err, ErrNotFound) {
		return err
	}
	if err != nil {
		return notWritten("storing recovery codes", err)
	}
	return nil
}

// useRecoveryCode deletes username's recovery code of hash codeHash, in
// one statement, and reports whether it did: a code is used once, of two
// requests with it, on any instances, one succeeds.
func (s *store) useRecoveryCode(ctx context.Context, username, codeHash string) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	n, err := rowsAffected(s.db.NewDelete().Model((*model.RecoveryCode)(nil)).
		Where("code_hash = ?", codeHash).Where("username = ?", username).Exec(ctx))
	if err != nil {
		return false, notWritten("using a recovery code", err)
	}
	return n == 1, nil
}

// recoveryCodesLeft counts username's unused recovery codes.
func (s *store) recoveryCodesLeft(ctx context.Context, username string) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	n, err := s.db.NewSelect().Model((*model.RecoveryCode)(nil)).Where("username = ?", username).Count(ctx)
	if err != nil {
		return 0, fmt.Errorf("authn: counting recovery codes: %w", err)
	}
	return int(n), nil
}

// removeTOTP deletes username's TOTP secret, recovery codes and pending
// logins, and ends the user's sessions when endSessions is true, in one
// transaction; ErrNotFound when the user does not exist. It reports
// whether there was a secret.
func (s *store) removeTOTP(ctx context.Context, username string, endSessions bool) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	var had bool
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := s.lockedHash(ctx, tx, username); err != nil {
			return err
		}
		n, err := rowsAffected(tx.NewDelete().Model((*model.TOTPSecret)(nil)).Where("username = ?", username).Exec(ctx))
		if err != nil {
			return err
		}
		had = n > 0
		for _, m := range []any{(*model.RecoveryCode)(nil), (*model.PendingLogin)(nil)} {
			if _, err := tx.NewDelete().Model(m).Where("username = ?", username).Exec(ctx); err != nil {
				return err
			}
		}
		if endSessions {
			return deleteSessions(ctx, tx, username)
		}
		return nil
	})
	if err != nil {
		return false, notFoundOr(err, "remove the second factor of", username)
	}
	return had, nil
}
