package authn

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/minimost/minimost/authn/internal/seal"
)

// keyFile returns the key that seals TOTP secrets for Open, kept in the
// file path (the database's path with ".key" added) as 64 hex digits: read
// when it exists, made when it does not. A new file is written whole under
// another name and linked into place, so that processes opening the same
// new database at once all end with the one key that won. It must be a
// regular file, not a symbolic link, readable by its owner only.
func keyFile(path string, logger *slog.Logger) ([]byte, error) {
	if logger == nil {
		logger = slog.Default()
	}
	key, err := readKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := writeKeyFile(path); err != nil {
			return nil, err
		}
		key, err = readKeyFile(path)
		if err == nil {
			logger.Info("authn: made a key to seal TOTP secrets with, beside the database; keep it with the database's backups but apart from them: without it every TOTP second factor must be reset (authctl 2fa reset)", "file", path)
		}
	}
	if err != nil {
		return nil, err
	}
	return key, nil
}

// readKeyFile reads a key file: fs.ErrNotExist when there is none.
func readKeyFile(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("the TOTP key file %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("the TOTP key file %s may be read by others (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != seal.KeySize {
		return nil, fmt.Errorf("the TOTP key file %s does not hold a key of %d bytes in hex", path, seal.KeySize)
	}
	return key, nil
}

// writeKeyFile makes a new key file at path, unless one appeared meanwhile.
func writeKeyFile(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".new*")
	if err != nil {
		return fmt.Errorf("making the TOTP key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	_, err = tmp.WriteString(hex.EncodeToString(seal.NewKey()) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if err2 := tmp.Close(); err == nil {
		err = err2
	}
	if err != nil {
		return fmt.Errorf("writing the TOTP key file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("placing the TOTP key file: %w", err)
	}
	return nil
}
