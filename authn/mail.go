package authn

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"net/mail"
	"strings"
	"sync/atomic"
	texttemplate "text/template"
	"time"
	"unicode"
)

// MailMessage is one mail the Authenticator sends: a verification or a
// password reset link. Its fields are checked before a Mailer sees them:
// To is one plain address (no name, no line break), Subject one line.
type MailMessage struct {
	To      string // the recipient's address
	Subject string
	Text    string // the plain-text body
	HTML    string // the HTML body; "" for none
}

// Mailer sends mail: Config.Mailer. Package
// github.com/minimost/minimost/authn/smtp has one that talks to an SMTP
// server; an application may give its own (an HTTP mail API, a test
// double). Send is called from the Authenticator's mail queue, never in a
// request: it may take its time, within ctx, and a failed Send is tried
// again a few times (see RecoveryConfig.MailAttempts). A Mailer must not
// log the message: its body holds a link that works as a password.
type Mailer interface {
	Send(ctx context.Context, m MailMessage) error
}

// MailData is what the mail templates are executed with.
type MailData struct {
	AppName  string // HTTPConfig.AppName, or ""
	Username string // the account the mail is about
	Address  string // the recipient's address
	Link     string // the link to follow, built from HTTPConfig.BaseURL
	// Expires says how long the link works, in words ("30 minutes").
	Expires string
}

// MailTemplates replace the built-in mails. Each text template gives the
// plain-text body and may define a template "subject" (one line); each
// HTML template gives the HTML body. A nil field keeps the built-in one.
type MailTemplates struct {
	ResetText  *texttemplate.Template
	ResetHTML  *htmltemplate.Template
	VerifyText *texttemplate.Template
	VerifyHTML *htmltemplate.Template
}

//go:embed templates/mail/*
var mailFiles embed.FS

// The built-in mail templates, each file a set of its own (each text one
// defines its "subject"). Parsing embedded, fixed files cannot fail at run
// time without failing every test first.
var (
	builtinResetText  = texttemplate.Must(texttemplate.ParseFS(mailFiles, "templates/mail/reset.txt"))
	builtinVerifyText = texttemplate.Must(texttemplate.ParseFS(mailFiles, "templates/mail/verify.txt"))
	builtinResetHTML  = htmltemplate.Must(htmltemplate.ParseFS(mailFiles, "templates/mail/reset.html"))
	builtinVerifyHTML = htmltemplate.Must(htmltemplate.ParseFS(mailFiles, "templates/mail/verify.html"))
)

// mailTemplates are the templates in use, defaults applied.
type mailTemplates struct {
	resetText, verifyText *texttemplate.Template
	resetHTML, verifyHTML *htmltemplate.Template
}

func newMailTemplates(t MailTemplates) mailTemplates {
	m := mailTemplates{t.ResetText, t.VerifyText, t.ResetHTML, t.VerifyHTML}
	if m.resetText == nil {
		m.resetText = builtinResetText
	}
	if m.verifyText == nil {
		m.verifyText = builtinVerifyText
	}
	if m.resetHTML == nil {
		m.resetHTML = builtinResetHTML
	}
	if m.verifyHTML == nil {
		m.verifyHTML = builtinVerifyHTML
	}
	return m
}

// render makes the message of a mail to data.Address from a text and an
// HTML template, its subject from the text template's "subject" (or
// subject when it has none).
func renderMail(text *texttemplate.Template, html *htmltemplate.Template, subject string, data MailData) (MailMessage, error) {
	m := MailMessage{To: data.Address, Subject: subject}
	var b bytes.Buffer
	if s := text.Lookup("subject"); s != nil {
		if err := s.Execute(&b, data); err != nil {
			return m, fmt.Errorf("authn: mail subject: %w", err)
		}
		m.Subject = strings.TrimSpace(b.String())
		b.Reset()
	}
	if err := text.Execute(&b, data); err != nil {
		return m, fmt.Errorf("authn: mail text: %w", err)
	}
	m.Text = b.String()
	b.Reset()
	if html != nil {
		if err := html.Execute(&b, data); err != nil {
			return m, fmt.Errorf("authn: mail HTML: %w", err)
		}
		m.HTML = b.String()
	}
	if strings.ContainsFunc(m.Subject, unicode.IsControl) || m.Subject == "" {
		return m, errors.New("authn: mail subject is empty or has a control character")
	}
	return m, nil
}

// ErrInvalidEmail: an address that is not one plain address
// ("name@example.com": no display name, no comment, no line break, at most
// 254 bytes).
var ErrInvalidEmail = errors.New("authn: invalid email address")

// maxAddressBytes is the longest address accepted (RFC 5321's path, less
// the angle brackets).
const maxAddressBytes = 254

// CheckEmail reports whether address is one plain address that the
// Authenticator accepts: an error wrapping ErrInvalidEmail otherwise. It
// does not trim it.
func CheckEmail(address string) error {
	if address == "" || len(address) > maxAddressBytes {
		return fmt.Errorf("%w: empty or over %d bytes", ErrInvalidEmail, maxAddressBytes)
	}
	if strings.ContainsFunc(address, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) || r == unicode.ReplacementChar }) {
		return fmt.Errorf("%w: a space or control character", ErrInvalidEmail)
	}
	parsed, err := mail.ParseAddress(address)
	if err != nil || parsed.Name != "" || parsed.Address != address {
		return fmt.Errorf("%w: not a plain address", ErrInvalidEmail)
	}
	local, domain, ok := strings.Cut(address, "@")
	if !ok || local == "" || domain == "" || strings.ContainsAny(local+domain, `"()<>[]\,;:`) {
		return fmt.Errorf("%w: not a plain address", ErrInvalidEmail)
	}
	return nil
}

// addressKey is what makes two addresses one: the address lower-cased.
func addressKey(address string) string { return strings.ToLower(address) }

// mailQueue runs the mail jobs of requests after their answer: a bounded
// queue and one worker, so that neither the mail server's speed nor its
// absence shows in any answer. A job that finds the queue full is dropped
// and logged; nothing waits for room.
type mailQueue struct {
	jobs     chan mailJob
	dropped  atomic.Int64
	lastWarn atomic.Int64 // Unix nanoseconds of the last "queue full" line
}

// mailJob is one job of the queue: what it does (for the log) and the work.
type mailJob struct {
	what string
	run  func(context.Context)
}

// enqueue adds a job without waiting: false when the queue is full (or
// there is none), which it logs at most once every 10 seconds.
func (a *Authenticator) enqueue(ctx context.Context, what string, run func(context.Context)) bool {
	q := a.mail
	if q == nil {
		return false
	}
	select {
	case q.jobs <- mailJob{what, run}:
		return true
	default:
	}
	n := q.dropped.Add(1)
	now := time.Now().UnixNano()
	if last := q.lastWarn.Load(); now-last >= int64(10*time.Second) && q.lastWarn.CompareAndSwap(last, now) {
		a.logger.WarnContext(ctx, "authn: mail queue full; a mail was not sent", "job", what, "dropped_total", n, "queue_size", cap(q.jobs))
	}
	return false
}

// runMail is the queue's worker, until Close.
func (a *Authenticator) runMail(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			if n := len(a.mail.jobs); n > 0 {
				a.logger.Warn("authn: closing with mail not sent", "jobs", n)
			}
			return
		case job := <-a.mail.jobs:
			job.run(ctx)
		}
	}
}

// deliver sends m through the Mailer, trying again after a failure up to
// MailAttempts times in all, waiting MailRetryDelay, then twice as long,
// between tries, each try within MailTimeout. It logs each failure with
// the error, never the message (its body holds the link).
func (a *Authenticator) deliver(ctx context.Context, what, username string, m MailMessage) error {
	delay := a.recovery.retryDelay
	var err error
	for attempt := 1; attempt <= a.recovery.attempts; attempt++ {
		tctx, cancel := context.WithTimeout(ctx, a.recovery.sendTimeout)
		err = a.mailer.Send(tctx, m)
		cancel()
		if err == nil {
			a.stats.mailSent.Add(1)
			a.logger.InfoContext(ctx, "authn: mail sent", "mail", what, "user", username)
			return nil
		}
		last := attempt == a.recovery.attempts
		a.logger.WarnContext(ctx, "authn: sending mail failed", "mail", what, "user", username,
			"attempt", attempt, "of", a.recovery.attempts, "final", last, "error", err)
		if last {
			break
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			a.stats.mailFailed.Add(1)
			return ctx.Err()
		case <-t.C:
		}
		delay *= 2
	}
	a.stats.mailFailed.Add(1)
	a.logger.ErrorContext(ctx, "authn: mail not sent after every attempt", "mail", what, "user", username, "attempts", a.recovery.attempts)
	return err
}
