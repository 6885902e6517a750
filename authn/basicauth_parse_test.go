package authn

import (
	"net/http"
	"testing"
)

// TestParseBasicAuthToken68: the credentials are one token68 of standard
// base64 after the scheme and one or more spaces (RFC 7235, RFC 7617).
// encoding/base64 skips CR and LF inside its input, so they, and every other
// byte outside the alphabet, are refused before decoding.
func TestParseBasicAuthToken68(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		value string
		ok    bool
	}{
		{"Basic YTpi", true},
		{"basic YTpi", true},
		{"Basic   YTpi", true},   // 1*SP
		{"Basic YTpi  ", true},   // trailing spaces: net/http strips them anyway
		{"Basic YWI6Yw==", true}, // padding
		{"BAsiC Xzp0\r", false},  // found by FuzzParseBasicAuth: decoded as _:t
		{"Basic Xzp0\n", false},
		{"Basic Xz\r\np0", false},
		{"Basic Xz p0", false},
		{"Basic\tYTpi", false},
		{"Basic YTpi\t", false},
		{"Basic YT=pi", false},
		{"Basic YWI6Yw=", false},
		{"Basic YWI6Yw-_", false}, // base64url is token68, but not Basic's base64
		{"Basic YTpi.", false},
		{"Basic ", false},
	} {
		_, _, ok := parseBasicAuth(http.Header{"Authorization": {tc.value}})
		if ok != tc.ok {
			t.Errorf("parseBasicAuth(%q) ok = %v, want %v", tc.value, ok, tc.ok)
		}
	}
}
