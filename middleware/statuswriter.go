package middleware

import (
	"bufio"
	"io"
	"net"
	"net/http"
)

// statusWriter records the status of a response. newStatusWriter hands the
// wrapped handler a writer that adds to it exactly the optional interfaces
// of the underlying writer (the way httpsnoop does), so that wrapping
// neither hides a capability (a handler that finds no http.Flusher cannot
// stream) nor invents one (a Flush that does nothing would silently break
// streaming).
type statusWriter struct {
	http.ResponseWriter
	status int
}

// newStatusWriter returns the recorder, and the writer to give the handler:
// the recorder itself, or a struct that embeds it with the methods of those
// of http.Flusher, http.Hijacker, io.ReaderFrom and http.Pusher that w
// implements. (http.CloseNotifier, deprecated since Go 1.11, is not kept;
// http.ResponseController reaches the rest of w through Unwrap.)
func newStatusWriter(w http.ResponseWriter) (*statusWriter, http.ResponseWriter) {
	sw := &statusWriter{ResponseWriter: w}
	f, h, r, p := flusher{sw}, hijacker{sw}, readerFrom{sw}, pusher{sw}
	_, canF := w.(http.Flusher)
	_, canH := w.(http.Hijacker)
	_, canR := w.(io.ReaderFrom)
	_, canP := w.(http.Pusher)
	// One case per combination: Go has no other way to build a type with a
	// chosen method set. Each embeds *statusWriter (Header, Write,
	// WriteHeader, Unwrap) and the method carriers of what w implements.
	type (
		F   = flusher
		H   = hijacker
		R   = readerFrom
		P   = pusher
		rec = *statusWriter
	)
	switch {
	case !canF && !canH && !canR && !canP:
		return sw, sw
	case canF && !canH && !canR && !canP:
		return sw, struct {
			rec
			F
		}{sw, f}
	case !canF && canH && !canR && !canP:
		return sw, struct {
			rec
			H
		}{sw, h}
	case canF && canH && !canR && !canP:
		return sw, struct {
			rec
			F
			H
		}{sw, f, h}
	case !canF && !canH && canR && !canP:
		return sw, struct {
			rec
			R
		}{sw, r}
	case canF && !canH && canR && !canP:
		return sw, struct {
			rec
			F
			R
		}{sw, f, r}
	case !canF && canH && canR && !canP:
		return sw, struct {
			rec
			H
			R
		}{sw, h, r}
	case canF && canH && canR && !canP: // net/http's HTTP/1 writer
		return sw, struct {
			rec
			F
			H
			R
		}{sw, f, h, r}
	case !canF && !canH && !canR && canP:
		return sw, struct {
			rec
			P
		}{sw, p}
	case canF && !canH && !canR && canP: // net/http's HTTP/2 writer
		return sw, struct {
			rec
			F
			P
		}{sw, f, p}
	case !canF && canH && !canR && canP:
		return sw, struct {
			rec
			H
			P
		}{sw, h, p}
	case canF && canH && !canR && canP:
		return sw, struct {
			rec
			F
			H
			P
		}{sw, f, h, p}
	case !canF && !canH && canR && canP:
		return sw, struct {
			rec
			R
			P
		}{sw, r, p}
	case canF && !canH && canR && canP:
		return sw, struct {
			rec
			F
			R
			P
		}{sw, f, r, p}
	case !canF && canH && canR && canP:
		return sw, struct {
			rec
			H
			R
			P
		}{sw, h, r, p}
	default: // all four
		return sw, struct {
			rec
			F
			H
			R
			P
		}{sw, f, h, r, p}
	}
}

// record notes code as the status unless one was noted before.
func (w *statusWriter) record(code int) {
	if w.status == 0 {
		w.status = code
	}
}

// WriteHeader records the first final status written: an informational
// 1xx status (103 Early Hints, say) is followed by the real one, except
// 101 Switching Protocols.
func (w *statusWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.record(code)
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write records 200 when no status was written before.
func (w *statusWriter) Write(p []byte) (int, error) {
	w.record(http.StatusOK)
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// flusher carries Flush, for an underlying http.Flusher.
type flusher struct{ w *statusWriter }

// Flush records 200 when no status was written before (net/http sends
// the header with that status at the first flush) and flushes.
func (f flusher) Flush() {
	f.w.record(http.StatusOK)
	f.w.ResponseWriter.(http.Flusher).Flush()
}

// FlushError is Flush for http.ResponseController, which prefers it: it
// keeps the underlying writer's error, where there is one to keep.
func (f flusher) FlushError() error {
	f.w.record(http.StatusOK)
	return http.NewResponseController(f.w.ResponseWriter).Flush()
}

// hijacker carries Hijack, for an underlying http.Hijacker.
type hijacker struct{ w *statusWriter }

// Hijack hands the connection over; unless a status was written before,
// the response counts as 101 Switching Protocols (the connection left
// HTTP, as for a WebSocket).
func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := h.w.ResponseWriter.(http.Hijacker).Hijack()
	if err == nil {
		h.w.record(http.StatusSwitchingProtocols)
	}
	return c, rw, err
}

// readerFrom carries ReadFrom, for an underlying io.ReaderFrom.
type readerFrom struct{ w *statusWriter }

// ReadFrom records 200 when no status was written before and lets the
// underlying writer copy (net/http's can then use sendfile or splice).
func (r readerFrom) ReadFrom(src io.Reader) (int64, error) {
	r.w.record(http.StatusOK)
	return r.w.ResponseWriter.(io.ReaderFrom).ReadFrom(src)
}

// pusher carries Push, for an underlying http.Pusher.
type pusher struct{ w *statusWriter }

// Push starts an HTTP/2 server push; it writes nothing of this response.
func (p pusher) Push(target string, opts *http.PushOptions) error {
	return p.w.ResponseWriter.(http.Pusher).Push(target, opts)
}
