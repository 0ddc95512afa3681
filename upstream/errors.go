package upstream

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/tlsrelay/tlsrelay/internal/textesc"
)

// Error is a failed step of a delivery attempt. It is temporary unless Perm
// is set; delivery.Temporary reads that through Permanent.
type Error struct {
	Op   string // dial|tls|greeting|ehlo|starttls|auth|mail|rcpt|data|config
	Code int    // the SMTP reply code, 0 if the server gave no reply
	Perm bool   // retrying this provider cannot help
	Err  error  // the cause; a *smtp.SMTPError when the server replied
}

// Error is safe for a terminal: the server's text in it is escaped
// (cleanText), whether it came as a reply or inside another error (a
// textproto.ProtocolError quotes the line it could not parse).
func (e *Error) Error() string {
	var se *smtp.SMTPError
	if errors.As(e.Err, &se) && e.Err == error(se) {
		return e.Op + ": " + replyText(se)
	}
	return e.Op + ": " + cleanText(e.Err.Error())
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Permanent reports whether retrying cannot help (delivery.Temporary).
func (e *Error) Permanent() bool { return e.Perm }

// SMTPCode returns the server's reply code, or 0.
func (e *Error) SMTPCode() int { return e.Code }

// reply returns the server's reply as one line, or "" if there was none.
func (e *Error) reply() string {
	var se *smtp.SMTPError
	if errors.As(e.Err, &se) {
		return replyText(se)
	}
	return ""
}

// replyErr classifies the outcome of MAIL, RCPT or DATA (op). A reply of
// 5yz is permanent, except 552 to RCPT, which RFC 5321 4.5.3.1.10 says to
// treat as temporary (too many recipients). Every other failure, with a 4yz
// reply, an unexpected code or no reply at all, is temporary.
func replyErr(op string, err error) *Error {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return &Error{Op: op, Err: err}
	}
	perm := se.Code/100 == 5 && (op != "rcpt" || se.Code != 552)
	return &Error{Op: op, Code: se.Code, Perm: perm, Err: se}
}

// setupErr wraps a failure before MAIL (greeting, EHLO, STARTTLS, AUTH):
// always temporary, whatever the code (docs/design.md, "Upstream error classes").
func setupErr(op string, err error) *Error {
	e := &Error{Op: op, Err: err}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		e.Code = se.Code
	}
	return e
}

// replyText renders a go-smtp reply as "550 5.1.1 text", on one line, its
// text escaped (cleanText).
func replyText(se *smtp.SMTPError) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%03d", se.Code)
	if c := se.EnhancedCode; c != smtp.EnhancedCodeNotSet && c != smtp.NoEnhancedCode {
		fmt.Fprintf(&b, " %d.%d.%d", c[0], c[1], c[2])
	}
	if se.Message != "" {
		b.WriteString(" " + cleanText(oneLine(se.Message)))
	}
	return b.String()
}

// oneLine joins the lines of a multi-line reply with spaces.
func oneLine(s string) string {
	return strings.ReplaceAll(s, "\n", " ")
}

// cleanText returns s, text an upstream server wrote, with what a terminal
// would take as a command escaped (internal/textesc: "\x1b", "\u202e"), so
// that no raw ESC or OSC sequence from a hostile server reaches a log, the
// spool's last_error or an operator's terminal.
func cleanText(s string) string { return textesc.Escape(s) }
