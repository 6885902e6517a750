// Package seal seals small secrets (TOTP secrets) for storage in a
// database: AES-256-GCM under a key kept outside it, with a random nonce,
// bound to a context (the username) given as additional data, so that a
// sealed value copied to another row does not open there.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
)

// KeySize is the size of a key: 32 bytes, AES-256.
const KeySize = 32

// ErrOpen is the error of a sealed value that does not open under the key
// and context given: another key, another context, or altered data.
var ErrOpen = errors.New("seal: the sealed value does not open with this key")

// NewKey returns a random key.
func NewKey() []byte {
	k := make([]byte, KeySize)
	rand.Read(k)
	return k
}

func aead(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("seal: the key has %d bytes, not %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal returns plaintext sealed under key and bound to context, as
// base64url text: the nonce, then the ciphertext and its tag.
func Seal(key, plaintext []byte, context string) (string, error) {
	g, err := aead(key)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, g.NonceSize(), g.NonceSize()+len(plaintext)+g.Overhead())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(g.Seal(nonce, nonce, plaintext, []byte(context))), nil
}

// Open returns the plaintext of sealed, made by Seal with key and context;
// ErrOpen when it does not open with them.
func Open(key []byte, sealed, context string) ([]byte, error) {
	g, err := aead(key)
	if err != nil {
		return nil, err
	}
	b, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil || len(b) < g.NonceSize()+g.Overhead() {
		return nil, ErrOpen
	}
	plain, err := g.Open(nil, b[:g.NonceSize()], b[g.NonceSize():], []byte(context))
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}
