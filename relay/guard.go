package relay

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/policy"
)

const (
	// errThreshold is how many command lines the guard refuses (bare LF,
	// too long) before it ends the session, as go-smtp's own threshold.
	errThreshold = 3
	// maxCommandLine is RFC 5321 4.5.3.1.4's limit on a command line, CRLF
	// included. AUTH lines (RFC 4954 allows them longer) and the answers to
	// AUTH challenges are held to listen.max_line_bytes instead.
	maxCommandLine = 512
	// minCommandLine is the least max_line_bytes New accepts.
	minCommandLine = maxCommandLine
)

// Read hands go-smtp the client's bytes, checked, one line at a time.
//
// One line per Read: go-smtp reads through a bufio.Reader, so anything
// handed up past the end of a line sits in its buffer where the guard no
// longer sees it. Handing up at most one line (and no more than a BDAT
// chunk's remaining bytes) keeps that buffer empty whenever go-smtp reads a
// command. That is what lets the guard:
//
//   - Guard (G4): stop a session for good. go-smtp, after "too many errors",
//     closes the socket but runs the commands already in its buffer; there
//     are none.
//   - check every command line before go-smtp acts on it (checkCommand):
//     HTTP and header-shaped lines close the connection (cross-protocol
//     requests, security.md T23), too-long lines and, with line_endings
//     reject, lines ending in a bare LF are refused, and commands are counted.
//   - do STARTTLS below go-smtp (starttls.go) without plaintext pipelined
//     after it ever reaching the TLS session (CVE-2011-0411).
//
// Guard (G1, G2, G3): go-smtp's DATA reader drops a CR after a leading dot
// and misses end-of-data after CR CR LF, so a bare CR can change content or
// hide the terminator before Session.Data can see it. No bare CR ever
// reaches go-smtp: the guard answers 550 5.6.0 and ends the session, in
// commands, DATA and BDAT alike. A bare LF does no such harm to go-smtp's
// parser; Session.Data refuses it (or, with line_endings fix, turns it into
// CRLF) and the session stays in sync.
//
// Guard (G10): a read timeout is answered here with 421 4.4.2 and ends the
// session, in every state. go-smtp would answer a timeout inside DATA or
// BDAT with 554 and then read the rest of the message as commands.
//
// While the server drains, a Read outside a transaction answers 421 4.3.2
// and ends the session; Shutdown wakes such Reads with a past deadline.
func (c *conn) Read(p []byte) (int, error) {
	if e := c.ended.Load(); e != nil {
		return 0, e
	}
	if c.idleWhileDraining() {
		return 0, c.end(errShuttingDown)
	}
	if c.tlsNext {
		if err := c.startTLS(); err != nil {
			return 0, err
		}
	}
	if c.wantCmd {
		c.wantCmd = false
		if err := c.nextCommand(); err != nil {
			return 0, err
		}
	}
	if len(c.in) == 0 {
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := len(c.in)
	if c.chunk > 0 {
		n = int(min(int64(n), c.chunk))
		c.chunk -= int64(n)
	} else if i := bytes.IndexByte(c.in, '\n'); i >= 0 {
		n = i + 1
	}
	n = copy(p, c.in[:n])
	c.in = c.in[n:]
	if len(c.in) == 0 {
		c.releaseIn()
	}
	return n, nil
}

// fill reads from the client once or more, until c.in has grown by at
// least one checked byte or the read fails. A CR is held back until the
// byte after it shows it is not bare.
func (c *conn) fill() error {
	// A pooled scratch, held for this fill only (conn.go, scratchPool):
	// a new 32 KiB one per connection was an allocation BenchmarkSession
	// measured. The Reader does not keep it and check copies out of it.
	sp := scratchPool.Get().(*[]byte)
	defer scratchPool.Put(sp)
	scratch := *sp
	for have := len(c.in); len(c.in) == have; {
		var src io.Reader = c.Conn
		if c.tc != nil {
			src = c.tc
		}
		n, err := src.Read(scratch)
		if n > 0 {
			c.holdIn()
		}
		if bad := c.check(scratch[:n]); bad {
			return c.end(errBareCR)
		}
		if len(c.in) > have {
			return nil // an error comes again at the next read
		}
		if err != nil {
			return c.readError(err)
		}
	}
	return nil
}

// holdIn makes an empty c.in start over at the front of its storage,
// taken from inPool if it has none (conn.go): only once a read has
// brought bytes, so that a connection blocked waiting for its client holds
// none. A c.in that grew past that storage (a long line) starts over in it
// too, as it did when every conn had a storage of its own.
func (c *conn) holdIn() {
	if len(c.in) > 0 {
		return
	}
	if c.inBuf == nil {
		c.inBuf = inPool.Get().(*[]byte)
	}
	c.in = (*c.inBuf)[:0]
}

// releaseIn puts c.in's storage back into inPool once c.in is empty, so
// that connections share it instead of allocating 64 KiB each (measured
// by BenchmarkSession). It runs on the connection's goroutine, in Read,
// after the bytes have been copied out; nothing else refers to it.
func (c *conn) releaseIn() {
	c.in = nil
	if c.inBuf != nil {
		inPool.Put(c.inBuf)
		c.inBuf = nil
	}
}

// check appends b to c.in, CRLF kept; it reports a bare CR (and then
// appends nothing more).
func (c *conn) check(b []byte) (bare bool) {
	for len(b) > 0 {
		if c.prevCR {
			if b[0] != '\n' {
				return true
			}
			c.in = append(c.in, '\r', '\n')
			c.prevCR = false
			b = b[1:]
			continue
		}
		i := bytes.IndexByte(b, '\r')
		if i < 0 {
			c.in = append(c.in, b...)
			return false
		}
		c.in = append(c.in, b[:i]...)
		c.prevCR = true
		b = b[i+1:]
	}
	return false
}

// readError turns a failed socket read into the error Read returns.
func (c *conn) readError(err error) error {
	if !isReadTimeout(err) {
		return err // EOF, reset: go-smtp ends the session quietly
	}
	switch {
	case c.idleWhileDraining():
		return c.end(errShuttingDown)
	case !time.Now().Before(c.deadline):
		return c.end(errSessionExpired)
	}
	return c.end(err)
}

// nextCommand makes sure c.in starts with a whole line that go-smtp may
// read as a command: lines the guard refuses are answered and dropped here,
// and a line that ends the session returns its error.
func (c *conn) nextCommand() error {
	for {
		line, err := c.peekLine()
		if err != nil || line == nil {
			return err // nil, nil: the client closed mid-line; go-smtp gets the rest and EOF
		}
		if c.sasl {
			c.sasl = false
			return nil // an answer to an AUTH challenge, not a command
		}
		refuse, err := c.checkCommand(line)
		if err != nil {
			return err
		}
		if refuse == nil {
			return nil
		}
		c.in = c.in[len(line):]
		if err := c.refuseLine(refuse); err != nil {
			return err
		}
	}
}

// peekLine returns the first line in c.in, reading until it is complete.
// A line longer than listen.max_line_bytes ends the session.
func (c *conn) peekLine() ([]byte, error) {
	limit := c.srv.opts.Listen.MaxLineBytes
	for {
		if i := bytes.IndexByte(c.in, '\n'); i >= 0 && i < limit {
			return c.in[:i+1], nil
		}
		if len(c.in) >= limit {
			return nil, c.end(errLineTooLong)
		}
		before := len(c.in)
		if err := c.fill(); err != nil {
			if before > 0 && errors.Is(err, io.EOF) {
				return nil, nil
			}
			return nil, err
		}
	}
}

// httpMethods start the request line of an HTTP client (or a browser, or an
// SSRF'd app) that reached the SMTP port: security.md T23 (ALPACA).
var httpMethods = []string{"GET ", "POST ", "HEAD ", "PUT ", "CONNECT ", "OPTIONS ", "DELETE ", "PATCH ", "TRACE "}

// headerLine matches a line shaped like a message header ("Host: x",
// "User-Agent: y"): no SMTP command looks like it, an HTTP request's
// headers do (Postfix's smtpd_forbidden_commands disconnects on them too).
var headerLine = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]*:`)

// checkCommand looks at one whole command line before go-smtp does. It
// returns the reason to refuse the line (answered, dropped, the session
// goes on), or an error that ended the session.
func (c *conn) checkCommand(line []byte) (refuse, ended error) {
	text := string(line)
	for _, m := range httpMethods {
		if strings.HasPrefix(text, m) {
			return nil, c.end(wrapErr(errCrossProtocol, "HTTP request line"))
		}
	}
	if headerLine.MatchString(text) {
		return nil, c.end(wrapErr(errCrossProtocol, "header-shaped command line"))
	}
	verb := commandVerb(text)
	switch {
	case !strings.HasSuffix(text, "\r\n") && c.srv.opts.Listen.LineEndings != policy.LineEndingsFix:
		return errBareLFCommand, nil
	case len(line) > maxCommandLine && verb != "AUTH":
		return errCommandTooLong, nil
	}
	if c.cmds++; c.cmds > c.srv.maxCommands {
		return nil, c.end(errTooManyCommands)
	}
	c.verb = verb
	switch verb {
	case "EHLO", "HELO":
		c.needHelo.Store(false)
	case "BDAT":
		c.chunk = bdatSize(text)
	}
	return nil, nil
}

// commandVerb is the command of a line as go-smtp's parseCmd reads it:
// STARTTLS for any line that starts with it, else the first four letters.
func commandVerb(line string) string {
	up := strings.ToUpper(strings.TrimRight(line, "\r\n"))
	switch {
	case strings.HasPrefix(up, "STARTTLS"):
		return "STARTTLS"
	case len(up) >= 4:
		return up[:4]
	}
	return up
}

// bdatSize is the chunk size of a BDAT line, 0 if go-smtp would not read a
// chunk. It may take a line go-smtp refuses: then go-smtp reads the next
// command instead, and SetReadDeadline clears the size.
func bdatSize(line string) int64 {
	line = strings.TrimRight(line, "\r\n")
	if len(line) < 6 || line[4] != ' ' {
		return 0
	}
	f := strings.Fields(line[5:])
	if len(f) == 0 {
		return 0
	}
	n, err := strconv.ParseUint(f[0], 10, 32)
	if err != nil {
		return 0
	}
	return int64(n)
}
