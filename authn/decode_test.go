package authn

import (
	"strings"
	"testing"
)

// TestDecodeJSONLoneSurrogate: encoding/json turns a lone UTF-16 surrogate
// escape into U+FFFD without a word, so two readers of one body could
// disagree on the password; such a body is refused. Pairs and an escaped
// backslash before "u" are not surrogates.
func TestDecodeJSONLoneSurrogate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		password string // as written in the JSON body
		ok       bool
	}{
		{`a\ud800b`, false},
		{`a\uD800`, false},
		{`a\udc00b`, false},
		{`a\ud800\u0041`, false},
		{`a\ud800\ud800\udc00`, false},
		{`a\udbff`, false},
		{`\ud83d\ude00 smile`, true},
		{`a\\ud800`, true}, // a backslash, then "ud800"
		{`a\\\ud83d\ude00`, true},
		{`a\u00e9\n`, true},
	} {
		_, err := decodeJSON(strings.NewReader(`{"username":"a","password":"` + tc.password + `"}`))
		if (err == nil) != tc.ok {
			t.Errorf("password %s: error %v, want ok = %v", tc.password, err, tc.ok)
		}
	}
}
