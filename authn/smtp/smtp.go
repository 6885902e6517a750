// Package smtp sends the mails of package authn's account recovery
// through an SMTP server: a [Sender] is an authn.Mailer.
//
//	mailer, err := smtp.New(smtp.Config{
//		Addr:     "smtp.example.com:587",
//		From:     "Example <no-reply@example.com>",
//		Username: "no-reply@example.com",
//		Password: os.Getenv("SMTP_PASSWORD"),
//	})
//	// authn.Config{Mailer: mailer, HTTP: authn.HTTPConfig{BaseURL: "https://example.com"}}
//
// It speaks STARTTLS (required, the default: port 587) or TLS from the
// first byte (ImplicitTLS: port 465), and AUTH with the strongest
// mechanism the server offers. It refuses, in New, to send credentials
// over a connection without TLS to any host but a loopback one. Each Send
// is one connection, bounded by Config.Timeout and its context; the
// Authenticator's mail queue tries a failed mail again a bounded number of
// times. The SMTP work is done by github.com/wneessen/go-mail, a
// maintained package, rather than net/smtp, which is frozen, builds no
// MIME message and takes no context.
//
// Package authn does not import this package: a program that sends no
// mail links no SMTP code.
package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	netmail "net/mail"
	"net/netip"
	"strconv"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/minimost/minimost/authn"
)

// Security says how a Sender protects its connection.
type Security int

const (
	// StartTLS connects in plain text and requires STARTTLS before
	// anything else is sent: a server that does not offer it is refused.
	// The default; usually port 587.
	StartTLS Security = iota
	// ImplicitTLS speaks TLS from the first byte; usually port 465.
	ImplicitTLS
	// Plaintext uses no TLS. With credentials it is refused (by New) for
	// any host but a loopback one (localhost, 127.0.0.0/8, ::1): a relay
	// on the same machine, or a test server.
	Plaintext
)

// String names s as the examples' -smtp-security flag does.
func (s Security) String() string {
	switch s {
	case StartTLS:
		return "starttls"
	case ImplicitTLS:
		return "tls"
	case Plaintext:
		return "none"
	}
	return "Security(" + strconv.Itoa(int(s)) + ")"
}

// ParseSecurity reads "starttls", "tls" or "none" (String's names).
func ParseSecurity(s string) (Security, error) {
	for _, v := range []Security{StartTLS, ImplicitTLS, Plaintext} {
		if s == v.String() {
			return v, nil
		}
	}
	return 0, fmt.Errorf("smtp: security %q: want starttls, tls or none", s)
}

// Config configures a Sender.
type Config struct {
	// Addr is the server's host:port.
	Addr string
	// From is the sender's address, as a mail's From header shows it:
	// "no-reply@example.com" or "Example <no-reply@example.com>".
	From string
	// Username and Password, when Username is set, authenticate (AUTH).
	Username, Password string
	// Security is how the connection is protected. The zero value is
	// StartTLS.
	Security Security
	// TLSConfig, when set, is used for TLS (for a private CA: its
	// RootCAs); its ServerName defaults to Addr's host. nil means the
	// system's roots, TLS 1.2 at least.
	TLSConfig *tls.Config
	// Timeout bounds each network operation of a Send. 0 means 30
	// seconds.
	Timeout time.Duration
	// HELO is the name the Sender gives in EHLO. "" means the machine's
	// host name.
	HELO string
}

// Sender sends mail through one SMTP server. It is safe for concurrent
// use; each Send makes its own connection.
type Sender struct {
	cfg  Config
	host string
	port int
}

// New checks cfg and returns a Sender. It connects to nothing. It fails
// for an Addr that is not host:port, a From that is not an address, and
// credentials with Plaintext to a host that is not a loopback one.
func New(cfg Config) (*Sender, error) {
	host, portText, err := net.SplitHostPort(cfg.Addr)
	if err != nil || host == "" {
		return nil, fmt.Errorf("smtp: Addr %q: want host:port", cfg.Addr)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 1 || port > 65535 {
		return nil, fmt.Errorf("smtp: Addr %q: bad port", cfg.Addr)
	}
	if _, err := netmail.ParseAddress(cfg.From); err != nil || strings.ContainsAny(cfg.From, "\r\n") {
		return nil, fmt.Errorf("smtp: From %q: not an address", cfg.From)
	}
	switch cfg.Security {
	case StartTLS, ImplicitTLS:
	case Plaintext:
		if cfg.Username != "" && !isLoopback(host) {
			return nil, fmt.Errorf("smtp: refusing to send credentials in plain text to %s: use StartTLS or ImplicitTLS (Plaintext with credentials is for a loopback host only)", host)
		}
	default:
		return nil, fmt.Errorf("smtp: unknown Security %d", cfg.Security)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	return &Sender{cfg: cfg, host: host, port: port}, nil
}

// isLoopback reports whether host names this machine: localhost or a
// loopback address, written as one (no name is resolved).
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// Send sends m, as a plain-text mail, or multipart/alternative with its
// HTML, in one connection, within ctx and Config.Timeout. An error may
// quote the server; it never holds the message or the password.
func (s *Sender) Send(ctx context.Context, m authn.MailMessage) error {
	msg, err := s.message(m)
	if err != nil {
		return err
	}
	client, err := gomail.NewClient(s.host, s.options()...)
	if err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	if err := client.DialAndSendWithContext(ctx, msg); err != nil {
		return fmt.Errorf("smtp: sending to %s through %s: %w", domainOf(m.To), s.cfg.Addr, err)
	}
	return nil
}

// options are the go-mail options of s's connection.
func (s *Sender) options() []gomail.Option {
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.cfg.TLSConfig != nil {
		tlsConfig = s.cfg.TLSConfig.Clone()
	}
	if tlsConfig.ServerName == "" {
		tlsConfig.ServerName = s.host
	}
	opts := []gomail.Option{
		gomail.WithPort(s.port),
		gomail.WithTimeout(s.cfg.Timeout),
		gomail.WithTLSConfig(tlsConfig),
	}
	switch s.cfg.Security {
	case StartTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case ImplicitTLS:
		opts = append(opts, gomail.WithSSL())
	case Plaintext:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	}
	if s.cfg.HELO != "" {
		opts = append(opts, gomail.WithHELO(s.cfg.HELO))
	}
	if s.cfg.Username != "" {
		auth := gomail.SMTPAuthAutoDiscover
		if s.cfg.Security == Plaintext {
			// Only to a loopback host (New checked): go-mail's PLAIN
			// would refuse 127.0.0.2 as not local.
			auth = gomail.SMTPAuthPlainNoEnc
		}
		opts = append(opts, gomail.WithSMTPAuth(auth),
			gomail.WithUsername(s.cfg.Username), gomail.WithPassword(s.cfg.Password))
	}
	return opts
}

// message builds the MIME message of m.
func (s *Sender) message(m authn.MailMessage) (*gomail.Msg, error) {
	if err := authn.CheckEmail(m.To); err != nil {
		return nil, fmt.Errorf("smtp: recipient: %w", err)
	}
	if m.Subject == "" || strings.ContainsAny(m.Subject, "\r\n") {
		return nil, errors.New("smtp: the subject is empty or has a line break")
	}
	msg := gomail.NewMsg()
	if err := msg.From(s.cfg.From); err != nil {
		return nil, fmt.Errorf("smtp: From: %w", err)
	}
	if err := msg.To(m.To); err != nil {
		return nil, fmt.Errorf("smtp: To: %w", err)
	}
	msg.Subject(m.Subject)
	msg.SetDate()
	msg.SetMessageID()
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	if m.HTML != "" {
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	}
	return msg, nil
}

// domainOf is the domain of an address, for errors and logs: the
// recipient's mailbox is no business of theirs.
func domainOf(address string) string {
	if i := strings.LastIndexByte(address, '@'); i >= 0 {
		return address[i+1:]
	}
	return ""
}
