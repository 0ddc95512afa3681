package relay

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/tlsrelay/tlsrelay/policy"
)

// maxHeloBytes caps the client's HELO name in our Received header.
const maxHeloBytes = 255

// session is one client's SMTP session. go-smtp calls its methods from the
// connection's goroutine, except Data for BDAT, which runs in a goroutine of
// its own while RSET may call Reset: mu guards the transaction.
type session struct {
	srv  *Server
	conn *conn
	smtp *smtp.Conn

	authFailures int // failed logins on this connection (auth.go)

	mu     sync.Mutex
	mailed bool // a transaction is open
	from   string
	rcpts  []string
	routes [][]string // routes[i] is rcpts[i]'s, from Options.Route at RCPT; nil without it
	helo   string     // sanitized, taken at MAIL
	slot   bool       // holds one of Server.slots (txn.go)
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
	sess := &session{srv: s, conn: gc, smtp: c}
	gc.sess = sess
	return sess, nil
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
	switch {
	case s.conn.closed():
		return errSessionOver
	case s.conn.needHelo.Load():
		return errNeedHelo
	case s.srv.users != nil && !s.conn.authed.Load():
		return errAuthRequired
	}
	took := s.takeSlot()
	s.mu.Lock()
	defer s.mu.Unlock()
	fail := func(err error) error {
		if took {
			s.giveSlotLocked()
		}
		return err
	}
	if s.mailed {
		return fail(errNestedMail)
	}
	from, err := s.checkSender(from)
	if err != nil {
		return fail(err)
	}
	// busy before draining is read, as Shutdown stores draining before it
	// reads busy: one of the two sees the other.
	s.conn.busy.Store(true)
	if s.srv.draining.Load() {
		s.conn.busy.Store(false)
		return fail(errShuttingDown)
	}
	s.mailed, s.from, s.rcpts, s.routes = true, from, nil, nil
	s.helo = cleanHelo(s.smtp.Hostname())
	return nil
}

// Rcpt adds a recipient. go-smtp answers RCPT before MAIL itself (502 5.5.1)
// and enforces MaxRecipients too (452 4.5.3); both are checked again here.
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	from, err := s.rcpt(to)
	if errors.Is(err, errNoRoute) || errors.Is(err, errRcptDenied) {
		return s.reject(err, "from", from, "rcpt", to) // to passed the grammar: no CR, LF or control bytes
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
	if !s.mailed {
		return "", errNoMail
	}
	to, route, err := s.checkRecipient(to)
	switch {
	case err != nil:
		return s.from, err
	case slices.Contains(s.rcpts, to):
		return s.from, nil // the same recipient once more: it gets the message once
	case len(s.rcpts) >= s.srv.opts.Listen.MaxRecipients:
		return s.from, errTooManyRcpts
	}
	s.rcpts = append(s.rcpts, to)
	if s.srv.opts.Route != nil {
		s.routes = append(s.routes, route)
	}
	return s.from, nil
}

// checkSender checks MAIL FROM's address (strict grammar, G6) and
// listen.allowed_senders, and returns it as it is spooled ("" for <>).
func (s *session) checkSender(from string) (string, error) {
	if from == "" {
		if !allowedBy(s.srv.opts.Listen.AllowedSenders, "") {
			return "", wrapErr(errSenderDenied, "null sender")
		}
		return "", nil
	}
	a, err := parseAddress(from)
	switch {
	case errors.Is(err, errNonASCII):
		return "", err
	case err != nil:
		return "", wrapErr(errBadSender, err.Error())
	case a.ambiguous():
		return "", wrapErr(errSenderDenied, "local part with %, ! or @")
	case !allowedBy(s.srv.opts.Listen.AllowedSenders, a.String()):
		return "", wrapErr(errSenderDenied, "not in listen.allowed_senders")
	}
	return a.String(), nil
}

// checkRecipient checks RCPT TO's address (strict grammar, G6),
// listen.allowed_recipients and the routes, and returns it as it is spooled,
// with its route (nil without Options.Route). The allow-list sees the same
// string that is spooled and sent upstream.
func (s *session) checkRecipient(to string) (string, []string, error) {
	a, err := parseAddress(to)
	switch {
	case errors.Is(err, errNonASCII):
		return "", nil, err
	case err != nil:
		return "", nil, wrapErr(errBadRecipient, err.Error())
	case a.ambiguous():
		return "", nil, wrapErr(errRcptDenied, "local part with %, ! or @")
	case a.literal():
		return "", nil, wrapErr(errRcptDenied, "address literal")
	case !allowedBy(s.srv.opts.Listen.AllowedRecipients, a.String()):
		return "", nil, wrapErr(errRcptDenied, "not in listen.allowed_recipients")
	}
	if s.srv.opts.Route == nil {
		return a.String(), nil, nil
	}
	route := s.srv.opts.Route(s.from, a.String())
	if len(route) == 0 {
		return "", nil, errNoRoute
	}
	return a.String(), route, nil
}

// Data spools the message: our Received header, then the body through the
// bodyReader's checks (line endings, header size, Received count), into
// Spool.Enqueue.
//
// go-smtp hands Data the body dot-unstuffed with its CRLFs intact (its
// reader keeps CRLF, unlike net/textproto's), ending with the CRLF before
// the terminator. After Data returns early it reads the rest of the DATA
// itself, so an early reject leaves the session in sync. BDAT chunks come
// raw, through a pipe, and are checked the same way, except that a bare LF
// in them is never rewritten.
func (s *session) Data(r io.Reader) error {
	if s.conn.closed() {
		return s.reject(errSessionOver)
	}
	s.mu.Lock()
	from, rcpts, routes, helo, mailed := s.from, append([]string(nil), s.rcpts...), s.routes, s.helo, s.mailed
	s.mu.Unlock()
	switch {
	case !mailed:
		return s.reject(errNoMail)
	case len(rcpts) == 0:
		return s.reject(errNoRcpt)
	}

	hdr := s.received(helo)
	// BDAT chunks come through an io.Pipe, DATA through go-smtp's dot
	// reader. A BDAT chunk's bare LF is refused even with line_endings fix.
	_, bdat := r.(*io.PipeReader)
	// hdr goes first, through the bodyReader but past its checks: no
	// io.MultiReader, whose WriteTo cost 32 KiB a message (body.go).
	body := newBodyReader(hdr, r, s.srv.opts.Listen.LineEndings == policy.LineEndingsFix && !bdat)
	id, err := s.srv.opts.Spool.EnqueueRouted(s.srv.ctx, s.conn.client, from, rcpts, routes, body)
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
	s.mailed, s.from, s.rcpts, s.routes = false, "", nil, nil
	s.conn.busy.Store(false)
	s.giveSlotLocked()
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
