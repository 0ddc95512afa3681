package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"

	"github.com/emersion/go-smtp"
)

// maxReplyBytes bounds what the server may send between two of our writes:
// go-smtp limits each reply line to 2000 bytes but not the number of lines,
// so a hostile or broken server could grow our heap without end (G12).
const maxReplyBytes = 64 << 10

var errReplyTooLong = fmt.Errorf("server sent more than %d bytes without a request (reply too long)", maxReplyBytes)

// smtpConn is the connection go-smtp's Client reads and writes. It bounds the
// bytes read between two writes (G12), counts writes (so that a failed Hello
// can be told apart: greeting or EHLO), tells the deadlines that a command
// was sent (deadline.go), and can replay a greeting.
type smtpConn struct {
	net.Conn
	greeting []byte // returned by the first reads, before the connection
	unread   int    // bytes read since the last write
	writes   int
	dl       *deadlineConn // the deadlines under it (under TLS, if any); nil = none
	partial  int           // bytes read since the last LF
	cut      error         // the read error that cut a reply line short
}

func newSMTPConn(c net.Conn) *smtpConn { return &smtpConn{Conn: c} }

// afterStartTLS returns the conn for the SMTP session inside TLS. go-smtp's
// Client always reads a 220 greeting first, and exports no STARTTLS for an
// existing client (security.md a2), so the TLS session gets a local,
// synthetic greeting; after STARTTLS the server sends none (RFC 3207 4.2).
func afterStartTLS(c net.Conn) *smtpConn {
	return &smtpConn{Conn: c, greeting: []byte("220 synthetic greeting after STARTTLS\r\n")}
}

func (c *smtpConn) Read(p []byte) (int, error) {
	if len(c.greeting) > 0 {
		n := copy(p, c.greeting)
		c.greeting = c.greeting[n:]
		return n, nil
	}
	if c.unread >= maxReplyBytes {
		return 0, errReplyTooLong
	}
	if room := maxReplyBytes - c.unread; len(p) > room {
		p = p[:room]
	}
	if c.cut != nil {
		return 0, c.cut
	}
	n, err := c.Conn.Read(p)
	c.unread += n
	if i := bytes.LastIndexByte(p[:n], '\n'); i >= 0 {
		c.partial = n - 1 - i
	} else {
		c.partial += n
	}
	if err != nil && c.partial > 0 {
		c.cut = err
	}
	return n, err
}

// check returns the error that cut a reply line short, if one did, else
// err. bufio.Reader.ReadLine, under textproto and so go-smtp, drops a read
// error that follows part of a line and returns the part as the line: a
// reply cut off at its deadline after "250 o" would read as a 250, and one
// after "25" as a protocol error that hides the timeout. So every reply go-smtp
// reads is checked here.
func (c *smtpConn) check(err error) error {
	if c.cut != nil {
		return c.cut
	}
	return err
}

func (c *smtpConn) Write(p []byte) (int, error) {
	c.unread = 0
	c.writes++
	n, err := c.Conn.Write(p)
	if err == nil && c.dl != nil {
		c.dl.sent()
	}
	return n, err
}

// startTLS sends STARTTLS and reads the reply on c, after go-smtp's Client pre
// has said EHLO on it and seen the STARTTLS extension. Whatever plaintext the
// server sent beyond the 220 (in pre's buffer or in ours) is dropped, so it
// cannot pose as a reply inside TLS (CVE-2011-0411); bytes still in the
// socket break the TLS handshake instead.
func startTLS(c *smtpConn) error {
	if _, err := io.WriteString(c, "STARTTLS\r\n"); err != nil {
		return err
	}
	r := textproto.NewReader(bufio.NewReader(c))
	_, _, err := r.ReadResponse(220)
	err = c.check(err)
	var te *textproto.Error
	if errors.As(err, &te) {
		return &smtp.SMTPError{Code: te.Code, Message: te.Msg}
	}
	return err
}
