package seal

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealOpen(t *testing.T) {
	key := NewKey()
	s, err := Seal(key, []byte("secret"), "alice")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Open(key, s, "alice")
	if err != nil || !bytes.Equal(got, []byte("secret")) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	s2, _ := Seal(key, []byte("secret"), "alice")
	if s2 == s {
		t.Error("two seals of the same secret are equal: the nonce is not random")
	}
	for name, try := range map[string]func() ([]byte, error){
		"other context": func() ([]byte, error) { return Open(key, s, "bob") },
		"other key":     func() ([]byte, error) { return Open(NewKey(), s, "alice") },
		"altered":       func() ([]byte, error) { return Open(key, s[:len(s)-2]+"AA", "alice") },
		"short":         func() ([]byte, error) { return Open(key, "AAAA", "alice") },
		"not base64":    func() ([]byte, error) { return Open(key, "!!", "alice") },
	} {
		if _, err := try(); !errors.Is(err, ErrOpen) {
			t.Errorf("%s: err = %v, want ErrOpen", name, err)
		}
	}
	if _, err := Seal([]byte("short"), []byte("x"), ""); err == nil {
		t.Error("a 5-byte key was accepted")
	}
}
