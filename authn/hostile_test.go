package authn

import (
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
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
		var in credentials
		if err := decodeMultipart(strings.NewReader(body), b, in.fields()); err == nil {
			t.Errorf("%s: %q accepted as %+v", name, disposition, in)
		}
	}
	// What browsers send still reads: a plain name, an unquoted one, other
	// fields with unusual but plain names.
	body := part(`form-data; name="username"`, "alice") + part(`form-data; name=password`, "pw") +
		part(`form-data; name="a*b"`, "x") + part(`form-data; name="x%22y"`, "y") + end
	var in credentials
	if err := decodeMultipart(strings.NewReader(body), b, in.fields()); err != nil || in.Username != "alice" || in.Password != "pw" {
		t.Errorf("plain names: %+v, %v", in, err)
	}
}

// FuzzClientPath: whatever request-URI or URL path a request has, the path
// a form posts to and RequireSession sends back to is a path on this site:
// it starts with one "/", has no backslash or control character that a
// browser would read as "/" or drop, and resolves to this host.
func FuzzClientPath(f *testing.F) {
	for _, s := range []string{"/login", "*", "evil.example:443", "http://evil.example//x", "//evil", "/\\evil", "/%2F%2Fevil", "/a?b", "/\t/evil", "%zz", ""} {
		f.Add(s, "/x")
	}
	f.Fuzz(func(t *testing.T, requestURI, path string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RequestURI = requestURI
		r.URL = &url.URL{Path: path}
		got, query := clientPath(r)
		if !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") ||
			strings.ContainsFunc(got, func(c rune) bool { return c < 0x21 || c == 0x7f || c == '\\' || c == '?' || c == '#' }) {
			t.Fatalf("clientPath(%q, %q) = %q", requestURI, path, got)
		}
		base, _ := url.Parse("https://app.example/a/b")
		u, err := base.Parse(got)
		if err != nil || u.Host != "app.example" || u.Scheme != "https" {
			t.Fatalf("clientPath(%q, %q) = %q resolves to %v (%v)", requestURI, path, got, u, err)
		}
		if next := got + "?" + query; query != "" && localRedirect(next, "") != "" && localRedirect(next, "") != next {
			t.Fatalf("next %q changed", next)
		}
	})
}

// TestThrottleLogFullScansOnce: once the bookkeeping is full of windows
// that have not ended, a refusal from yet another client (cross-origin
// refusals cost an attacker nothing, and an IPv6 /48 holds 65,536 /64
// clients) does not scan every window again: no window can end before the
// earliest one does. Scanning 10,000 windows under the lock for each such
// request would let anyone burn the server's CPU. When windows do end,
// they are swept and make room as before.
func TestThrottleLogFullScansOnce(t *testing.T) {
	t.Parallel()
	l := newThrottleLog()
	now := time.Unix(1e9, 0)
	key := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	}
	for i := range throttleLogClients {
		l.note(key(i), "", now.Add(time.Duration(i)*time.Millisecond))
	}
	for i := range 100 {
		if logIt, _, _ := l.note(key(throttleLogClients+i), "", now.Add(20*time.Second)); !logIt {
			t.Fatalf("client %d past the bound not logged", i)
		}
	}
	if l.scans > 1 {
		t.Fatalf("%d scans of the full bookkeeping for 100 new clients before any window ended, want at most 1", l.scans)
	}
	// The first window has ended: a new client sweeps it and is tracked.
	k := key(2 * throttleLogClients)
	l.note(k, "", now.Add(throttleLogWindow))
	if l.clients[k] == nil || l.clients[key(0)] != nil {
		t.Fatal("an ended window was not swept to make room")
	}
}
