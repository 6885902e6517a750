package authn

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/minimost/minimost/model"
)

// The statements of passkeys (see Passkeys): the credentials, and the
// ceremonies begun and not yet finished (challenges).

// errNoChallenge is the error of a challenge that is not there: never
// begun, used already, or of another kind.
var errNoChallenge = errors.New("authn: no such passkey challenge")

// insertChallenge stores a ceremony begun, for any instance to finish.
func (s *store) insertChallenge(ctx context.Context, c *model.PasskeyChallenge) error {
	if err := s.check(); err != nil {
		return err
	}
	if _, err := s.db.NewInsert().Model(c).Exec(ctx); err != nil {
		return notWritten("storing a passkey challenge", err)
	}
	return nil
}

// takeChallenge deletes the challenge of handleHash and kind and returns
// it, in one statement, so that of two requests with the same handle, on
// any instances, one at most gets it: errNoChallenge for the other. Its
// expiry is the caller's to judge: an expired row is deleted all the same.
func (s *store) takeChallenge(ctx context.Context, handleHash, kind string) (model.PasskeyChallenge, error) {
	c := model.PasskeyChallenge{HandleHash: handleHash, Kind: kind}
	if err := s.check(); err != nil {
		return c, err
	}
	var username, userHash sql.NullString
	q := s.db.NewDelete().Model((*model.PasskeyChallenge)(nil)).
		Where("handle_hash = ?", handleHash).Where("kind = ?", kind).
		Returning("username, user_hash, data, expires_at")
	// Only a deletion known committed may be used (see scanWritten).
	err := scanWritten(ctx, s.db.DB, s.db.QueryGen(), q, &username, &userHash, &c.Data, &c.ExpiresAt)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return c, errNoChallenge
	case err != nil:
		return c, notWritten("taking a passkey challenge", err)
	}
	c.Username, c.UserHash = username.String, userHash.String
	return c, nil
}

// deleteExpiredChallenges deletes the challenges that ended before now.
func (s *store) deleteExpiredChallenges(ctx context.Context, now time.Time) (int64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	n, err := rowsAffected(s.db.NewDelete().Model((*model.PasskeyChallenge)(nil)).
		Where("expires_at <= ?", unixSeconds(now)).Exec(ctx))
	if err != nil {
		return 0, notWritten("deleting expired passkey challenges", err)
	}
	return n, nil
}

// passkeyRow is a passkey as a sign-in reads it, with its user's state.
type passkeyRow struct {
	model.Passkey
	// passwordHash is the user's hash now; userLock the user's
	// lockout_until, adminLock what Lock last wrote there, if it ever did.
	passwordHash        string
	userLock, adminLock sql.NullFloat64
}

// passkeyByID reads the passkey of credentialID with its user's hash and
// locks; sql.ErrNoRows when there is none (or its user is gone).
func (s *store) passkeyByID(ctx context.Context, credentialID string) (passkeyRow, error) {
	var row passkeyRow
	if err := s.check(); err != nil {
		return row, err
	}
	p := &row.Passkey
	var aaguid, transports, attestation, userHash sql.NullString
	err := s.db.QueryRowContext(ctx, `SELECT p.credential_id, p.username, p.name, p.user_handle, p.public_key, p.sign_count,
p.aaguid, p.transports, p.backup_eligible, p.backup_state, p.user_verified, p.attestation_type, p.user_hash,
u.password_hash, u.lockout_until, l.lockout_until
FROM passkeys AS p JOIN users AS u ON u.username = p.username
LEFT JOIN admin_locks AS l ON l.username = p.username
WHERE p.credential_id = ?`, credentialID).Scan(&p.CredentialID, &p.Username, &p.Name, &p.UserHandle, &p.PublicKey, &p.SignCount,
		&aaguid, &transports, &p.BackupEligible, &p.BackupState, &p.UserVerified, &attestation, &userHash,
		&row.passwordHash, &row.userLock, &row.adminLock)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("authn: reading a passkey: %w", err)
	}
	p.AAGUID, p.Transports, p.AttestationType, p.UserHash = aaguid.String, transports.String, attestation.String, userHash.String
	return row, err
}

// listPasskeys reads username's passkeys, the oldest first.
func (s *store) listPasskeys(ctx context.Context, username string) ([]model.Passkey, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	var keys []model.Passkey
	err := s.db.NewSelect().Model(&keys).Where("username = ?", username).
		OrderExpr("created_at ASC, name ASC").Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("authn: listing the passkeys of %s: %w", quoteName(username), err)
	}
	return keys, nil
}

// insertPasskey writes p, bound to its user's hash, provided the user
// still has the hash bound (the one the registration checked) and no
// passkey of p's name or credential ID exists. It reports whether it wrote
// the row; when not, the caller finds out why. On PostgreSQL, FOR KEY
// SHARE keeps a Delete from removing the user before the insert commits,
// as insertToken does.
func (s *store) insertPasskey(ctx context.Context, p *model.Passkey, bound string) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	lock := ""
	if s.postgres() {
		lock = " FOR KEY SHARE"
	}
	query := `INSERT INTO passkeys (credential_id, username, name, user_handle, public_key, sign_count, aaguid, transports,
backup_eligible, backup_state, user_verified, attestation_type, created_at, user_hash)
SELECT ?, username, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, password_hash FROM users WHERE username = ? AND password_hash = ?` + lock + `
ON CONFLICT DO NOTHING`
	n, err := rowsAffected(s.db.ExecContext(ctx, query, p.CredentialID, p.Name, p.UserHandle, p.PublicKey, p.SignCount,
		nullIfEmpty(p.AAGUID), nullIfEmpty(p.Transports), p.BackupEligible, p.BackupState, p.UserVerified,
		nullIfEmpty(p.AttestationType), p.CreatedAt, p.Username, bound))
	if err != nil {
		return false, notWritten("adding a passkey of "+quoteName(p.Username), err)
	}
	return n == 1, nil
}

// passkeyNameTaken reports whether username has a passkey called name
// other than the one of credentialID.
func (s *store) passkeyNameTaken(ctx context.Context, username, name, credentialID string) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	taken, err := s.db.NewSelect().Model((*model.Passkey)(nil)).Where("username = ?", username).
		Where("name = ?", name).Where("credential_id <> ?", credentialID).Exists(ctx)
	if err != nil {
		return false, fmt.Errorf("authn: reading the passkeys of %s: %w", quoteName(username), err)
	}
	return taken, nil
}

// passkeyExists reports whether a passkey of credentialID exists, whoever's.
func (s *store) passkeyExists(ctx context.Context, credentialID string) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	exists, err := s.db.NewSelect().Model((*model.Passkey)(nil)).Where("credential_id = ?", credentialID).Exists(ctx)
	if err != nil {
		return false, fmt.Errorf("authn: reading a passkey: %w", err)
	}
	return exists, nil
}

// passkeyUse is what a verified assertion writes back to its passkey.
type passkeyUse struct {
	credentialID             string
	oldCount, newCount       int64
	backupState, userVerfied bool
	now                      time.Time
}

// recordPasskeyUse writes a verified assertion's counter, flags and time,
// provided the passkey still has the counter it was verified against: of
// two sign-ins verified against the same counter, on any instances, one
// writes and the other is refused (false), as is a sign-in with a passkey
// deleted meanwhile.
func (s *store) recordPasskeyUse(ctx context.Context, u passkeyUse) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	n, err := rowsAffected(s.db.NewUpdate().Model((*model.Passkey)(nil)).
		Set("sign_count = ?", u.newCount).
		Set("backup_state = ?", u.backupState).
		Set("user_verified = ?", u.userVerfied).
		Set("last_used = ?", unixSeconds(u.now)).
		Where("credential_id = ?", u.credentialID).
		Where("sign_count = ?", u.oldCount).Exec(ctx))
	if err != nil {
		return false, notWritten("recording a passkey's use", err)
	}
	return n == 1, nil
}

// renamePasskey renames username's passkey of credentialID; ErrNotFound
// when the user has no such passkey.
func (s *store) renamePasskey(ctx context.Context, username, credentialID, name string) error {
	if err := s.check(); err != nil {
		return err
	}
	err := oneRow(s.db.NewUpdate().Model((*model.Passkey)(nil)).Set("name = ?", name).
		Where("username = ?", username).Where("credential_id = ?", credentialID).Exec(ctx))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return notWritten("renaming a passkey of "+quoteName(username), err)
	}
	return err
}

// deletePasskey deletes username's passkey of credentialID and reports
// whether there was one.
func (s *store) deletePasskey(ctx context.Context, username, credentialID string) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	err := oneRow(s.db.NewDelete().Model((*model.Passkey)(nil)).
		Where("username = ?", username).Where("credential_id = ?", credentialID).Exec(ctx))
	switch {
	case errors.Is(err, ErrNotFound):
		return false, nil
	case err != nil:
		return false, notWritten("deleting a passkey of "+quoteName(username), err)
	}
	return true, nil
}
