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
// was sent (deadline.go), can replay a greeting, and coalesces writes.
//
// Coalescing: go-smtp writes through a 4 KiB bufio.Writer, so a body
// leaves in 4 KiB writes (4 KiB TLS records) and the final ".\r\n" in a
// write of its own. Writes are held here, up to maxCoalesce, and sent
// before the next read: go-smtp reads a reply after every command and
// after the body, so nothing waits in the buffer for a reply that depends
// on it. A 4 KiB message then leaves in one write instead of two or three,
// and a large one in 32 KiB writes (TLS records of 16 KiB).
type smtpConn struct {
	net.Conn
	out      []byte   // written, not yet sent (sent before the next read)
	ahead    [][]byte // commands sent ahead, that go-smtp is still to write (pipeline.go)
	mismatch bool     // go-smtp wrote another command than the one sent ahead
	greeting []byte   // returned by the first reads, before the connection
	unread   int      // bytes read since the last write
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

// maxCoalesce bounds the bytes held by smtpConn.Write.
const maxCoalesce = 32 << 10

func (c *smtpConn) Read(p []byte) (int, error) {
	if err := c.flush(); err != nil {
		return 0, err
	}
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
	if took, err := c.swallow(p); took || err != nil {
		if err != nil {
			return 0, err
		}
		return len(p), nil
	}
	c.unread = 0
	c.writes++
	if len(c.out)+len(p) > maxCoalesce {
		if err := c.flush(); err != nil {
			return 0, err
		}
		if len(p) >= maxCoalesce {
			return c.send(p)
		}
	}
	if c.out == nil {
		c.out = make([]byte, 0, maxCoalesce)
	}
	c.out = append(c.out, p...)
	return len(p), nil
}

// flush sends what Write holds.
func (c *smtpConn) flush() error {
	if len(c.out) == 0 {
		return nil
	}
	_, err := c.send(c.out)
	c.out = c.out[:0]
	return err
}

// send writes p to the connection and tells the deadlines a command left.
func (c *smtpConn) send(p []byte) (int, error) {
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
