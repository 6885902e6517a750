package authn

import (
	"net/http"
	"net/http/httptest"
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
		var in credentials
		err := decodeJSON(strings.NewReader(`{"username":"a","password":"`+tc.password+`"}`), in.fields())
		if (err == nil) != tc.ok {
			t.Errorf("password %s: error %v, want ok = %v", tc.password, err, tc.ok)
		}
	}
}

// TestDecodeMultipart: the values of a multipart body are read as sent
// (line breaks, non-ASCII), fields other than the three are ignored, and a
// body over the limit is 413 wherever the limit falls: in a part's header,
// in its content, or in a field that is ignored.
func TestDecodeMultipart(t *testing.T) {
	t.Parallel()
	const b = "XyZ"
	part := func(name, value string) string {
		return "--" + b + "\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\n" + value + "\r\n"
	}
	decode := func(body string) (credentials, int, string) {
		r := httptest.NewRequest("POST", "/login", strings.NewReader(body))
		r.Header.Set("Content-Type", "multipart/form-data; boundary="+b)
		r.ContentLength = -1 // as a chunked body: only reading finds the limit
		r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 1024)
		return decodeCredentials(r)
	}
	in, status, _ := decode(part("_charset_", "UTF-8") + part("username", "alice") + part("password", "pass\r\nwörd --XyZ") + part("next", "/app/") + "--" + b + "--")
	if status != 0 || in != (credentials{Username: "alice", Password: "pass\r\nwörd --XyZ", Next: "/app/"}) {
		t.Fatalf("decoded %+v, status %d", in, status)
	}
	for name, body := range map[string]string{
		"content":       part("username", "alice") + part("password", strings.Repeat("p", 2000)) + "--" + b + "--",
		"ignored field": part("comment", strings.Repeat("c", 2000)) + part("username", "alice") + part("password", "p") + "--" + b + "--",
		"header":        "--" + b + "\r\nContent-Disposition: form-data; name=\"" + strings.Repeat("n", 2000) + "\"\r\n\r\nx\r\n--" + b + "--",
		"preamble":      strings.Repeat("preamble line\r\n", 100) + part("username", "alice") + "--" + b + "--",
	} {
		if _, status, code := decode(body); status != http.StatusRequestEntityTooLarge || code != CodeBodyTooLarge {
			t.Errorf("over the limit in the %s: %d %q, want 413", name, status, code)
		}
	}
}
