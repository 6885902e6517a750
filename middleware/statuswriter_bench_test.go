package middleware

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// discardWriter is a ResponseWriter with the optional interfaces of
// net/http's HTTP/1 writer (http.Flusher, http.Hijacker, io.ReaderFrom,
// io.StringWriter and FlushError) that costs nothing, so that a benchmark
// measures the wrapping alone.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header                          { return w.h }
func (w *discardWriter) WriteHeader(int)                              {}
func (w *discardWriter) Write(p []byte) (int, error)                  { return len(p), nil }
func (w *discardWriter) WriteString(s string) (int, error)            { return len(s), nil }
func (w *discardWriter) Flush()                                       {}
func (w *discardWriter) FlushError() error                            { return nil }
func (w *discardWriter) ReadFrom(r io.Reader) (int64, error)          { return io.Copy(io.Discard, r) }
func (w *discardWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) { return nil, nil, nil }

// BenchmarkWrap is the cost Throttle.Wrap adds to a request that succeeds:
// a reservation given back, and the status recorded through the wrapped
// writer.
func BenchmarkWrap(b *testing.B) {
	h := NewThrottle(ThrottleConfig{}).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "ok")
	}))
	w := &discardWriter{h: make(http.Header)}
	r := httptest.NewRequest("GET", "/", nil)
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}
