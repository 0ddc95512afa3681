package relay

import (
	"context"
	"errors"
	"net"
	"os"

	"github.com/emersion/go-smtp"
)

// Errors that sessions and the connection guard hand to reply. They carry
// details for the log (wrapped with %w); the client only ever sees the
// generic text of the reply they map to.
var (
	errAccessDenied   = errors.New("client address not in listen.allowed_networks")
	errTooManyConns   = errors.New("too many concurrent connections")
	errTooManyConnsIP = errors.New("too many concurrent connections from one client address")
	errShuttingDown   = errors.New("shutting down")
	errNestedMail     = errors.New("MAIL inside an open transaction")
	errNoMail         = errors.New("command needs MAIL first")
	errNoRcpt         = errors.New("DATA without recipients")
	errNeedHelo       = errors.New("MAIL after STARTTLS without a new EHLO")
	errBadSender      = errors.New("bad sender address")
	errBadRecipient   = errors.New("bad recipient address")
	errNonASCII       = errors.New("non-ASCII address without SMTPUTF8")
	errSenderDenied   = errors.New("sender not allowed")
	errRcptDenied     = errors.New("recipient not allowed")
	errTooManyRcpts   = errors.New("too many recipients")
	errNoRoute        = errors.New("no route for recipient")
	errBareLineEnding = errors.New("bare CR or LF")
	errHeaderTooBig   = errors.New("message header too large")
	errMailLoop       = errors.New("too many Received headers")
	errSessionOver    = errors.New("session is over") // a command go-smtp runs after the close; no one reads the reply
	errBareCR         = wrapErr(errBareLineEnding, "bare CR")
	errBareLF         = wrapErr(errBareLineEnding, "bare LF")

	// The connection guard's (guard.go).
	errBareLFCommand   = errors.New("command line ends in a bare LF")
	errCommandTooLong  = errors.New("command line longer than 512 bytes")
	errLineTooLong     = errors.New("line longer than listen.max_line_bytes")
	errCrossProtocol   = errors.New("cross-protocol request")
	errTooManyErrors   = errors.New("too many errors")
	errTooManyCommands = errors.New("too many commands in one session")
	errSessionExpired  = errors.New("session lasted listen.session_timeout")
	errTLSHandshake    = errors.New("inbound TLS handshake failed")

	// Inbound AUTH's (auth.go).
	errAuthRequired    = errors.New("MAIL before AUTH")
	errAuthNotOffered  = errors.New("AUTH without listen.users")
	errAuthNeedsTLS    = errors.New("plaintext AUTH from a client that is not on loopback")
	errAuthMechanism   = errors.New("unknown AUTH mechanism")
	errAuthFailed      = errors.New("wrong user name or password")
	errTooManyFailures = errors.New("too many failed logins")
)

// replyRule maps the errors that match to one reply.
type replyRule struct {
	match func(error) bool
	code  int
	enh   smtp.EnhancedCode
	text  string
}

// replyRules is the whole table of replies the relay picks, first match wins.
// Errors caused by what the client sent come first: a spool error that comes
// from a failed read of the body is the client's fault, not the disk's.
var replyRules = []replyRule{
	{is(errBareLineEnding), 550, smtp.EnhancedCode{5, 6, 0}, "message contains bare CR or LF; lines must end with CRLF"},
	{is(smtp.ErrDataTooLarge), 552, smtp.EnhancedCode{5, 3, 4}, "message exceeds the maximum size"},
	{is(errHeaderTooBig), 552, smtp.EnhancedCode{5, 3, 4}, "message header exceeds the maximum size"},
	{is(errMailLoop), 554, smtp.EnhancedCode{5, 4, 6}, "too many Received headers: mail loop"},
	{is(smtp.ErrTooLongLine), 554, smtp.EnhancedCode{5, 6, 0}, "message has a line that is too long"},
	{is(errSessionExpired), 421, smtp.EnhancedCode{4, 4, 2}, "session time limit reached, closing connection"},
	{isReadTimeout, 421, smtp.EnhancedCode{4, 4, 2}, "timeout, closing connection"},
	{is(errShuttingDown), 421, smtp.EnhancedCode{4, 3, 2}, "shutting down, try again later"},
	{is(errAccessDenied), 554, smtp.EnhancedCode{5, 7, 1}, "access denied"},
	{is(errTooManyConns), 421, smtp.EnhancedCode{4, 7, 0}, "too many connections, try again later"},
	{is(errTooManyConnsIP), 421, smtp.EnhancedCode{4, 7, 0}, "too many connections from your address, try again later"},
	{is(errCrossProtocol), 554, smtp.EnhancedCode{5, 7, 0}, "this is an SMTP server, closing connection"},
	{is(errTooManyErrors), 421, smtp.EnhancedCode{4, 7, 0}, "too many errors, closing connection"},
	{is(errTooManyCommands), 421, smtp.EnhancedCode{4, 7, 0}, "too many commands, closing connection"},
	{is(errBareLFCommand), 500, smtp.EnhancedCode{5, 5, 2}, "command lines must end with CRLF"},
	{is(errCommandTooLong), 500, smtp.EnhancedCode{5, 5, 2}, "line too long"},
	{is(errLineTooLong), 500, smtp.EnhancedCode{5, 5, 2}, "line too long, closing connection"},
	{is(errNestedMail), 503, smtp.EnhancedCode{5, 5, 1}, "nested MAIL command"},
	{is(errNoMail), 503, smtp.EnhancedCode{5, 5, 1}, "need MAIL command first"},
	{is(errNoRcpt), 503, smtp.EnhancedCode{5, 5, 1}, "need RCPT command first"},
	{is(errNeedHelo), 503, smtp.EnhancedCode{5, 5, 1}, "send EHLO again after STARTTLS"},
	{is(errAuthRequired), 530, smtp.EnhancedCode{5, 7, 0}, "authentication required"},
	{is(errAuthNotOffered), 502, smtp.EnhancedCode{5, 5, 1}, "AUTH is not offered here"},
	{is(errAuthNeedsTLS), 538, smtp.EnhancedCode{5, 7, 11}, "encryption required: use STARTTLS before AUTH"},
	{is(errAuthMechanism), 504, smtp.EnhancedCode{5, 5, 4}, "unrecognized authentication mechanism"},
	{is(errAuthFailed), 535, smtp.EnhancedCode{5, 7, 8}, "authentication credentials invalid"},
	{is(errTooManyFailures), 421, smtp.EnhancedCode{4, 7, 0}, "too many failed logins, try again later"},
	{is(errNonASCII), 553, smtp.EnhancedCode{5, 6, 7}, "non-ASCII addresses need SMTPUTF8, which is not offered"},
	{is(errBadSender), 501, smtp.EnhancedCode{5, 1, 7}, "bad sender address syntax"},
	{is(errBadRecipient), 501, smtp.EnhancedCode{5, 1, 3}, "bad recipient address syntax"},
	{is(errSenderDenied), 550, smtp.EnhancedCode{5, 7, 1}, "sender not allowed"},
	{is(errRcptDenied), 550, smtp.EnhancedCode{5, 7, 1}, "relaying denied: recipient not allowed"},
	{is(errTooManyRcpts), 452, smtp.EnhancedCode{4, 5, 3}, "too many recipients for one message"},
	{is(errNoRoute), 550, smtp.EnhancedCode{5, 7, 1}, "relaying denied: no route for this recipient"},
	{isFull, 452, smtp.EnhancedCode{4, 3, 1}, "insufficient system storage, try again later"},
}

// replyDefault answers every other error: spool and disk trouble, a client
// gone mid-DATA, a bug. It is temporary on purpose: a 5xx would make a legacy
// app drop the mail (go-smtp's own default for Data errors is 554, G8).
var replyDefault = replyRule{nil, 451, smtp.EnhancedCode{4, 3, 0}, "local error, try again later"}

// reply is the only place that picks a reply code. Every Session method and
// every reply the connection guard writes goes through it. The text is fixed
// per rule: err's own text goes to the log, never to the client.
// reply(nil) is nil.
func reply(err error) *smtp.SMTPError {
	if err == nil {
		return nil
	}
	r := replyDefault
	for _, rule := range replyRules {
		if rule.match(err) {
			r = rule
			break
		}
	}
	return &smtp.SMTPError{Code: r.code, EnhancedCode: r.enh, Message: r.text}
}

// endsSession reports whether the reply to err must be the last one on the
// connection: after it the stream may be out of sync (a read timeout in
// DATA, a line over the limit) or we are leaving (421).
func endsSession(err error) bool {
	return reply(err).Code == 421 || errors.Is(err, smtp.ErrTooLongLine)
}

func is(target error) func(error) bool {
	return func(err error) bool { return errors.Is(err, target) }
}

// isReadTimeout matches a deadline hit on the client connection. A context
// deadline (the spool's) also claims Timeout() and is not one of them.
func isReadTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && !errors.Is(err, context.DeadlineExceeded)
}

// isFull matches the spool's "over budget" error: one with Full() true.
func isFull(err error) bool {
	var f interface{ Full() bool }
	return errors.As(err, &f) && f.Full()
}

// detailError adds a detail for the log to one of the errors above.
type detailError struct {
	err    error
	detail string
}

func wrapErr(err error, detail string) error { return &detailError{err, detail} }

func (e *detailError) Error() string { return e.err.Error() + ": " + e.detail }
func (e *detailError) Unwrap() error { return e.err }
