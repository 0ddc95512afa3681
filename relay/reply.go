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
	errShuttingDown   = errors.New("shutting down")
	errNestedMail     = errors.New("MAIL inside an open transaction")
	errNoMail         = errors.New("command needs MAIL first")
	errNoRcpt         = errors.New("DATA without recipients")
	errBadSender      = errors.New("bad sender address")
	errBadRecipient   = errors.New("bad recipient address")
	errTooManyRcpts   = errors.New("too many recipients")
	errNoRoute        = errors.New("no route for recipient")
	errBareLineEnding = errors.New("bare CR or LF")
	errSessionOver    = errors.New("session is over") // a command go-smtp runs after the close; no one reads the reply
	errBareCR         = wrapErr(errBareLineEnding, "bare CR")
	errBareLF         = wrapErr(errBareLineEnding, "bare LF")
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
	{is(smtp.ErrTooLongLine), 554, smtp.EnhancedCode{5, 6, 0}, "message has a line that is too long"},
	{isReadTimeout, 421, smtp.EnhancedCode{4, 4, 2}, "timeout, closing connection"},
	{is(errShuttingDown), 421, smtp.EnhancedCode{4, 3, 2}, "shutting down, try again later"},
	{is(errAccessDenied), 554, smtp.EnhancedCode{5, 7, 1}, "access denied"},
	{is(errTooManyConns), 421, smtp.EnhancedCode{4, 7, 0}, "too many connections, try again later"},
	{is(errNestedMail), 503, smtp.EnhancedCode{5, 5, 1}, "nested MAIL command"},
	{is(errNoMail), 503, smtp.EnhancedCode{5, 5, 1}, "need MAIL command first"},
	{is(errNoRcpt), 503, smtp.EnhancedCode{5, 5, 1}, "need RCPT command first"},
	{is(errBadSender), 501, smtp.EnhancedCode{5, 1, 7}, "bad sender address syntax"},
	{is(errBadRecipient), 501, smtp.EnhancedCode{5, 1, 3}, "bad recipient address syntax"},
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
