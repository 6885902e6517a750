package middleware

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The optional interfaces a ResponseWriter may have, as bits.
const (
	canFlush = 1 << iota
	canHijack
	canReadFrom
	canPush
	allKinds = 1<<iota - 1
)

// kinds returns the bits of the optional interfaces w implements.
func kinds(w http.ResponseWriter) int {
	k := 0
	if _, ok := w.(http.Flusher); ok {
		k |= canFlush
	}
	if _, ok := w.(http.Hijacker); ok {
		k |= canHijack
	}
	if _, ok := w.(io.ReaderFrom); ok {
		k |= canReadFrom
	}
	if _, ok := w.(http.Pusher); ok {
		k |= canPush
	}
	return k
}

// fakeWriter is a ResponseWriter that notes which of its methods ran.
type fakeWriter struct {
	*httptest.ResponseRecorder
	calls []string
	src   io.Reader // what ReadFrom was given
}

// Method carriers for the fakes, one per optional interface.
type (
	fakeF struct{ w *fakeWriter }
	fakeH struct{ w *fakeWriter }
	fakeR struct{ w *fakeWriter }
	fakeP struct{ w *fakeWriter }
)

func (f fakeF) Flush() { f.w.calls = append(f.w.calls, "Flush"); f.w.ResponseRecorder.Flush() }
func (f fakeH) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	f.w.calls = append(f.w.calls, "Hijack")
	return nil, nil, nil
}
func (f fakeR) ReadFrom(src io.Reader) (int64, error) {
	f.w.calls = append(f.w.calls, "ReadFrom")
	f.w.src = src
	return io.Copy(f.w.ResponseRecorder, src)
}
func (f fakeP) Push(string, *http.PushOptions) error {
	f.w.calls = append(f.w.calls, "Push")
	return nil
}

// newFake returns a writer with exactly the optional interfaces of k. The
// recorder's own Flush is hidden unless k has canFlush.
func newFake(k int) (*fakeWriter, http.ResponseWriter) {
	fw := &fakeWriter{ResponseRecorder: httptest.NewRecorder()}
	type base struct{ http.ResponseWriter } // Header, Write, WriteHeader only
	b := base{fw}
	// Spelled out: the method set of a Go type is fixed at compile time.
	var w http.ResponseWriter
	switch k {
	case 0:
		w = b
	case canFlush:
		w = struct {
			base
			fakeF
		}{b, fakeF{fw}}
	case canHijack:
		w = struct {
			base
			fakeH
		}{b, fakeH{fw}}
	case canFlush | canHijack:
		w = struct {
			base
			fakeF
			fakeH
		}{b, fakeF{fw}, fakeH{fw}}
	case canReadFrom:
		w = struct {
			base
			fakeR
		}{b, fakeR{fw}}
	case canFlush | canReadFrom:
		w = struct {
			base
			fakeF
			fakeR
		}{b, fakeF{fw}, fakeR{fw}}
	case canHijack | canReadFrom:
		w = struct {
			base
			fakeH
			fakeR
		}{b, fakeH{fw}, fakeR{fw}}
	case canFlush | canHijack | canReadFrom:
		w = struct {
			base
			fakeF
			fakeH
			fakeR
		}{b, fakeF{fw}, fakeH{fw}, fakeR{fw}}
	case canPush:
		w = struct {
			base
			fakeP
		}{b, fakeP{fw}}
	case canFlush | canPush:
		w = struct {
			base
			fakeF
			fakeP
		}{b, fakeF{fw}, fakeP{fw}}
	case canHijack | canPush:
		w = struct {
			base
			fakeH
			fakeP
		}{b, fakeH{fw}, fakeP{fw}}
	case canFlush | canHijack | canPush:
		w = struct {
			base
			fakeF
			fakeH
			fakeP
		}{b, fakeF{fw}, fakeH{fw}, fakeP{fw}}
	case canReadFrom | canPush:
		w = struct {
			base
			fakeR
			fakeP
		}{b, fakeR{fw}, fakeP{fw}}
	case canFlush | canReadFrom | canPush:
		w = struct {
			base
			fakeF
			fakeR
			fakeP
		}{b, fakeF{fw}, fakeR{fw}, fakeP{fw}}
	case canHijack | canReadFrom | canPush:
		w = struct {
			base
			fakeH
			fakeR
			fakeP
		}{b, fakeH{fw}, fakeR{fw}, fakeP{fw}}
	case allKinds:
		w = struct {
			base
			fakeF
			fakeH
			fakeR
			fakeP
		}{b, fakeF{fw}, fakeH{fw}, fakeR{fw}, fakeP{fw}}
	}
	return fw, w
}

// TestWrapKeepsInterfaces: for every combination of http.Flusher,
// http.Hijacker, io.ReaderFrom and http.Pusher, the writer a handler gets
// through Throttle.Wrap implements exactly those the server's writer
// implements, and its methods reach the server's.
func TestWrapKeepsInterfaces(t *testing.T) {
	t.Parallel()
	for k := range allKinds + 1 {
		fw, w := newFake(k)
		if got := kinds(w); got != k {
			t.Fatalf("fake %04b implements %04b", k, got)
		}
		var seen int
		h := NewThrottle(ThrottleConfig{}).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen = kinds(w)
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
			if h, ok := w.(http.Hijacker); ok {
				h.Hijack()
			}
			if rf, ok := w.(io.ReaderFrom); ok {
				rf.ReadFrom(strings.NewReader("body"))
			}
			if p, ok := w.(http.Pusher); ok {
				p.Push("/style.css", nil)
			}
			if u, ok := w.(interface{ Unwrap() http.ResponseWriter }); !ok || kinds(u.Unwrap()) != k {
				t.Errorf("%04b: Unwrap does not give the server's writer", k)
			}
		}))
		h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		if seen != k {
			t.Errorf("server's writer has %04b, the handler's has %04b", k, seen)
		}
		var want []string
		for i, name := range []string{"Flush", "Hijack", "ReadFrom", "Push"} {
			if k&(1<<i) != 0 {
				want = append(want, name)
			}
		}
		if strings.Join(fw.calls, " ") != strings.Join(want, " ") {
			t.Errorf("%04b: the server's writer saw %v, want %v", k, fw.calls, want)
		}
	}
}

// TestWrapReadFromFile: io.Copy from an *os.File through Wrap hands the
// file to the server writer's ReadFrom (where net/http can use sendfile),
// and over a real connection the body arrives whole.
func TestWrapReadFromFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "file.txt")
	content := strings.Repeat("some file content\n", 10_000)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	h := NewThrottle(ThrottleConfig{}).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(path)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		if _, err := io.Copy(w, f); err != nil {
			t.Error(err)
		}
	}))

	fw, w := newFake(canFlush | canHijack | canReadFrom)
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	// io.Copy asks the file's WriteTo first, which, for a writer that is
	// not a socket, calls the writer's ReadFrom with the file minus its
	// WriteTo method: net's sendfile takes that as it takes an *os.File.
	if f, ok := fw.src.(interface{ Name() string }); !ok || f.Name() != path || strings.Join(fw.calls, " ") != "ReadFrom" {
		t.Errorf("io.Copy through Wrap: the server's writer saw %v with a %T, want ReadFrom with the file", fw.calls, fw.src)
	}
	if fw.Body.String() != content {
		t.Errorf("body: %d bytes, want %d", fw.Body.Len(), len(content))
	}

	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || string(body) != content {
		t.Errorf("over HTTP: %d, %d bytes, %v; want 200 and %d bytes", resp.StatusCode, len(body), err, len(content))
	}
}

// TestWrapStreams: server-sent events through Wrap over a real
// connection: the handler finds an http.Flusher, and the client reads the
// first event while the handler still waits to send the second. Over
// HTTP/1.1 and HTTP/2.
func TestWrapStreams(t *testing.T) {
	t.Parallel()
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			read := make(chan struct{}) // closed when the client has the first event
			h := NewThrottle(ThrottleConfig{}).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				f, ok := w.(http.Flusher)
				if !ok {
					t.Error("no http.Flusher through Wrap")
					return
				}
				w.Header().Set("Content-Type", "text/event-stream")
				io.WriteString(w, "data: one\n\n")
				f.Flush()
				select {
				case <-read:
				case <-time.After(10 * time.Second):
					t.Error("the client never read the first event: it was not flushed")
					return
				}
				io.WriteString(w, "data: two\n\n")
			}))
			srv := httptest.NewUnstartedServer(h)
			if proto == "HTTP/2.0" {
				srv.EnableHTTP2 = true
				srv.StartTLS()
			} else {
				srv.Start()
			}
			defer srv.Close()
			resp, err := srv.Client().Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.Proto != proto {
				t.Fatalf("protocol %s, want %s", resp.Proto, proto)
			}
			br := bufio.NewReader(resp.Body)
			line, err := br.ReadString('\n')
			if err != nil || line != "data: one\n" {
				t.Fatalf("first line %q, %v", line, err)
			}
			close(read)
			rest, err := io.ReadAll(br)
			if err != nil || string(rest) != "\ndata: two\n\n" {
				t.Errorf("rest %q, %v", rest, err)
			}
		})
	}
}

// TestWrapRealWriters: through Wrap, a handler finds what net/http's own
// writers implement: http.Flusher, http.Hijacker and io.ReaderFrom over
// HTTP/1.1, http.Flusher and http.Pusher over HTTP/2, and nothing else.
func TestWrapRealWriters(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		http2 bool
		want  int
	}{
		{false, canFlush | canHijack | canReadFrom},
		{true, canFlush | canPush},
	} {
		var server, handler int
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			server = kinds(w)
			NewThrottle(ThrottleConfig{}).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				handler = kinds(w)
			})).ServeHTTP(w, r)
		})
		srv := httptest.NewUnstartedServer(h)
		srv.EnableHTTP2 = tc.http2
		srv.TLS = &tls.Config{}
		srv.StartTLS()
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		srv.Close()
		if server != tc.want || handler != tc.want {
			t.Errorf("%s: server's writer %04b, handler's %04b, want %04b", resp.Proto, server, handler, tc.want)
		}
	}
}

// TestWrapRecordsStatus: the status Wrap judges is the one the client
// gets, whichever method writes first.
func TestWrapRecordsStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		handle func(w http.ResponseWriter)
		failed bool
	}{
		{"401", func(w http.ResponseWriter) { w.WriteHeader(401) }, true},
		{"401, then a flush", func(w http.ResponseWriter) { w.WriteHeader(401); w.(http.Flusher).Flush() }, true},
		{"a flush, then 401 (too late: 200 was sent)", func(w http.ResponseWriter) { w.(http.Flusher).Flush(); w.WriteHeader(401) }, false},
		{"ReadFrom, then 404 (too late)", func(w http.ResponseWriter) {
			w.(io.ReaderFrom).ReadFrom(strings.NewReader("x"))
			w.WriteHeader(404)
		}, false},
		{"a write, then 403 (too late)", func(w http.ResponseWriter) { io.WriteString(w, "x"); w.WriteHeader(403) }, false},
		{"103 Early Hints, then 401", func(w http.ResponseWriter) { w.WriteHeader(103); w.WriteHeader(401) }, true},
		{"hijacked", func(w http.ResponseWriter) { w.(http.Hijacker).Hijack() }, false},
		{"401 through http.ResponseController's Flush", func(w http.ResponseWriter) {
			w.WriteHeader(401)
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Errorf("ResponseController.Flush: %v", err)
			}
		}, true},
		{"nothing written", func(w http.ResponseWriter) {}, false},
	} {
		th := NewThrottle(ThrottleConfig{Burst: 1, Interval: time.Hour})
		h := th.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tc.handle(w) }))
		for range 2 {
			_, w := newFake(allKinds)
			h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		}
		ok, _ := th.Allow(ResolveClientIP(httptest.NewRequest("GET", "/", nil), nil))
		if ok == tc.failed {
			t.Errorf("%s: counted as failed: %v, want %v", tc.name, !ok, tc.failed)
		}
	}
}

// TestWrapFlushError: http.ResponseController's Flush through Wrap still
// reports the server writer's error.
func TestWrapFlushError(t *testing.T) {
	t.Parallel()
	var got error
	h := NewThrottle(ThrottleConfig{}).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = http.NewResponseController(w).Flush()
	}))
	h.ServeHTTP(flushErrorWriter{httptest.NewRecorder()}, httptest.NewRequest("GET", "/", nil))
	if !errors.Is(got, errFlush) {
		t.Errorf("ResponseController.Flush through Wrap: %v, want %v", got, errFlush)
	}
}

var errFlush = errors.New("flush failed")

type flushErrorWriter struct{ *httptest.ResponseRecorder }

func (flushErrorWriter) FlushError() error { return errFlush }

// TestWrapKeepsStringWriter: through Wrap, a handler finds io.StringWriter
// where the server's writer has it (net/http's do, so io.WriteString
// copies no string into a new slice), the call reaches the server's
// writer, and a WriteString is a first write: 200, after which a status is
// too late.
func TestWrapKeepsStringWriter(t *testing.T) {
	t.Parallel()
	var real bool
	srv := httptest.NewServer(NewThrottle(ThrottleConfig{}).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, real = w.(io.StringWriter)
	})))
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	srv.Close()
	if !real {
		t.Error("through Wrap, net/http's writer is no io.StringWriter")
	}

	th := NewThrottle(ThrottleConfig{Burst: 1, Interval: time.Hour})
	h := th.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw, ok := w.(io.StringWriter)
		if !ok {
			t.Error("through Wrap, httptest's recorder is no io.StringWriter")
			return
		}
		sw.WriteString("hello")
		w.WriteHeader(401) // too late: 200 was sent
	}))
	for range 2 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(stringWriter{rec}, httptest.NewRequest("GET", "/", nil))
		if rec.Code != 200 || rec.Body.String() != "hello" {
			t.Errorf("the server's writer got %d %q, want 200 hello", rec.Code, rec.Body)
		}
	}
	if ok, _ := th.Allow(ResolveClientIP(httptest.NewRequest("GET", "/", nil), nil)); !ok {
		t.Error("a response begun by WriteString counted as failed")
	}
}

// stringWriter is a ResponseWriter with WriteString and no other optional
// interface.
type stringWriter struct{ rec *httptest.ResponseRecorder }

func (w stringWriter) Header() http.Header               { return w.rec.Header() }
func (w stringWriter) WriteHeader(code int)              { w.rec.WriteHeader(code) }
func (w stringWriter) Write(p []byte) (int, error)       { return w.rec.Write(p) }
func (w stringWriter) WriteString(s string) (int, error) { return w.rec.WriteString(s) }
