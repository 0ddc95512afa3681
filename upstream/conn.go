package upstream

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"time"

	"github.com/emersion/go-smtp"
)

// maxReplyBytes bounds what the server may send between two of our writes:
// go-smtp limits each reply line to 2000 bytes but not the number of lines,
// so a hostile or broken server could grow our heap without end (G12).
const maxReplyBytes = 64 << 10

var errReplyTooLong = fmt.Errorf("server sent more than %d bytes without a request (reply too long)", maxReplyBytes)

// deadlineConn gives every Read and Write its own deadline, now+timeout, so
// that a silent server, or one that stops reading the body, cannot hold a
// delivery. go-smtp clears its deadlines after each command, sets none while
// the body is written, and a fixed 5 minutes for the greeting (G11). This conn
// owns the deadlines: the Set*Deadline calls from go-smtp and crypto/tls
// above it are ignored.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (c *deadlineConn) SetDeadline(time.Time) error      { return nil }
func (c *deadlineConn) SetReadDeadline(time.Time) error  { return nil }
func (c *deadlineConn) SetWriteDeadline(time.Time) error { return nil }

// smtpConn is the connection go-smtp's Client reads and writes. It bounds the
// bytes read between two writes (G12), counts writes (so that a failed Hello
// can be told apart: greeting or EHLO), and can replay a greeting.
type smtpConn struct {
	net.Conn
	greeting []byte // returned by the first reads, before the connection
	unread   int    // bytes read since the last write
	writes   int
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
	n, err := c.Conn.Read(p)
	c.unread += n
	return n, err
}

func (c *smtpConn) Write(p []byte) (int, error) {
	c.unread = 0
	c.writes++
	return c.Conn.Write(p)
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
	var te *textproto.Error
	if errors.As(err, &te) {
		return &smtp.SMTPError{Code: te.Code, Message: te.Msg}
	}
	return err
}
