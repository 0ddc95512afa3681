package relay

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// maxAddressBytes caps an address (RFC 5321 4.5.3.1.3 allows a 256-octet
// path, brackets included, and RFC 3696 errata 254 octets for the mailbox).
const maxAddressBytes = 254

// maxHeloBytes caps the client's HELO name in our Received header.
const maxHeloBytes = 255

// session is one client's SMTP session. go-smtp calls its methods from the
// connection's goroutine, except Data for BDAT, which runs in a goroutine of
// its own while RSET may call Reset: mu guards the transaction.
type session struct {
	srv  *Server
	conn *conn
	smtp *smtp.Conn

	mu     sync.Mutex
	mailed bool // a transaction is open
	from   string
	rcpts  []string
	helo   string // sanitized, taken at MAIL
}

// newSession is go-smtp's Backend: it runs at the first HELO/EHLO.
func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	gc, ok := c.Conn().(*conn)
	if !ok {
		return nil, reply(errors.New("connection not from our listener"))
	}
	if gc.closed() {
		return nil, reply(errSessionOver)
	}
	return &session{srv: s, conn: gc, smtp: c}, nil
}

// Mail opens a transaction.
//
// Guard (G5): go-smtp accepts a MAIL inside an open transaction and keeps
// its recipients; we answer 503 and keep the transaction as it was.
// Guard (G7): MailOptions.Auth (the AUTH= parameter) is ignored.
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if err := s.mail(from); err != nil {
		return s.reject(err)
	}
	return nil
}

func (s *session) mail(from string) error {
	if s.conn.closed() {
		return errSessionOver
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mailed {
		return errNestedMail
	}
	if err := checkAddress(from, true); err != nil {
		return wrapErr(errBadSender, err.Error())
	}
	// busy before draining is read, as Shutdown stores draining before it
	// reads busy: one of the two sees the other.
	s.conn.busy.Store(true)
	if s.srv.draining.Load() {
		s.conn.busy.Store(false)
		return errShuttingDown
	}
	s.mailed, s.from, s.rcpts = true, from, nil
	s.helo = cleanHelo(s.smtp.Hostname())
	return nil
}

// Rcpt adds a recipient. go-smtp answers RCPT before MAIL itself (502 5.5.1)
// and enforces MaxRecipients too (452 4.5.3); both are checked again here.
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	from, err := s.rcpt(to)
	if errors.Is(err, errNoRoute) {
		return s.reject(err, "from", from, "rcpt", to)
	}
	if err != nil {
		return s.reject(err)
	}
	return nil
}

func (s *session) rcpt(to string) (from string, err error) {
	if s.conn.closed() {
		return "", errSessionOver
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !s.mailed:
		return "", errNoMail
	case len(s.rcpts) >= s.srv.opts.Listen.MaxRecipients:
		return s.from, errTooManyRcpts
	}
	if err := checkAddress(to, false); err != nil {
		return s.from, wrapErr(errBadRecipient, err.Error())
	}
	if r := s.srv.opts.Routable; r != nil && !r(s.from, to) {
		return s.from, errNoRoute
	}
	s.rcpts = append(s.rcpts, to)
	return s.from, nil
}

// Data spools the message: our Received header, then the body through the
// line-ending check, into Spool.Enqueue.
//
// go-smtp hands Data the body dot-unstuffed with its CRLFs intact (its
// reader keeps CRLF, unlike net/textproto's), ending with the CRLF before
// the terminator. After Data returns early it reads the rest of the DATA
// itself, so an early reject leaves the session in sync. BDAT chunks come
// raw, through a pipe, and are checked the same way.
func (s *session) Data(r io.Reader) error {
	if s.conn.closed() {
		return s.reject(errSessionOver)
	}
	s.mu.Lock()
	from, rcpts, helo, mailed := s.from, append([]string(nil), s.rcpts...), s.helo, s.mailed
	s.mu.Unlock()
	switch {
	case !mailed:
		return s.reject(errNoMail)
	case len(rcpts) == 0:
		return s.reject(errNoRcpt)
	}

	hdr := s.received(helo)
	body := &lineReader{r: r}
	id, err := s.srv.opts.Spool.Enqueue(s.srv.ctx, s.conn.client, from, rcpts, io.MultiReader(strings.NewReader(hdr), body))
	switch {
	case body.err != nil && err == nil:
		s.srv.log.Error("spool_contract", "detail", "Enqueue committed a message it could not read", "id", id, "error", body.err)
		err = body.err
	case body.err != nil:
		err = body.err // the client's fault, whatever the spool made of it
	case err == nil && !body.eof:
		s.srv.log.Error("spool_contract", "detail", "Enqueue committed a message it did not read to the end", "id", id)
		err = errors.New("spool did not read the whole message")
	}
	if err != nil {
		return s.reject(err)
	}
	s.srv.log.Info("accepted", "id", id, "size", int64(len(hdr))+body.n, "client", s.conn.client,
		"from", from, "rcpts", len(rcpts))
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "queued as " + id}
}

// Reset ends the transaction. go-smtp calls it on RSET, on a repeated EHLO
// and after every DATA or BDAT LAST.
func (s *session) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mailed, s.from, s.rcpts = false, "", nil
	s.conn.busy.Store(false)
}

// Logout runs when the connection closes.
func (s *session) Logout() error {
	s.Reset()
	return nil
}

// reject logs err and returns its reply, and ends the session after the
// reply when it must be the last. A session that is already over was
// answered and logged where it ended; its replies go nowhere.
func (s *session) reject(err error, attrs ...any) error {
	r := reply(err)
	if !s.conn.closed() {
		s.srv.logRejected(r, err, s.conn.client, attrs...)
	}
	if endsSession(err) {
		s.conn.endAfterReply(err)
	}
	return r
}

// received is our trace header, ending in CRLF. The queue ID is not known
// yet, so it has none (RFC 5321 4.4 makes the ID clause optional).
func (s *session) received(helo string) string {
	return fmt.Sprintf("Received: from %s (%s) by %s (tlsrelay) with ESMTP; %s\r\n",
		helo, addressLiteral(s.conn.client), s.srv.opts.Listen.Hostname, s.srv.now().Format(time.RFC1123Z))
}

// addressLiteral writes ip the way RFC 5321 4.1.3 does: [192.0.2.1], [IPv6:2001:db8::1].
func addressLiteral(ip string) string {
	if strings.Contains(ip, ":") {
		return "[IPv6:" + ip + "]"
	}
	return "[" + ip + "]"
}

// cleanHelo makes the client's HELO name safe for a header. go-smtp does not
// validate it (security.md a3): anything but letters, digits and ".-_:[]"
// becomes '?', and it is cut at maxHeloBytes.
func cleanHelo(h string) string {
	if len(h) > maxHeloBytes {
		h = h[:maxHeloBytes]
	}
	b := []byte(h)
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-_:[]", c) >= 0
		if !ok {
			b[i] = '?'
		}
	}
	if len(b) == 0 {
		return "unknown"
	}
	return string(b)
}

// checkAddress is a minimal check of an address go-smtp has parsed. A
// stricter grammar comes later (G6). It refuses what could break a header,
// a log line or the upstream command line: control characters, space and
// angle brackets (go-smtp unquotes quoted local parts, so these can appear).
func checkAddress(a string, nullOK bool) error {
	switch {
	case a == "" && nullOK:
		return nil
	case a == "":
		return errors.New("empty")
	case len(a) > maxAddressBytes:
		return fmt.Errorf("longer than %d bytes", maxAddressBytes)
	}
	for i := 0; i < len(a); i++ {
		switch c := a[i]; {
		case c < 0x20 || c == 0x7f:
			return fmt.Errorf("control character 0x%02x", c)
		case c == ' ' || c == '<' || c == '>':
			return fmt.Errorf("character %q", c)
		}
	}
	return nil
}

// lineReader passes the body through and fails on a bare CR or a bare LF.
// It keeps the first error it returned other than io.EOF, whether it came
// from the check or from the reader below.
type lineReader struct {
	r      io.Reader
	prevCR bool
	n      int64 // bytes returned
	err    error
	eof    bool
}

func (l *lineReader) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	n, err := l.r.Read(p)
	for _, c := range p[:n] {
		switch {
		case c == '\n' && !l.prevCR:
			l.err = errBareLF
		case l.prevCR && c != '\n':
			l.err = errBareCR
		}
		if l.err != nil {
			return 0, l.err
		}
		l.prevCR = c == '\r'
	}
	l.n += int64(n)
	switch {
	case err == io.EOF && l.prevCR:
		l.err = errBareCR
		return 0, l.err
	case err == io.EOF:
		l.eof = true
	case err != nil:
		l.err = err
	}
	return n, err
}
