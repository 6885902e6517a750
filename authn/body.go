package authn

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The bodies of the POST routes: a form (urlencoded or multipart) or one flat
// JSON object, read strictly, so that no two readers of a body can disagree
// on what it says.

// credentials is a decoded login or registration body.
type credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Next     string `json:"next"`
	// Remember asks a login for a remembered session (see
	// HTTPConfig.RememberFor).
	Remember bool `json:"remember"`
	// Email is, for a registration, the optional address to verify (see
	// HTTPConfig.RegistrationEmail).
	Email string `json:"email"`
}

// decodeCredentials reads a form (urlencoded or multipart) or JSON body.
// status is 0 on success, or 413 (body too large), 415 (another content
// type) or 400 (malformed, a field repeated, a file, or username or password
// missing); code is the Code constant of the failure.
func decodeCredentials(r *http.Request) (in credentials, status int, code string) {
	status, code = decodeBody(r, in.fields())
	switch {
	case status == http.StatusRequestEntityTooLarge:
		return credentials{}, status, code
	case status != 0:
		return in, status, code
	case in.Username == "":
		return in, http.StatusBadRequest, CodeUsernameRequired
	case in.Password == "":
		return in, http.StatusBadRequest, CodePasswordRequired
	}
	return in, 0, ""
}

// fields maps the names of the fields to where their values go.
func (in *credentials) fields() fieldSet {
	return fieldSet{
		text:  map[string]*string{"username": &in.Username, "password": &in.Password, "next": &in.Next, "email": &in.Email},
		flags: map[string]*bool{"remember": &in.Remember},
	}
}

// fieldSet names the fields a body may have and where their values go: text
// fields, and flags (checkboxes; booleans in JSON). Every other field of a
// form is ignored, and every other key of a JSON object is an error.
type fieldSet struct {
	text  map[string]*string
	flags map[string]*bool
}

// set stores the value of the form field name, and reports whether the
// field is one of fs. A flag is "on" (what a browser sends for a ticked
// checkbox), "true" or "1", or "", "off", "false" or "0"; any other value
// is an error.
func (fs fieldSet) set(name, value string) (known bool, err error) {
	if dst, ok := fs.text[name]; ok {
		*dst = value
		return true, nil
	}
	dst, ok := fs.flags[name]
	if !ok {
		return false, nil
	}
	switch value {
	case "on", "true", "1":
		*dst = true
	case "", "off", "false", "0":
		*dst = false
	default:
		return true, fmt.Errorf("authn: form field %q is not a flag", name)
	}
	return true, nil
}

// names lists the fields of fs.
func (fs fieldSet) names() []string {
	names := make([]string, 0, len(fs.text)+len(fs.flags))
	for name := range fs.text {
		names = append(names, name)
	}
	for name := range fs.flags {
		names = append(names, name)
	}
	return names
}

// decodeBody reads a form (urlencoded or multipart) or JSON body into fs.
// status is 0 on success, or 413 (body too large), 415 (another content
// type) or 400 (malformed, a field repeated, a file); code is the Code
// constant of the failure. Which fields are required is the caller's to
// check.
func decodeBody(r *http.Request, fs fieldSet) (status int, code string) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return http.StatusUnsupportedMediaType, CodeUnsupportedMediaType
	}
	switch mt {
	case "application/x-www-form-urlencoded":
		err = decodeForm(r, fs)
	case "multipart/form-data":
		err = decodeMultipart(r.Body, params["boundary"], fs)
	case "application/json":
		err = decodeJSON(r.Body, fs)
	default:
		return http.StatusUnsupportedMediaType, CodeUnsupportedMediaType
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, CodeBodyTooLarge
	case err != nil:
		return http.StatusBadRequest, CodeMalformedBody
	}
	return 0, ""
}

var errRepeated = errors.New("authn: a field is repeated")

// decodeForm reads an urlencoded body into fs: each field of fs at most
// once, other fields ignored.
func decodeForm(r *http.Request, fs fieldSet) error {
	if err := r.ParseForm(); err != nil {
		return err
	}
	for _, name := range fs.names() {
		switch v := r.PostForm[name]; len(v) {
		case 0:
		case 1:
			if _, err := fs.set(name, v[0]); err != nil {
				return err
			}
		default:
			return errRepeated
		}
	}
	return nil
}

// decodeMultipart reads a multipart/form-data body (what fetch sends with
// new FormData(form)) into fs by decodeForm's rules: each field of fs at
// most once, other fields ignored. Each part is read into memory within
// the body's limit (the caller's http.MaxBytesReader), and never spills to
// disk as Request.ParseMultipartForm's files do. Anything a browser would
// not send for a text field is an error, so that no two readers of the body
// can disagree on what it says: a missing or malformed boundary, a part
// with a file name (an <input type=file>, even empty), with a content type
// other than text/plain (at most with charset=utf-8: see utf8TextPlain),
// with a Content-Transfer-Encoding or any header but those two and
// Content-Disposition, a disposition other than form-data
// with a name, one whose parameters readers parse differently (see
// plainDisposition; a field whose name has a backslash is refused with
// them), or a body that ends before the closing boundary.
func decodeMultipart(body io.Reader, boundary string, fs fieldSet) error {
	// RFC 2046, section 5.1.1: 1 to 70 characters.
	if boundary == "" || len(boundary) > 70 {
		return errors.New("authn: multipart body without a valid boundary")
	}
	// The multipart reader passes on the body's errors (wrapped), so that
	// errors.As finds an *http.MaxBytesError: 413, not 400.
	mr := multipart.NewReader(body, boundary)
	seen := make(map[string]bool)
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name, err := textFieldName(p.Header)
		if err != nil {
			return err
		}
		value, err := io.ReadAll(p)
		if err != nil {
			return err
		}
		if seen[name] {
			return errRepeated
		}
		known, err := fs.set(name, string(value))
		if err != nil {
			return err
		}
		if known {
			seen[name] = true
		}
	}
}

// textFieldName returns the field name of a multipart part that is a text
// field as browsers send it, or an error for anything else (see
// decodeMultipart).
func textFieldName(h textproto.MIMEHeader) (string, error) {
	for key := range h {
		if key != "Content-Disposition" && key != "Content-Type" {
			return "", fmt.Errorf("authn: multipart part with a %s header", key)
		}
	}
	if ct := h.Values("Content-Type"); len(ct) > 1 || len(ct) == 1 && !utf8TextPlain(ct[0]) {
		return "", errors.New("authn: multipart part that is not text/plain in UTF-8")
	}
	cd := h.Values("Content-Disposition")
	if len(cd) != 1 {
		return "", errors.New("authn: multipart part without one Content-Disposition")
	}
	if !plainDisposition(cd[0]) {
		return "", errors.New("authn: multipart part with an escaped or extended parameter")
	}
	disposition, params, err := mime.ParseMediaType(cd[0])
	if err != nil || disposition != "form-data" {
		return "", errors.New("authn: multipart part that is not form-data")
	}
	if _, file := params["filename"]; file {
		return "", errors.New("authn: multipart part that is a file")
	}
	name, ok := params["name"]
	if !ok {
		return "", errors.New("authn: multipart part without a name")
	}
	return name, nil
}

// utf8TextPlain reports whether the Content-Type of a multipart part is
// text/plain with no parameter but charset=utf-8: the part is read as UTF-8
// bytes, and a reader that honours another charset (ISO-8859-1, UTF-16)
// would read another password from the same bytes. Browsers send no
// Content-Type for a text field; RFC 7578 allows this one. Its parameters
// must be plain as a disposition's (an RFC 2231 charset*= is refused).
func utf8TextPlain(v string) bool {
	if !plainDisposition(v) {
		return false
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil || mt != "text/plain" {
		return false
	}
	charset, ok := params["charset"]
	return len(params) == 0 || len(params) == 1 && ok && strings.EqualFold(charset, "utf-8")
}

// plainDisposition reports whether a Content-Disposition value is one that
// every multipart reader parses alike, as browsers write it: no backslash
// and no '*' outside a quoted string. mime.ParseMediaType keeps a
// backslash before an ordinary character (name="pass\word" is pass\word,
// password to RFC 7578's readers) and applies RFC 2231 extended and
// continued parameters (name*=utf-8'en'username overrides name="password"),
// which form-data does not have and most readers ignore. Browsers
// percent-encode a quote in a field name and never write either form.
func plainDisposition(v string) bool {
	quoted := false
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '\\':
			return false
		case '"':
			quoted = !quoted
		case '*':
			if !quoted {
				return false
			}
		}
	}
	return true
}

// decodeJSON reads into fs exactly one flat JSON object whose keys are the
// fields of fs, each at most once, with string values for text fields and
// true or false for flags. Anything else (duplicate keys, which parsers
// resolve differently; other keys; nesting; null; invalid UTF-8 and lone
// UTF-16 surrogate escapes such as \ud800, which encoding/json would
// silently replace with U+FFFD) is an error, so that no two readers of the
// body can disagree on what it says.
func decodeJSON(body io.Reader, fs fieldSet) error {
	raw, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	if !utf8.Valid(raw) {
		return errors.New("authn: JSON body is not valid UTF-8")
	}
	if hasLoneSurrogate(raw) {
		return errors.New("authn: JSON body has a lone UTF-16 surrogate escape")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errors.New("authn: JSON body is not an object")
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key := tok.(string) // an object's keys are strings, or Token fails
		text, isText := fs.text[key]
		flag, isFlag := fs.flags[key]
		if !isText && !isFlag || seen[key] {
			return fmt.Errorf("authn: JSON key %q is unknown or repeated", key)
		}
		seen[key] = true
		value, err := dec.Token()
		if err != nil {
			return err
		}
		switch v := value.(type) {
		case string:
			if !isText {
				return fmt.Errorf("authn: JSON %q is not a boolean", key)
			}
			*text = v
		case bool:
			if !isFlag {
				return fmt.Errorf("authn: JSON %q is not a string", key)
			}
			*flag = v
		default: // a number, null, or the start of an array or object
			return fmt.Errorf("authn: JSON %q is not a string or a boolean", key)
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return errors.New("authn: JSON object not closed")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("authn: data after the JSON object")
	}
	return nil
}

// hasLoneSurrogate reports whether a JSON text has a \u escape of a UTF-16
// surrogate (D800-DFFF) that is not a high one followed at once by an
// escaped low one. It reads the escapes in the raw bytes: the decoder
// replaces such an escape with U+FFFD and gives no error.
func hasLoneSurrogate(raw []byte) bool {
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		r, ok := unicodeEscape(raw[i:])
		switch {
		case !ok: // another escape: skip the escaped byte ("\\" included)
			i++
		case 0xDC00 <= r && r <= 0xDFFF: // a low one with no high one before
			return true
		case 0xD800 <= r && r <= 0xDBFF:
			low, ok := unicodeEscape(raw[i+6:])
			if !ok || low < 0xDC00 || low > 0xDFFF {
				return true
			}
			i += 11 // the pair
		default:
			i += 5
		}
	}
	return false
}

// unicodeEscape reads a \uXXXX escape at the start of b.
func unicodeEscape(b []byte) (rune, bool) {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[2:6]), 16, 16)
	return rune(n), err == nil
}

// mediaType returns the media type of a Content-Type value, lower-cased,
// or "".
func mediaType(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	return mt
}

// containsToken reports whether a comma-separated header value lists the
// media type mt (parameters ignored).
func containsToken(header, mt string) bool {
	for part := range strings.SplitSeq(header, ",") {
		if mediaType(strings.TrimSpace(part)) == mt {
			return true
		}
	}
	return false
}
