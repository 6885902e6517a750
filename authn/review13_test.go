package authn

import (
	"strings"
	"testing"
)

// TestMultipartNameReadOneWay: a part's field name is refused when readers
// of the body could disagree on it. mime.ParseMediaType applies RFC 2231
// (name*=, name*0=…) and keeps a backslash before an ordinary character,
// where most multipart readers (and RFC 7578, which has no extended
// parameters for form-data) read name="password"; name*=utf-8'en'username
// as the password field and name="pass\word" as "password". No browser
// sends either: it percent-encodes a quote and sends no extended parameter.
func TestMultipartNameReadOneWay(t *testing.T) {
	t.Parallel()
	const b = "XyZ"
	part := func(disposition, value string) string {
		return "--" + b + "\r\nContent-Disposition: " + disposition + "\r\n\r\n" + value + "\r\n"
	}
	end := "--" + b + "--"
	for name, disposition := range map[string]string{
		"extended name":                 `form-data; name="password"; name*=UTF-8''username`,
		"extended name alone":           `form-data; name*=UTF-8''username`,
		"continued name":                `form-data; name*0="user"; name*1="name"`,
		"extended name with a language": `form-data; name="password"; name*=utf-8'en'username`,
		"backslash in a name":           `form-data; name="user\name"`,
		"escaped quote in a name":       `form-data; name="user\"name"`,
		"extended file name":            `form-data; name="username"; filename*=UTF-8''x`,
	} {
		body := part(disposition, "alice") + part(`form-data; name="password"`, "alice's long passphrase") + end
		if in, err := decodeMultipart(strings.NewReader(body), b); err == nil {
			t.Errorf("%s: %q accepted as %+v", name, disposition, in)
		}
	}
	// What browsers send still reads: a plain name, an unquoted one, other
	// fields with unusual but plain names.
	body := part(`form-data; name="username"`, "alice") + part(`form-data; name=password`, "pw") +
		part(`form-data; name="a*b"`, "x") + part(`form-data; name="x%22y"`, "y") + end
	if in, err := decodeMultipart(strings.NewReader(body), b); err != nil || in.Username != "alice" || in.Password != "pw" {
		t.Errorf("plain names: %+v, %v", in, err)
	}
}
