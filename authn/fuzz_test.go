package authn

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseBasicAuth: no header value panics the parser, and whatever it
// accepts is what RFC 7617 allows: valid UTF-8 without control characters
// that encodes back to the token it came from.
func FuzzParseBasicAuth(f *testing.F) {
	for _, s := range []string{
		"Basic " + base64.StdEncoding.EncodeToString([]byte("alice:secret")),
		"basic YWxpY2U6", "Basic", "Basic ", "Basic ====", "Bearer x", "Basic YTpi\x00", "Basic  YTpi  ",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		h := http.Header{"Authorization": {value}}
		user, pw, ok := parseBasicAuth(h)
		if !ok {
			if user != "" || pw != "" {
				t.Fatalf("refused %q but returned %q, %q", value, user, pw)
			}
			return
		}
		for _, s := range []string{user, pw} {
			if !utf8.ValidString(s) || hasControl(s) {
				t.Fatalf("accepted %q with user %q, password %q", value, user, pw)
			}
		}
		_, token, _ := strings.Cut(value, " ")
		if base64.StdEncoding.EncodeToString([]byte(user+":"+pw)) != strings.Trim(token, " ") {
			t.Fatalf("%q decoded to %q:%q, which does not encode back", value, user, pw)
		}
	})
}

// FuzzLocalRedirect: the redirect check returns the default or a path on
// this site, never anything a browser would take to another host.
func FuzzLocalRedirect(f *testing.F) {
	for _, s := range []string{"/", "/a?b#c", "//evil", "/\\evil", "https://evil", "/\t/evil", "/%2F%2Fevil", "javascript:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, next string) {
		got := localRedirect(next, "/")
		if got == "/" {
			return
		}
		if got != next {
			t.Fatalf("localRedirect(%q) = %q, neither the input nor the default", next, got)
		}
		if !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || strings.ContainsAny(got, "\\\t\r\n\x00") {
			t.Fatalf("localRedirect(%q) = %q, not a local path", next, got)
		}
		// What a browser resolves it to stays on the site.
		base, _ := url.Parse("https://site.example/login")
		u, err := base.Parse(got)
		if err != nil || u.Host != "site.example" || u.Scheme != "https" {
			t.Fatalf("localRedirect(%q) = %q resolves to %v (%v)", next, got, u, err)
		}
	})
}

// FuzzDecodeCredentials: form, multipart and JSON bodies never panic the
// decoder, a body it accepts has a username and a password, and a refusal
// has a code.
func FuzzDecodeCredentials(f *testing.F) {
	f.Add("application/x-www-form-urlencoded", "username=a&password=b&next=/x")
	f.Add("application/json", `{"username":"a","password":"b"}`)
	f.Add("application/json", `{"username":"a","username":"b","password":"c"}`)
	f.Add("application/json; charset=utf-8", `[[[[[[[[[[`)
	f.Add("application/x-www-form-urlencoded", "username=%zz")
	const mp = "multipart/form-data; boundary=XyZ"
	part := func(headers, value string) string {
		return "--XyZ\r\n" + headers + "\r\n\r\n" + value + "\r\n"
	}
	field := func(name, value string) string {
		return part(`Content-Disposition: form-data; name="`+name+`"`, value)
	}
	f.Add(mp, field("username", "a")+field("password", "b")+field("next", "/x")+"--XyZ--\r\n")
	f.Add(mp, field("username", "a")+field("username", "b")+field("password", "c")+"--XyZ--\r\n")
	f.Add(mp, field("username", "a")+part(`Content-Disposition: form-data; name="password"; filename="p.txt"`+"\r\nContent-Type: text/plain", "b")+"--XyZ--\r\n")
	f.Add(mp, field("username", "a")+part("Content-Disposition: form-data; name=password\r\nContent-Transfer-Encoding: base64", "Yg==")+"--XyZ--\r\n")
	f.Add(mp, field("username", "a")+field("password", "b")) // no closing boundary
	f.Add("multipart/form-data", field("username", "a")+field("password", "b")+"--XyZ--\r\n")
	f.Add(mp, "preamble\r\n"+part("Content-Disposition: form-data; name*=UTF-8''username", "a")+field("password", "b\r\nc")+"--XyZ--")
	f.Fuzz(func(t *testing.T, contentType, body string) {
		r := httptest.NewRequest("POST", "/login", bytes.NewReader([]byte(body)))
		r.Header.Set("Content-Type", contentType)
		r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 8<<10)
		in, status, code := decodeCredentials(r)
		if status == 0 && (in.Username == "" || in.Password == "") {
			t.Fatalf("accepted %q without a username or password: %+v", body, in)
		}
		if status != 0 && status != 400 && status != 413 && status != 415 {
			t.Fatalf("status %d", status)
		}
		if (status == 0) != (code == "") {
			t.Fatalf("status %d with code %q", status, code)
		}
	})
}

// FuzzCheckUsername: a name passes exactly when it matches
// [A-Za-z0-9_-]{1,32}.
func FuzzCheckUsername(f *testing.F) {
	for _, s := range []string{"alice", "", "a b", strings.Repeat("a", 33), "ü", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		want := len(name) >= 1 && len(name) <= 32 && strings.Trim(name,
			"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == ""
		if got := CheckUsername(name) == nil; got != want {
			t.Fatalf("CheckUsername(%q) accepts = %v, want %v", name, got, want)
		}
	})
}
