// Package testsmtp runs a real SMTP server for tests (built on
// github.com/emersion/go-smtp): on a free port of 127.0.0.1, optionally
// with STARTTLS or TLS from the first byte and AUTH PLAIN, keeping every
// message it accepts so that a test can read the links mailed.
package testsmtp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Config says what the server offers.
type Config struct {
	// StartTLS offers STARTTLS; ImplicitTLS speaks TLS from the first
	// byte. Neither: plain text.
	StartTLS, ImplicitTLS bool
	// Username and Password, when set, are required (AUTH PLAIN).
	Username, Password string
	// FailFirst rejects the first FailFirst messages with a temporary
	// error (451).
	FailFirst int
	// Delay holds each message this long before accepting it.
	Delay time.Duration
}

// Message is one message the server accepted.
type Message struct {
	From string
	To   []string
	Data []byte
	// User is the name that authenticated, or "".
	User string
	// TLS is true when the message came over TLS.
	TLS bool
}

// Server is a running SMTP server.
type Server struct {
	// Addr is its host:port on 127.0.0.1.
	Addr string
	// RootCAs trusts its certificate (for "127.0.0.1" and "localhost").
	RootCAs *x509.CertPool

	cfg    Config
	srv    *smtp.Server
	mu     sync.Mutex
	msgs   []Message
	failed int
	conns  int
	more   chan struct{} // closed and replaced at each message
}

// Start runs a server until the test ends.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func start(cfg Config) (*Server, error) {
	s := &Server{cfg: cfg, more: make(chan struct{})}
	s.srv = smtp.NewServer(smtp.BackendFunc(s.newSession))
	s.srv.Domain = "localhost"
	s.srv.ReadTimeout, s.srv.WriteTimeout = 10*time.Second, 10*time.Second
	s.srv.MaxMessageBytes = 1 << 20
	s.srv.ErrorLog = quietLog{}
	var tlsConfig *tls.Config
	if cfg.StartTLS || cfg.ImplicitTLS {
		cert, pool, err := selfSigned()
		if err != nil {
			return nil, err
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		s.RootCAs = pool
		s.srv.TLSConfig = tlsConfig
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if cfg.ImplicitTLS {
		l = tls.NewListener(l, tlsConfig)
	}
	s.Addr = l.Addr().String()
	go s.srv.Serve(l)
	return s, nil
}

// Close stops the server: later connections are refused.
func (s *Server) Close() error { return s.srv.Close() }

// Messages returns the messages accepted so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Connections counts the connections the server got.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Wait waits until the server has accepted n messages, within timeout,
// and returns them; it fails the test otherwise.
func (s *Server) Wait(t testing.TB, n int, timeout time.Duration) []Message {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		msgs, more := append([]Message(nil), s.msgs...), s.more
		s.mu.Unlock()
		if len(msgs) >= n {
			return msgs
		}
		select {
		case <-more:
		case <-deadline.C:
			t.Fatalf("testsmtp: %d messages after %v, want %d", len(msgs), timeout, n)
		}
	}
}

// WaitContext is Wait with a context instead of a timeout and no test.
func (s *Server) WaitContext(ctx context.Context, n int) ([]Message, error) {
	for {
		s.mu.Lock()
		msgs, more := append([]Message(nil), s.msgs...), s.more
		s.mu.Unlock()
		if len(msgs) >= n {
			return msgs, nil
		}
		select {
		case <-more:
		case <-ctx.Done():
			return msgs, ctx.Err()
		}
	}
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	s.mu.Lock()
	s.conns++
	s.mu.Unlock()
	_, isTLS := c.TLSConnectionState()
	return &session{s: s, tls: isTLS || s.cfg.ImplicitTLS, conn: c}, nil
}

type session struct {
	s    *Server
	conn *smtp.Conn
	tls  bool
	user string
	from string
	to   []string
}

func (ss *session) AuthMechanisms() []string {
	if ss.s.cfg.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != ss.s.cfg.Username || password != ss.s.cfg.Password {
			return errors.New("invalid credentials")
		}
		ss.user = username
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.cfg.Username != "" && ss.user == "" {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if ss.s.cfg.Delay > 0 {
		time.Sleep(ss.s.cfg.Delay)
	}
	_, isTLS := ss.conn.TLSConnectionState()
	s := ss.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed < s.cfg.FailFirst {
		s.failed++
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	s.msgs = append(s.msgs, Message{From: ss.from, To: ss.to, Data: data, User: ss.user, TLS: isTLS || s.cfg.ImplicitTLS})
	close(s.more)
	s.more = make(chan struct{})
	return nil
}

func (ss *session) Reset()        { ss.from, ss.to = "", nil }
func (ss *session) Logout() error { return nil }

// quietLog drops the server's log of failed connections (a test that
// closes the server on purpose would print them).
type quietLog struct{}

func (quietLog) Printf(string, ...any) {}
func (quietLog) Println(...any)        {}

// Parts returns the subject and the plain-text and HTML bodies of m,
// decoded.
func (m Message) Parts() (subject, text, html string, err error) {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return "", "", "", err
	}
	subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		return "", "", "", err
	}
	err = walk(msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body, func(ct, body string) {
		switch ct {
		case "text/plain":
			text = body
		case "text/html":
			html = body
		}
	})
	return subject, text, html, err
}

// walk calls f with each leaf part of a MIME body, decoded.
func walk(contentType, encoding string, body io.Reader, f func(ct, body string)) error {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return err
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if err := walk(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p, f); err != nil {
				return err
			}
		}
	}
	if strings.EqualFold(encoding, "quoted-printable") {
		body = quotedprintable.NewReader(body)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	f(mt, string(b))
	return nil
}

var linkPattern = regexp.MustCompile(`https?://[^\s"<>]+token=[A-Za-z0-9_-]+`)

// Link returns the first link with a token in m's plain-text body.
func (m Message) Link() (string, error) {
	_, text, _, err := m.Parts()
	if err != nil {
		return "", err
	}
	link := linkPattern.FindString(text)
	if link == "" {
		return "", errors.New("testsmtp: no link in the message")
	}
	return link, nil
}

// selfSigned makes a certificate for 127.0.0.1, ::1 and localhost, and a
// pool that trusts it.
func selfSigned() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "testsmtp"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool, nil
}
