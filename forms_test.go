package minimost_test

import (
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"mime/multipart"
	"strings"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
	"github.com/minimost/minimost/authn/password"
	"github.com/minimost/minimost/internal/testdb"
	"github.com/minimost/minimost/middleware"
)

// testBoundary is the boundary of the tests' multipart bodies, one a
// browser could choose.
const testBoundary = "----minimostFormBoundary7MA4YWxkTrZu0gW"

const multipartType = "multipart/form-data; boundary=" + testBoundary

// multipartBody encodes kv (name, value, ...) as the text fields of a
// multipart/form-data body, as fetch sends new FormData(form).
func multipartBody(t testing.TB, kv ...string) string {
	t.Helper()
	var b strings.Builder
	w := multipart.NewWriter(&b)
	if err := w.SetBoundary(testBoundary); err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if err := w.WriteField(kv[i], kv[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// rawPart is one part of a hand-made multipart body: its header lines and
// its content.
func rawPart(header, content string) string {
	return "--" + testBoundary + "\r\n" + header + "\r\n\r\n" + content + "\r\n"
}

func textPart(name, value string) string {
	return rawPart(`Content-Disposition: form-data; name="`+name+`"`, value)
}

const closing = "--" + testBoundary + "--\r\n"

// TestMultipartForms: login and registration take multipart/form-data, as
// fetch sends new FormData(form), with the rules of a urlencoded form.
func TestMultipartForms(t *testing.T) {
	t.Parallel()
	s := newSite(t, testdb.SQLite(t), authn.Config{})
	c := s.client()
	r := s.do(c, "POST", "/login", multipartType, multipartBody(t, "username", "alice", "password", alicePassword, "next", "/app/page"))
	if r.status != 303 || r.header.Get("Location") != "/app/page" {
		t.Fatalf("multipart login: %d Location=%q\n%s", r.status, r.header.Get("Location"), r.body)
	}
	if r := s.do(c, "GET", "/app/page", "", ""); r.status != 200 || r.body != "hello alice" {
		t.Fatalf("page after a multipart login: %d %q", r.status, r.body)
	}
	r = s.do(nil, "POST", "/login", multipartType, multipartBody(t, "username", "alice", "password", alicePassword), "Accept", "application/json")
	if r.status != 200 || strings.TrimSpace(r.body) != `{"username":"alice"}` {
		t.Fatalf("multipart login, JSON answer: %d %s", r.status, r.body)
	}
	r = s.do(nil, "POST", "/login", multipartType, multipartBody(t, "username", "alice", "password", "not her password"))
	if r.status != 401 || !strings.Contains(r.body, `value="alice"`) {
		t.Fatalf("failed multipart login: %d\n%s", r.status, r.body)
	}
	// Fields other than the three are ignored, as in a urlencoded form.
	r = s.do(nil, "POST", "/register", multipartType, "a preamble\r\n"+
		textPart("remember", "on")+rawPart("Content-Disposition: form-data; name=username", "carol")+
		rawPart(`Content-Disposition: form-data; name="password"`+"\r\nContent-Type: text/plain; charset=utf-8", "carol's long passphrase")+closing)
	if r.status != 201 || !strings.Contains(r.body, "carol") {
		t.Fatalf("multipart registration: %d\n%s", r.status, r.body)
	}
	r = s.do(nil, "POST", "/register", multipartType, multipartBody(t, "username", "dave", "password", "dave's long passphrase"), "Accept", "application/json")
	if r.status != 201 || strings.TrimSpace(r.body) != `{"username":"dave"}` {
		t.Fatalf("multipart registration, JSON answer: %d %s", r.status, r.body)
	}
	if r := s.loginJSON(nil, "carol", "carol's long passphrase"); r.status != 200 {
		t.Fatalf("login of the account registered by multipart: %d", r.status)
	}
}

// TestMultipartRefused: a multipart body a browser would not send for a
// text form is refused, before any password is checked or account made.
func TestMultipartRefused(t *testing.T) {
	t.Parallel()
	s := newSite(t, testdb.SQLite(t), authn.Config{})
	fields := textPart("username", "erin") + textPart("password", "erin's long passphrase")
	for name, tc := range map[string]struct {
		contentType, body string
		status            int
		code              string
	}{
		"a file part": {multipartType, fields + rawPart(`Content-Disposition: form-data; name="avatar"; filename="a.png"`+"\r\nContent-Type: image/png", "\x89PNG") + closing, 400, authn.CodeMalformedBody},
		"the password as a file": {multipartType, textPart("username", "erin") +
			rawPart(`Content-Disposition: form-data; name="password"; filename="pw.txt"`+"\r\nContent-Type: text/plain", "erin's long passphrase") + closing, 400, authn.CodeMalformedBody},
		"an empty file input": {multipartType, fields + rawPart(`Content-Disposition: form-data; name="f"; filename=""`+"\r\nContent-Type: application/octet-stream", "") + closing, 400, authn.CodeMalformedBody},
		"a repeated field":    {multipartType, fields + textPart("username", "frank") + closing, 400, authn.CodeMalformedBody},
		"a repeated password": {multipartType, fields + textPart("password", "another long passphrase") + closing, 400, authn.CodeMalformedBody},
		"over the limit":      {multipartType, fields + textPart("comment", strings.Repeat("x", 10<<10)) + closing, 413, authn.CodeBodyTooLarge},
		"a password over it":  {multipartType, multipartBody(t, "username", "erin", "password", strings.Repeat("p", 10<<10)), 413, authn.CodeBodyTooLarge},
		"no boundary":         {"multipart/form-data", fields + closing, 400, authn.CodeMalformedBody},
		"an empty boundary":   {`multipart/form-data; boundary=""`, fields + closing, 400, authn.CodeMalformedBody},
		"a boundary too long": {"multipart/form-data; boundary=" + strings.Repeat("b", 71), strings.ReplaceAll(fields+closing, testBoundary, strings.Repeat("b", 71)), 400, authn.CodeMalformedBody},
		"another boundary":    {"multipart/form-data; boundary=other", fields + closing, 400, authn.CodeMalformedBody},
		"no closing boundary": {multipartType, fields, 400, authn.CodeMalformedBody},
		"a truncated part":    {multipartType, fields[:len(fields)-10], 400, authn.CodeMalformedBody},
		"a transfer encoding": {multipartType, textPart("username", "erin") + rawPart(`Content-Disposition: form-data; name="password"`+"\r\nContent-Transfer-Encoding: base64", "ZXJpbidzIGxvbmcgcGFzc3BocmFzZQ==") + closing, 400, authn.CodeMalformedBody},
		"a binary part":       {multipartType, textPart("username", "erin") + rawPart(`Content-Disposition: form-data; name="password"`+"\r\nContent-Type: application/octet-stream", "erin's long passphrase") + closing, 400, authn.CodeMalformedBody},
		// Read as UTF-8 bytes: a declared charset other readers would
		// honour (and any other parameter) is refused.
		"a Latin-1 part":         {multipartType, textPart("username", "erin") + rawPart(`Content-Disposition: form-data; name="password"`+"\r\nContent-Type: text/plain; charset=iso-8859-1", "erin's long passphrase") + closing, 400, authn.CodeMalformedBody},
		"a UTF-16 part":          {multipartType, textPart("username", "erin") + rawPart(`Content-Disposition: form-data; name="password"`+"\r\nContent-Type: text/plain; charset=utf-16", "erin's long passphrase") + closing, 400, authn.CodeMalformedBody},
		"an RFC 2231 charset":    {multipartType, textPart("username", "erin") + rawPart(`Content-Disposition: form-data; name="password"`+"\r\nContent-Type: text/plain; charset=iso-8859-1; charset*=utf-8''utf-8", "erin's long passphrase") + closing, 400, authn.CodeMalformedBody},
		"another parameter":      {multipartType, textPart("username", "erin") + rawPart(`Content-Disposition: form-data; name="password"`+"\r\nContent-Type: text/plain; charset=utf-8; format=flowed", "erin's long passphrase") + closing, 400, authn.CodeMalformedBody},
		"another header":         {multipartType, textPart("username", "erin") + rawPart(`Content-Disposition: form-data; name="password"`+"\r\nX-Extra: 1", "erin's long passphrase") + closing, 400, authn.CodeMalformedBody},
		"no name":                {multipartType, fields + rawPart(`Content-Disposition: form-data`, "x") + closing, 400, authn.CodeMalformedBody},
		"an attachment":          {multipartType, fields + rawPart(`Content-Disposition: attachment; name="x"`, "x") + closing, 400, authn.CodeMalformedBody},
		"no disposition":         {multipartType, fields + rawPart(`Content-Type: text/plain`, "x") + closing, 400, authn.CodeMalformedBody},
		"a duplicate name param": {multipartType, rawPart(`Content-Disposition: form-data; name="username"; name="password"`, "erin") + textPart("password", "erin's long passphrase") + closing, 400, authn.CodeMalformedBody},
		// Go reads RFC 2231 names and keeps a backslash before a letter;
		// readers that do not, or that unescape it, read another field.
		"an RFC 2231 name":            {multipartType, rawPart(`Content-Disposition: form-data; name*=UTF-8''username`, "erin") + textPart("password", "erin's long passphrase") + closing, 400, authn.CodeMalformedBody},
		"a name and an RFC 2231 name": {multipartType, textPart("username", "erin") + rawPart(`Content-Disposition: form-data; name="comment"; name*=utf-8'en'password`, "erin's long passphrase") + closing, 400, authn.CodeMalformedBody},
		"a backslash in a name":       {multipartType, textPart("username", "erin") + rawPart(`Content-Disposition: form-data; name="pass\word"`, "x") + textPart("password", "erin's long passphrase") + closing, 400, authn.CodeMalformedBody},
		"no parts":                    {multipartType, closing, 400, authn.CodeUsernameRequired},
		"no password":                 {multipartType, textPart("username", "erin") + closing, 400, authn.CodePasswordRequired},
		"a mixed body":                {"multipart/mixed; boundary=" + testBoundary, fields + closing, 415, authn.CodeUnsupportedMediaType},
		"two boundary parameters":     {multipartType + "; boundary=other", fields + closing, 415, authn.CodeUnsupportedMediaType},
	} {
		for _, path := range []string{"/login", "/register"} {
			r := s.do(nil, "POST", path, tc.contentType, tc.body, "Accept", "application/json")
			if r.status != tc.status {
				t.Errorf("%s to %s: %d %s, want %d", name, path, r.status, r.body, tc.status)
			}
			if path == "/register" {
				var got struct{ Code string }
				if err := json.Unmarshal([]byte(r.body), &got); err != nil || got.Code != tc.code {
					t.Errorf("%s to %s: %s, want code %q", name, path, r.body, tc.code)
				}
			}
		}
	}
	for _, name := range []string{"erin", "frank"} {
		if r := s.loginJSON(nil, name, "erin's long passphrase"); r.status != 401 {
			t.Errorf("a refused body registered %s: login %d", name, r.status)
		}
	}
}

// failingHasher fails to hash one password, as a broken Hasher would.
type failingHasher struct {
	password.Hasher
	fails string
}

func (h failingHasher) Hash(pw string) (string, error) {
	if pw == h.fails {
		return "", errors.New("hasher broken")
	}
	return h.Hasher.Hash(pw)
}

// TestRegisterCodes: every refusal of a registration has its code, in JSON
// and in FormData.ErrorCode, with words that say what to do; a success
// stays {"username"}.
func TestRegisterCodes(t *testing.T) {
	t.Parallel()
	const broken = "the passphrase that breaks the hasher"
	tmpl := template.Must(template.New("register").Parse(`{{.ErrorCode}}|{{.Error}}|{{.Username}}`))
	s := newSite(t, testdb.SQLite(t), authn.Config{
		Hasher:         failingHasher{testdb.FastHasher, broken},
		PasswordPolicy: authn.PasswordPolicy{MaxBytes: 40},
		Logger:         slog.New(slog.DiscardHandler),
		HTTP:           authn.HTTPConfig{RegisterTemplate: tmpl, RegisterThrottle: generous()},
	})
	const pw = "erin's long passphrase"
	for name, tc := range map[string]struct {
		contentType, body string
		status            int
		code, words       string
	}{
		"no username":        {formType, form("password", pw), 400, authn.CodeUsernameRequired, "Enter a username."},
		"long username":      {formType, form("username", strings.Repeat("e", 33), "password", pw), 400, authn.CodeUsernameTooLong, "Choose a username of at most 32 characters."},
		"bad username":       {formType, form("username", "erin smith", "password", pw), 400, authn.CodeUsernameInvalidCharacters, "may contain only the letters A to Z"},
		"no password":        {formType, form("username", "erin"), 400, authn.CodePasswordRequired, "Enter a password."},
		"short":              {formType, form("username", "erin", "password", "short one"), 400, authn.CodePasswordTooShort, "at least 15 characters"},
		"long":               {formType, form("username", "erin", "password", strings.Repeat("Lq9 ", 33)), 400, authn.CodePasswordTooLong, "at most 128 characters"},
		"too many bytes":     {formType, form("username", "erin", "password", strings.Repeat("é", 21)), 400, authn.CodePasswordTooManyBytes, "at most 40 bytes"},
		"control character":  {formType, form("username", "erin", "password", "erin's long\tpassphrase"), 400, authn.CodePasswordControlCharacter, "Remove the tabs"},
		"invalid UTF-8":      {formType, "username=erin&password=erin%27s+long+%FF%FE+passphrase", 400, authn.CodePasswordInvalidUTF8, "not valid text"},
		"same as username":   {formType, form("username", "erin_the_registrar", "password", "ERIN_the_registrar"), 400, authn.CodePasswordSameAsUsername, "not your username"},
		"common":             {formType, form("username", "erin", "password", "password123456789"), 400, authn.CodePasswordCommon, "too easy to guess"},
		"repeated":           {formType, form("username", "erin", "password", "abcdefabcdefabcdef"), 400, authn.CodePasswordRepeated, "not a short pattern repeated"},
		"taken":              {formType, form("username", "alice", "password", pw), 409, authn.CodeUsernameTaken, "taken. Choose another"},
		"malformed form":     {formType, "username=erin&password=%zz", 400, authn.CodeMalformedBody, "could not be read"},
		"malformed JSON":     {"application/json", `{"username":"erin",`, 400, authn.CodeMalformedBody, "could not be read"},
		"too large":          {formType, form("username", "erin", "password", strings.Repeat("p", 10<<10)), 413, authn.CodeBodyTooLarge, "too large"},
		"another media type": {"text/plain", "username=erin", 415, authn.CodeUnsupportedMediaType, "multipart/form-data"},
		"hasher broken":      {formType, form("username", "erin", "password", broken), 503, authn.CodeUnavailable, "Try again shortly."},
	} {
		r := s.do(nil, "POST", "/register", tc.contentType, tc.body, "Accept", "application/json")
		var got struct{ Error, Code string }
		if err := json.Unmarshal([]byte(r.body), &got); err != nil || r.status != tc.status || got.Code != tc.code || !strings.Contains(got.Error, tc.words) {
			t.Errorf("%s, JSON: %d %s; want %d, code %q, saying %q", name, r.status, r.body, tc.status, tc.code, tc.words)
		}
		if tc.contentType == "application/json" {
			continue
		}
		r = s.do(nil, "POST", "/register", tc.contentType, tc.body)
		code, words, _ := strings.Cut(r.body, "|")
		if r.status != tc.status || code != tc.code || !strings.Contains(words, template.HTMLEscapeString(tc.words)) {
			t.Errorf("%s, form: %d %q; want %d, code %q, saying %q", name, r.status, r.body, tc.status, tc.code, tc.words)
		}
	}
	r := s.do(nil, "POST", "/register", formType, form("username", "erin", "password", pw), "Accept", "application/json")
	if r.status != 201 || strings.TrimSpace(r.body) != `{"username":"erin"}` {
		t.Fatalf("registration: %d %s", r.status, r.body)
	}
}

// TestRegisterThrottleCodes: the two 429s of registration have their own
// codes: the failure budget, and the registration budget.
func TestRegisterThrottleCodes(t *testing.T) {
	t.Parallel()
	clk := testdb.NewClock()
	s := newSite(t, testdb.SQLite(t), authn.Config{Now: clk.Now, HTTP: authn.HTTPConfig{
		Throttle:         middleware.NewThrottle(middleware.ThrottleConfig{Burst: 2, Interval: time.Hour, Now: clk.Now}),
		RegisterThrottle: middleware.NewThrottle(middleware.ThrottleConfig{Burst: 1, Interval: time.Hour, Now: clk.Now}),
	}})
	register := func(name, pw string) (int, string) {
		r := s.do(nil, "POST", "/register", "application/json", `{"username":"`+name+`","password":"`+pw+`"}`)
		var got struct{ Code string }
		json.Unmarshal([]byte(r.body), &got)
		return r.status, got.Code
	}
	if st, _ := register("erin", "erin's long passphrase"); st != 201 {
		t.Fatalf("first registration: %d", st)
	}
	if st, code := register("frank", "frank's long passphrase"); st != 429 || code != authn.CodeTooManyRegistrations {
		t.Errorf("second registration: %d %q, want 429 %q", st, code, authn.CodeTooManyRegistrations)
	}
	// Malformed bodies fail before the registration budget is looked at,
	// and spend the failure budget.
	for range 2 {
		if st, code := register("gina", `x"`); st != 400 || code != authn.CodeMalformedBody {
			t.Fatalf("malformed body: %d %q", st, code)
		}
	}
	if st, code := register("gina", "gina's long passphrase"); st != 429 || code != authn.CodeThrottled {
		t.Errorf("over the failure budget: %d %q, want 429 %q", st, code, authn.CodeThrottled)
	}
}

// TestLoginCodes: FormData.ErrorCode on the login form is one code for
// every failed login, whatever the account's state, and the JSON answer
// keeps its documented body.
func TestLoginCodes(t *testing.T) {
	t.Parallel()
	tmpl := template.Must(template.New("login").Parse(`{{.ErrorCode}}|{{.Username}}`))
	s := newSite(t, testdb.SQLite(t), authn.Config{HTTP: authn.HTTPConfig{LoginTemplate: tmpl}})
	const pw = "carol's long passphrase"
	answers := s.acrossAccountStates("carol", pw, func() response { return s.loginForm(nil, "carol", pw, "") })
	sameAnswer(t, "login failures", answers)
	if r := answers["unknown user"]; r.status != 401 || r.body != authn.CodeInvalidCredentials+"|carol" {
		t.Errorf("failed login: %d %q", r.status, r.body)
	}
	if r := s.do(nil, "POST", "/login", formType, form("username", "carol")); r.status != 400 || r.body != authn.CodePasswordRequired+"|carol" {
		t.Errorf("no password: %d %q", r.status, r.body)
	}
	if r := s.do(nil, "POST", "/login", multipartType, multipartBody(t, "username", "bad name", "password", pw)); r.status != 401 || r.body != authn.CodeInvalidCredentials+"|" {
		t.Errorf("malformed name: %d %q", r.status, r.body)
	}
	if r := s.loginJSON(nil, "carol", pw); r.status != 401 || strings.TrimSpace(r.body) != `{"error":"invalid username or password"}` {
		t.Errorf("JSON: %d %s", r.status, r.body)
	}
}

// TestCrossOriginLogged: a refused cross-origin POST is answered 403 (JSON
// for an API client) and logged as one WARN line with the client's address,
// method and path; a flood from one client is one line a window, the next
// saying how many were not logged.
func TestCrossOriginLogged(t *testing.T) {
	t.Parallel()
	clk := testdb.NewClock()
	logs := &syncBuffer{}
	s := newSite(t, testdb.SQLite(t), authn.Config{Now: clk.Now, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	logs.take()
	crossSite := []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}
	r := s.do(nil, "POST", "/login", formType, form("username", "alice", "password", alicePassword), crossSite...)
	if r.status != 403 || strings.Contains(r.body, "{") {
		t.Fatalf("cross-origin form POST: %d %q", r.status, r.body)
	}
	log := logs.take()
	if strings.Count(log, "\n") != 1 || !strings.Contains(log, "level=WARN") || !strings.Contains(log, `msg="authn: cross-origin request refused"`) ||
		!strings.Contains(log, "client=127.0.0.1") || !strings.Contains(log, "method=POST") || !strings.Contains(log, "path=/login") ||
		!strings.Contains(log, "origin=https://evil.example") || strings.Contains(log, alicePassword) {
		t.Fatalf("log of a refused cross-origin request:\n%s", log)
	}
	for range 20 {
		r := s.do(nil, "POST", "/register", "application/json", `{"username":"eve","password":"eve's long passphrase"}`, crossSite...)
		var got struct{ Error, Code string }
		if err := json.Unmarshal([]byte(r.body), &got); err != nil || r.status != 403 || got.Code != authn.CodeCrossOrigin {
			t.Fatalf("cross-origin JSON POST: %d %s", r.status, r.body)
		}
	}
	if log := logs.take(); log != "" {
		t.Fatalf("20 more refusals in the window were logged:\n%s", log)
	}
	clk.Advance(time.Minute)
	s.do(nil, "POST", "/logout", "", "", crossSite...)
	if log := logs.take(); strings.Count(log, "\n") != 1 || !strings.Contains(log, "suppressed=20") || !strings.Contains(log, "path=/logout") {
		t.Fatalf("first refusal of the next window:\n%s", log)
	}
	if r := s.loginForm(nil, "alice", alicePassword, ""); r.status != 303 {
		t.Fatalf("same-origin login after the refusals: %d", r.status)
	}
}
