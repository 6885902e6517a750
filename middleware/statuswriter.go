package middleware

import (
	"bufio"
	"io"
	"net"
	"net/http"

	"github.com/felixge/httpsnoop"
)

// statusWriter records the status of a response.
type statusWriter struct {
	status int
}

// newStatusWriter returns the recorder, and the writer to give the handler:
// w wrapped by httpsnoop, which implements exactly the optional interfaces
// of w (http.Flusher, http.Hijacker, io.ReaderFrom, http.Pusher,
// io.StringWriter, FlushError, the deadlines of http.ResponseController,
// ...), so that wrapping neither hides a capability (a handler that finds
// no http.Flusher cannot stream) nor invents one (a Flush that does nothing
// would silently break streaming). Its Unwrap method gives w to
// http.ResponseController. The hooks note the status of whichever method
// writes first.
func newStatusWriter(w http.ResponseWriter) (*statusWriter, http.ResponseWriter) {
	sw := &statusWriter{}
	return sw, httpsnoop.Wrap(w, httpsnoop.Hooks{
		// An informational 1xx status (103 Early Hints, say) is followed
		// by the real one, except 101 Switching Protocols.
		WriteHeader: func(next httpsnoop.WriteHeaderFunc) httpsnoop.WriteHeaderFunc {
			return func(code int) {
				if code >= 200 || code == http.StatusSwitchingProtocols {
					sw.record(code)
				}
				next(code)
			}
		},
		// The first write, flush or copy sends 200 unless a status was
		// written before, as net/http does.
		Write: func(next httpsnoop.WriteFunc) httpsnoop.WriteFunc {
			return func(p []byte) (int, error) {
				sw.record(http.StatusOK)
				return next(p)
			}
		},
		WriteString: func(next httpsnoop.WriteStringFunc) httpsnoop.WriteStringFunc {
			return func(s string) (int, error) {
				sw.record(http.StatusOK)
				return next(s)
			}
		},
		Flush: func(next httpsnoop.FlushFunc) httpsnoop.FlushFunc {
			return func() {
				sw.record(http.StatusOK)
				next()
			}
		},
		// FlushError is what http.ResponseController prefers: it keeps
		// the underlying writer's error.
		FlushError: func(next httpsnoop.FlushErrorFunc) httpsnoop.FlushErrorFunc {
			return func() error {
				sw.record(http.StatusOK)
				return next()
			}
		},
		// net/http's ReadFrom can then use sendfile or splice.
		ReadFrom: func(next httpsnoop.ReadFromFunc) httpsnoop.ReadFromFunc {
			return func(src io.Reader) (int64, error) {
				sw.record(http.StatusOK)
				return next(src)
			}
		},
		// A hijacked connection left HTTP (as for a WebSocket): unless a
		// status was written before, the response counts as 101.
		Hijack: func(next httpsnoop.HijackFunc) httpsnoop.HijackFunc {
			return func() (net.Conn, *bufio.ReadWriter, error) {
				c, rw, err := next()
				if err == nil {
					sw.record(http.StatusSwitchingProtocols)
				}
				return c, rw, err
			}
		},
	})
}

// record notes code as the status unless one was noted before.
func (w *statusWriter) record(code int) {
	if w.status == 0 {
		w.status = code
	}
}
