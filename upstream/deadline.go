package upstream

// Deadlines. Every wait of an attempt has a deadline of its own that bytes
// arriving slowly cannot extend (RFC 5321 4.5.3.2: the timeouts there bound
// the wait for a whole reply, not the gap between two bytes of it):
//
//   - the greeting, whole, within Timeouts.Greeting;
//   - the reply to each command (EHLO, STARTTLS, each AUTH step, MAIL, RCPT,
//     DATA, NOOP), whole, within Timeouts.Command of writing the command;
//   - the reply to the end of data, whole, within Timeouts.DataEnd;
//   - the TCP connect and the TLS handshake, each within Timeouts.Connect;
//   - each write, the body's especially, within writeTimeout of its start (a
//     server that stops reading is cut off);
//   - everything, connect to last reply, within Timeouts.Attempt, however
//     the time is spread.
//
// RSET and QUIT, sent once the outcome is known, wait at most quitTimeout.
// A wait cut off is a temporary error (no reply: Code 0) that names it
// ("upstream greeting not complete after 5m0s"), and the connection is
// closed, never parked (pool.go).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/tlsrelay/tlsrelay/policy"
)

const (
	// writeTimeout bounds each write: a server that takes no more bytes
	// for this long is given up on.
	writeTimeout = 2 * time.Minute
	// tokenTimeout bounds the fetch of an XOAUTH2 access token.
	tokenTimeout = 2 * time.Minute
	// quitTimeout bounds RSET and QUIT after the outcome is known: a server
	// that does not answer them must not hold the worker for long.
	quitTimeout = 5 * time.Second
)

// timeouts returns p's timeouts, the defaults for those it lacks (a Provider
// built by hand), capped by the Client's overrides: Timeout caps every wait
// but the one for the end of data, which DataTimeout caps.
func (c *Client) timeouts(p *policy.Provider) policy.Timeouts {
	t, def := p.Timeouts, policy.DefaultTimeouts
	for _, f := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&t.Connect, def.Connect}, {&t.Greeting, def.Greeting}, {&t.Command, def.Command},
		{&t.DataEnd, def.DataEnd}, {&t.Attempt, def.Attempt},
	} {
		if *f.v <= 0 {
			*f.v = f.def
		}
	}
	if c.Timeout > 0 {
		t.Connect, t.Greeting, t.Command = min(t.Connect, c.Timeout), min(t.Greeting, c.Timeout), min(t.Command, c.Timeout)
	}
	if c.DataTimeout > 0 {
		t.DataEnd = min(t.DataEnd, c.DataTimeout)
	}
	return t
}

// capped is d, or Client.Timeout if that is set and shorter: the bound of
// each write (writeTimeout) and of a token fetch (tokenTimeout).
func (c *Client) capped(d time.Duration) time.Duration {
	if c.Timeout > 0 {
		return min(d, c.Timeout)
	}
	return d
}

// deadlineError is a wait cut off at its deadline. It is a net.Error whose
// Timeout is true, and it wraps the I/O error (os.ErrDeadlineExceeded, or
// net.ErrClosed when the attempt's context closed the connection).
type deadlineError struct {
	msg string // "upstream greeting not complete after 5m0s"
	err error
}

func (e *deadlineError) Error() string {
	if e.err == nil {
		return e.msg
	}
	return e.msg + ": " + e.err.Error()
}
func (e *deadlineError) Unwrap() error   { return e.err }
func (e *deadlineError) Timeout() bool   { return true }
func (e *deadlineError) Temporary() bool { return false }

var _ net.Error = (*deadlineError)(nil)

func notComplete(what string, within time.Duration, err error) *deadlineError {
	return &deadlineError{msg: fmt.Sprintf("%s not complete after %s", what, within), err: err}
}

// attemptLate is a wait cut off by the attempt's deadline.
func attemptLate(what string, within time.Duration, err error) *deadlineError {
	return &deadlineError{msg: fmt.Sprintf("%s not finished after %s", what, within), err: err}
}

// deadlineConn owns the deadlines of an upstream connection. go-smtp's are
// wrong (G11): it clears them after each command, sets none while the body
// is written, and a fixed 5 minutes for the greeting. So the Set*Deadline
// calls from go-smtp and crypto/tls above this conn are ignored, and the
// attempt sets the deadline of each reply before its command (expect) or of
// the reply owed now (await). A read's deadline is that reply's, or the
// attempt's end if sooner; reads never move it, so a server trickling a
// reply a byte at a time is cut off all the same. Only a command written
// moves it (smtpConn.Write calls sent): not a write of crypto/tls, which a
// server could provoke (a TLS 1.3 KeyUpdate) to keep a reply open. Each
// write gets its own progress deadline, now+write. Only the goroutine of the
// attempt (or of the pool, for an idle connection) uses it.
type deadlineConn struct {
	net.Conn
	write time.Duration // each write's bound

	end      time.Time     // the attempt's deadline; zero = none
	endWhat  string        // "attempt", for the error
	endAfter time.Duration // the attempt's whole bound, for the error

	what   string        // the reply waited for: "reply to MAIL FROM"
	within time.Duration // its bound
	readBy time.Time     // when it must be complete; zero = no bound but end
	// next is the reply to each command sent from now on (expect), and
	// nextWithin its bound from the send; next "" = none (await).
	next       string
	nextWithin time.Duration
}

// limit sets the attempt's deadline, end (zero = none), which is after
// (for the error: "attempt not finished after 30m0s") from its start.
func (c *deadlineConn) limit(what string, end time.Time, after time.Duration) {
	c.endWhat, c.end, c.endAfter = what, end, after
}

// await bounds the reply the server owes now (the greeting) or the exchange
// that starts now (a TLS handshake): whole, within of now; our writes do
// not extend it.
func (c *deadlineConn) await(what string, within time.Duration) {
	c.what, c.within, c.readBy, c.next = what, within, time.Now().Add(within), ""
}

// expect bounds the reply to each command sent from now on: whole, within
// of sending it. The deadline of a reply owed already stays.
func (c *deadlineConn) expect(what string, within time.Duration) {
	c.next, c.nextWithin = what, within
	if c.readBy.IsZero() {
		c.what, c.within, c.readBy = what, within, time.Now().Add(within)
	}
}

// sent is called when a command (or part of the body) has been written:
// the reply to it is due within nextWithin of now.
func (c *deadlineConn) sent() {
	if c.next != "" {
		c.what, c.within, c.readBy = c.next, c.nextWithin, time.Now().Add(c.nextWithin)
	}
}

// readDeadline is the sooner of readBy and end (zero = none).
func (c *deadlineConn) readDeadline() time.Time {
	if c.end.IsZero() || (!c.readBy.IsZero() && c.readBy.Before(c.end)) {
		return c.readBy
	}
	return c.end
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(c.readDeadline()); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	if err != nil {
		err = c.late(err, notComplete(c.what, c.within, err))
	}
	return n, err
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	by := time.Now().Add(c.write)
	if !c.end.IsZero() && c.end.Before(by) {
		by = c.end
	}
	if err := c.Conn.SetWriteDeadline(by); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		err = c.late(err, &deadlineError{msg: fmt.Sprintf("upstream not reading: a write made no progress for %s", c.write), err: err})
	}
	return n, err
}

// late names the deadline that cut err off, if one did: the attempt's end
// when it has passed (its context closes the connection: net.ErrClosed),
// else that of this read or write (timeout), else none.
func (c *deadlineConn) late(err error, timeout *deadlineError) error {
	var ne net.Error
	isTimeout := errors.As(err, &ne) && ne.Timeout()
	switch {
	case (isTimeout || errors.Is(err, net.ErrClosed)) && !c.end.IsZero() && !time.Now().Before(c.end):
		return attemptLate(c.endWhat, c.endAfter, err)
	case isTimeout:
		return timeout
	}
	return err
}

func (c *deadlineConn) SetDeadline(time.Time) error      { return nil }
func (c *deadlineConn) SetReadDeadline(time.Time) error  { return nil }
func (c *deadlineConn) SetWriteDeadline(time.Time) error { return nil }

// bound limits the attempt to within from now (RFC 5321 4.5.3.2 bounds each
// wait; this bounds their sum, so that the worker is always freed): on its
// context, whose end closes the connection (connect, adopt), and on its
// conn. what names it in the error ("attempt not finished after 30m0s"),
// which is also the context's cause. Call the CancelFunc when it is over.
func (d *attempt) bound(what string, within time.Duration) context.CancelFunc {
	d.endWhat, d.endAfter, d.end = what, within, time.Now().Add(within)
	ctx, cancel := context.WithDeadlineCause(d.ctx, d.end, attemptLate(what, within, context.DeadlineExceeded))
	d.ctx = ctx
	return cancel
}

// lateErr returns err as cut off by the attempt's deadline if that ended
// the attempt's context and err does not say so already (a dial or a token
// fetch ended by the context), else err.
func (d *attempt) lateErr(err error) error {
	var de, cause *deadlineError
	if d.ctx.Err() == nil || !errors.As(context.Cause(d.ctx), &cause) || errors.As(err, &de) {
		return err
	}
	return attemptLate(d.endWhat, d.endAfter, err)
}
