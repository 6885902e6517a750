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
	"unicode/utf8"
)

// SessionsHandler serves the sessions route, where a signed-in user sees
// and ends their own sessions. It needs a live session, as RequireSession
// does: without one a browser is redirected to the login page (with next
// set to come back) and an API client gets 401.
//
// GET shows an HTML page listing the user's live sessions, the last used
// first, the request's own marked, with a button to end each and one to end
// all the others; a client asking for JSON (Accept: application/json) gets
// an array of SessionInfo:
//
//	[{"id":"…","created":"…","last_seen":"…","expires":"…","current":true,
//	  "client_network":"203.0.113.0/24","user_agent":"…"}]
//
// POST takes one field, end: "others" ends every session of the user but
// the request's own; a session's ID ends that session. It is read from a
// form (urlencoded or multipart) or a JSON object {"end":…}, as strictly as
// LoginHandler reads its body. A session that is not the user's, or no
// longer live, is 404, exactly as an unknown ID is; an ID of the wrong
// shape is 400. Ending the request's own session signs out: its cookie is
// cleared, and a form is redirected (303) to the login page. Otherwise a
// JSON client gets 204 and a form is redirected (303) back to the page.
// POST is behind the same cross-origin protection (403) and body limit as
// the login. Each session ended is reported as an EventLogout with
// ReasonEndedByUser.
func (a *Authenticator) SessionsHandler() http.Handler { return a.handlers.sessionsHandler() }

// sessionsHandler is SessionsHandler.
func (h *handlers) sessionsHandler() http.Handler {
	post := h.protectPOST(http.HandlerFunc(h.postSessions))
	return h.requireSession(methods(http.HandlerFunc(h.getSessions), post))
}

// sessionsPage is what the sessions template is executed with.
type sessionsPage struct {
	Action   string // the path the forms post to
	Username string
	Sessions []SessionInfo
	Others   bool   // whether there is a session besides the current one
	Error    string // a message for the user, or ""
}

func (h *handlers) getSessions(w http.ResponseWriter, r *http.Request) {
	h.showSessions(w, r, http.StatusOK, "")
}

// showSessions answers with the user's sessions, as JSON or as the page,
// or with msg and status when msg is set: as JSON {"error":msg}, or on the
// page above the list.
func (h *handlers) showSessions(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if msg != "" && wantsJSON(r) {
		writeJSON(w, status, map[string]string{"error": msg})
		return
	}
	ctx := r.Context()
	username, _ := Username(ctx)
	list, err := h.a.liveSessions(ctx, username, tokenHash(h.sessionToken(r)))
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	if wantsJSON(r) {
		writeJSON(w, status, list)
		return
	}
	page := sessionsPage{Action: formAction(r), Username: username, Sessions: list, Error: msg}
	for _, s := range list {
		page.Others = page.Others || !s.Current
	}
	h.render(w, status, builtinSessions, page)
}

func (h *handlers) postSessions(w http.ResponseWriter, r *http.Request) {
	end, status := decodeEnd(r)
	if status != 0 {
		h.showSessions(w, r, status, badBodyMessage(status))
		return
	}
	ctx := r.Context()
	username, _ := Username(ctx)
	current := tokenHash(h.sessionToken(r))
	signedOut := false
	switch {
	case end == "others":
		if _, err := h.a.endOtherSessions(ctx, username, current); err != nil {
			h.unavailable(w, r, err)
			return
		}
	case !validSessionID(end):
		h.showSessions(w, r, http.StatusBadRequest, "That is not a session ID.")
		return
	default:
		found, wasCurrent, err := h.a.endSessionByID(ctx, username, end, current)
		switch {
		case err != nil:
			h.unavailable(w, r, err)
			return
		case !found:
			h.showSessions(w, r, http.StatusNotFound, "No such session: it may have ended already.")
			return
		}
		signedOut = wasCurrent
	}
	if signedOut {
		h.clearTossedCookies(w, r)
		http.SetCookie(w, h.sessionCookie(""))
	}
	switch {
	case wantsJSON(r):
		w.WriteHeader(http.StatusNoContent)
	case signedOut:
		http.Redirect(w, r, h.loginPath, http.StatusSeeOther)
	default:
		http.Redirect(w, r, formAction(r), http.StatusSeeOther)
	}
}

// badBodyMessage tells a user what was wrong with a body that could not be
// read.
func badBodyMessage(status int) string {
	if status == http.StatusBadRequest {
		return "The form could not be read. Reload the page and try again."
	}
	return badRequestMessage(status)
}

// decodeEnd reads the end field of a sessions POST: from a form
// (urlencoded or multipart) or a JSON object, by the rules of
// decodeCredentials (the field at most once; in JSON, no other key and a
// string value). status is 0 on success, or 413, 415 or 400 (malformed, or
// no end).
func decodeEnd(r *http.Request) (end string, status int) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return "", http.StatusUnsupportedMediaType
	}
	fields := map[string]*string{"end": &end}
	switch mt {
	case "application/x-www-form-urlencoded":
		err = decodeFormFields(r, fields)
	case "multipart/form-data":
		err = decodeMultipartFields(r.Body, params["boundary"], fields)
	case "application/json":
		err = decodeJSONFields(r.Body, fields)
	default:
		return "", http.StatusUnsupportedMediaType
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return "", http.StatusRequestEntityTooLarge
	case err != nil, end == "":
		return "", http.StatusBadRequest
	}
	return end, 0
}

// decodeFormFields reads an urlencoded body into fields, as decodeForm
// does: each field at most once, others ignored, the URL's query never.
func decodeFormFields(r *http.Request, fields map[string]*string) error {
	if err := r.ParseForm(); err != nil {
		return err
	}
	for name, dst := range fields {
		switch v := r.PostForm[name]; len(v) {
		case 0:
		case 1:
			*dst = v[0]
		default:
			return errRepeated
		}
	}
	return nil
}

// decodeMultipartFields reads a multipart/form-data body into fields, by
// the rules of decodeMultipart: text fields as browsers send them only,
// each of fields at most once, others ignored.
func decodeMultipartFields(body io.Reader, boundary string, fields map[string]*string) error {
	if boundary == "" || len(boundary) > 70 {
		return errors.New("authn: multipart body without a valid boundary")
	}
	mr := multipart.NewReader(body, boundary)
	seen := make(map[string]bool, len(fields))
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
		dst, known := fields[name]
		switch {
		case !known:
		case seen[name]:
			return errRepeated
		default:
			seen[name] = true
			*dst = string(value)
		}
	}
}

// decodeJSONFields reads exactly one flat JSON object into fields, by the
// rules of decodeJSON: only the keys of fields, each at most once, with
// string values; valid UTF-8 and no lone surrogate escape; nothing after
// the object.
func decodeJSONFields(body io.Reader, fields map[string]*string) error {
	raw, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	if !utf8.Valid(raw) || hasLoneSurrogate(raw) {
		return errors.New("authn: JSON body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errors.New("authn: JSON body is not an object")
	}
	left := make(map[string]*string, len(fields))
	for k, v := range fields {
		left[k] = v
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := key.(string)
		dst, known := left[name]
		if !known {
			return fmt.Errorf("authn: JSON key %q is unknown or repeated", name)
		}
		delete(left, name)
		value, err := dec.Token()
		if err != nil {
			return err
		}
		s, ok := value.(string)
		if !ok {
			return fmt.Errorf("authn: JSON %q is not a string", name)
		}
		*dst = s
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return errors.New("authn: JSON object not closed")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("authn: data after the JSON object")
	}
	return nil
}
