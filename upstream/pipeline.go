package upstream

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/emersion/go-smtp"
)

// PIPELINING (RFC 2920). go-smtp's Client sends a command and waits for
// its reply, so a message took four round trips on a reused connection:
// MAIL, RCPT, DATA, and the body. When the server offers PIPELINING, the
// attempt writes MAIL FROM, every RCPT TO and DATA in one write (they leave
// together: smtpConn coalesces until go-smtp's first read), and then lets
// go-smtp run the transaction as before: smtpConn drops each command
// go-smtp writes that was sent ahead, after checking that it is byte for
// byte the one that was, and go-smtp reads the replies in order. A
// mismatch (go-smtp formatting a command otherwise than mailCommand, say
// after an upgrade) fails the attempt, temporarily, and the connection is
// closed: TestPipelinedCommandsMatchGoSMTP catches it first.
//
// Any transaction that does not go MAIL, RCPT..., DATA (354) leaves
// replies unread, so the connection is marked broken and never reused:
// MAIL refused, no recipient accepted, an error without a reply.

// errPipelineMismatch is a command go-smtp wrote that differs from the one
// sent ahead for it.
type errPipelineMismatch struct{ want, got []byte }

func (e *errPipelineMismatch) Error() string {
	return fmt.Sprintf("pipelined command %q, but go-smtp wrote %q (a bug: please report it)", e.want, e.got)
}

// pipeline sends MAIL, the RCPTs go-smtp will be asked for (rcpts: those
// that passed checkAddr) and DATA ahead, if the server offers PIPELINING.
// It reports whether it did.
func (d *attempt) pipeline(from string, opts *smtp.MailOptions, rcpts []string) bool {
	if ok, _ := d.sc.Extension("PIPELINING"); !ok || len(rcpts) == 0 {
		return false
	}
	cmds := make([][]byte, 0, len(rcpts)+2)
	cmds = append(cmds, d.mailCommand(from, opts))
	for _, to := range rcpts {
		cmds = append(cmds, []byte("RCPT TO:<"+to+">\r\n"))
	}
	cmds = append(cmds, []byte("DATA\r\n"))
	d.smtp.sendAhead(cmds)
	return true
}

// mailCommand is MAIL FROM as go-smtp's Client.Mail writes it for the
// options the attempt uses (Size, UTF8; Body is implied by the server's
// 8BITMIME, as go-smtp does).
func (d *attempt) mailCommand(from string, opts *smtp.MailOptions) []byte {
	b := []byte("MAIL FROM:<" + from + ">")
	if ok, _ := d.sc.Extension("8BITMIME"); ok {
		b = append(b, " BODY=8BITMIME"...)
	}
	if ok, _ := d.sc.Extension("SIZE"); ok && opts.Size != 0 {
		b = append(b, " SIZE="...)
		b = strconv.AppendInt(b, opts.Size, 10)
	}
	if opts.UTF8 {
		b = append(b, " SMTPUTF8"...)
	}
	return append(b, "\r\n"...)
}

// sendAhead writes cmds (held until the next read, see Write) and makes
// Write expect go-smtp to write each of them next.
func (c *smtpConn) sendAhead(cmds [][]byte) {
	c.ahead, c.mismatch = nil, false
	for _, cmd := range cmds {
		c.Write(cmd) // held: an error shows at the flush, in the next read
	}
	c.ahead = cmds
}

// swallow takes p, written by go-smtp, if it is the next command already
// sent ahead: it reports whether p was taken, and an error if go-smtp wrote
// something else while commands were outstanding.
func (c *smtpConn) swallow(p []byte) (bool, error) {
	if len(c.ahead) == 0 {
		return false, nil
	}
	want := c.ahead[0]
	if !bytes.Equal(p, want) {
		c.ahead, c.mismatch = nil, true
		return false, &errPipelineMismatch{want: want, got: append([]byte(nil), p...)}
	}
	c.ahead = c.ahead[1:]
	c.unread = 0
	if c.dl != nil {
		c.dl.sent() // its reply's deadline runs from now
	}
	return true, nil
}

// pipelineDone ends a pipelined transaction: commands still outstanding
// (go-smtp stopped before DATA) mean replies are unread, so the connection
// cannot be reused.
func (d *attempt) pipelineDone() {
	if len(d.smtp.ahead) > 0 || d.smtp.mismatch {
		d.smtp.ahead, d.smtp.mismatch = nil, false
		d.smtp.out = d.smtp.out[:0] // never sent later on this connection
		d.broken = true
	}
}

// refusedData reads the reply to a DATA sent ahead when no recipient was
// accepted: the server must refuse it (RFC 2920 3.1), which keeps the
// session in step for the next message. One that says 354 anyway would
// take a body: the connection is closed instead.
func (d *attempt) refusedData() {
	d.conn.expect("reply to DATA", d.t.Command)
	_, err := d.sc.Data()
	var se *smtp.SMTPError
	if err = d.smtp.check(err); err == nil || !errors.As(err, &se) {
		d.broken = true
	}
}

// sendable is the recipients rcptAll will send RCPT TO for.
func (d *attempt) sendable() []string {
	var out []string
	for _, to := range d.rcpts {
		if checkAddr(to) == nil {
			out = append(out, to)
		}
	}
	return out
}
