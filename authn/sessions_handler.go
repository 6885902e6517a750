package authn

import (
	"net/http"
)

// SessionsHandler serves the sessions route, where a signed-in user sees
// and ends their own sessions. It needs a live session, as RequireSession
// does: without one a browser is redirected to the login page (with next
// set to come back) and an API client gets 401.
//
// GET shows an HTML page listing the user's live sessions, the last used
// first, each named by its device ("Firefox on Linux"), the request's own
// marked, with a button to end each, one to end all the others and a link
// back to the application (HTTPConfig.HomePath); HTTPConfig.SessionsTemplate
// replaces the page, executed with a SessionsData. A client asking for JSON
// (Accept: application/json) gets an array of SessionInfo:
//
//	[{"id":"…","created":"…","last_seen":"…","expires":"…","current":true,
//	  "client_network":"203.0.113.0/24","user_agent":"…","device":"…"}]
//
// POST takes one field, end: "others" ends every session of the user but
// the request's own; a session's ID ends that session. It is read from a
// form (urlencoded or multipart) or a JSON object {"end":…}, as strictly as
// LoginHandler reads its body. A session that is not the user's, or no
// longer live, is 404, exactly as an unknown ID is; an ID of the wrong
// shape is 400. Ending the request's own session signs out: its cookie is
// cleared, and a form is redirected (303) to the login page, which says so
// (as after a logout: NoticeSignedOut). Otherwise a JSON client gets 204
// and a form is redirected (303) back to the page with the query
// notice=session_ended or notice=other_sessions_ended, where the page
// confirms it (NoticeSessionEnded, NoticeOtherSessionsEnded).
// POST is behind the same cross-origin protection (403) and body limit as
// the login. Each session ended is reported as an EventLogout with
// ReasonEndedByUser.
func (a *Authenticator) SessionsHandler() http.Handler { return a.handlers.sessionsHandler() }

// sessionsHandler is SessionsHandler.
func (h *handlers) sessionsHandler() http.Handler {
	post := h.protectPOST(http.HandlerFunc(h.postSessions))
	return h.requireSession(methods(http.HandlerFunc(h.getSessions), post))
}

// SessionsData is what the sessions page (SessionsHandler, or
// HTTPConfig.SessionsTemplate) is executed with. Its strings are text,
// never HTML: html/template escapes them.
type SessionsData struct {
	Action   string        // the path the forms post to: the one the client asked for
	Username string        // the signed-in user
	Sessions []SessionInfo // the user's live sessions, the last used first, the request's own Current
	Others   bool          // whether there is a session besides the current one
	Error    string        // a message for the user, or ""
	// Notice confirms, in the library's own words, what the user just
	// did, or is "": NoticeCode names it, NoticeSessionEnded or
	// NoticeOtherSessionsEnded (see FormData.Notice).
	Notice     string
	NoticeCode string
	AppName    string // HTTPConfig.AppName, for the title and heading, or ""
	HomePath   string // the link back to the application (HTTPConfig.HomePath, its default applied)
	LoginPath  string // the login page, where signing out of this session leads
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
	page := SessionsData{
		Action: formAction(r), Username: username, Sessions: list, Error: msg,
		AppName: h.appName, HomePath: h.homePath, LoginPath: h.loginPath,
	}
	if msg == "" {
		page.NoticeCode, page.Notice = noticeOf(r, NoticeSessionEnded, NoticeOtherSessionsEnded)
	}
	for _, s := range list {
		page.Others = page.Others || !s.Current
	}
	h.render(w, status, h.sessionsTemplate, page)
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
	signedOut, notice := false, NoticeOtherSessionsEnded
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
		signedOut, notice = wasCurrent, NoticeSessionEnded
	}
	if signedOut {
		h.clearTossedCookies(w, r)
		http.SetCookie(w, h.sessionCookie(""))
	}
	switch {
	case wantsJSON(r):
		w.WriteHeader(http.StatusNoContent)
	case signedOut:
		h.redirect(w, r, noticeURL(h.loginPath, NoticeSignedOut))
	default:
		h.redirect(w, r, noticeURL(formAction(r), notice))
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

// decodeEnd reads the end field of a sessions POST from a form
// (urlencoded or multipart) or a JSON object {"end":…}, by the rules of
// decodeBody. status is 0 on success, or 413, 415 or 400 (malformed, or no
// end).
func decodeEnd(r *http.Request) (end string, status int) {
	if status, _ := decodeBody(r, fieldSet{text: map[string]*string{"end": &end}}); status != 0 {
		return "", status
	}
	if end == "" {
		return "", http.StatusBadRequest
	}
	return end, 0
}
