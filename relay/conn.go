package relay

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// replyTimeout bounds each reply the listener and the guard write themselves.
const replyTimeout = time.Second

// listener makes the decisions go-smtp cannot: it calls Backend.NewSession
// only at EHLO, so everything decided at connect time lives here. A refused
// client gets its reply as the greeting and is closed; go-smtp never sees it.
type listener struct {
	net.Listener
	srv *Server
}

// Accept returns the next admitted connection, wrapped in a *conn.
func (l *listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c, err := l.srv.admit(nc)
		if err == nil {
			return c, nil
		}
		l.srv.refuse(nc, err)
	}
}

// admit checks allowed_networks, the drain, max_connections and
// max_connections_per_ip, in that order, and counts the connection in.
// Guard (G9): go-smtp has no connection limits at all.
func (s *Server) admit(nc net.Conn) (*conn, error) {
	ip, ok := remoteIP(nc)
	if !ok || !s.allowed(ip) {
		return nil, wrapErr(errAccessDenied, nc.RemoteAddr().String())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return nil, errShuttingDown
	}
	if len(s.conns) >= s.opts.Listen.MaxConnections {
		return nil, errTooManyConns
	}
	if s.perIP[ip] >= s.opts.Listen.MaxConnectionsPerIP {
		return nil, wrapErr(errTooManyConnsIP, ip.String())
	}
	c := newConn(nc, s, ip)
	s.conns[c] = struct{}{}
	s.perIP[ip]++
	return c, nil
}

// refuse answers a client that was not admitted and closes it.
func (s *Server) refuse(nc net.Conn, cause error) {
	client := nc.RemoteAddr().String()
	if ip, ok := remoteIP(nc); ok {
		client = ip.String()
	}
	r := reply(cause)
	s.logRejected(r, cause, client)
	nc.SetWriteDeadline(time.Now().Add(replyTimeout))
	nc.Write(s.replyLine(r))
	nc.Close()
}

// release counts a closed connection out and ends a drain that waits for it.
func (s *Server) release(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if s.perIP[c.ip]--; s.perIP[c.ip] <= 0 {
		delete(s.perIP, c.ip)
	}
	if len(s.conns) == 0 && s.drained != nil && !s.drainedClosed {
		close(s.drained)
		s.drainedClosed = true
	}
}

func (s *Server) allowed(ip netip.Addr) bool {
	for _, p := range s.allowedNets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// replyLine formats a reply the listener or the guard writes itself. Replies
// that close the connection (421, and 554 as a greeting) name the host, as
// RFC 5321 4.2 shows them.
func (s *Server) replyLine(r *smtp.SMTPError) []byte {
	e := r.EnhancedCode
	if r.Code == 421 || r.Code == 554 {
		return fmt.Appendf(nil, "%d %d.%d.%d %s %s\r\n", r.Code, e[0], e[1], e[2], s.opts.Listen.Hostname, r.Message)
	}
	return fmt.Appendf(nil, "%d %d.%d.%d %s\r\n", r.Code, e[0], e[1], e[2], r.Message)
}

// remoteIP is the client's address without port, zone or IPv4-in-IPv6 form.
func remoteIP(c net.Conn) (netip.Addr, bool) {
	var ap netip.AddrPort
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap = a.AddrPort()
	} else if p, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		ap = p
	}
	ip := ap.Addr().Unmap().WithZone("")
	return ip, ip.IsValid()
}

// conn is an admitted connection: below go-smtp it is the guard that sees
// every byte in both directions (guard.go), does inbound STARTTLS
// (starttls.go), and ends a session with a reply of its own; Close counts it
// out. Read, Write and SetReadDeadline are called only by go-smtp's
// goroutine for this connection, and so are the plain fields; the atomics
// are also touched by sessions (a BDAT's Data runs in a goroutine of its
// own) and by Shutdown.
type conn struct {
	net.Conn // the client's socket
	srv      *Server
	ip       netip.Addr
	client   string    // ip as text, for logs, the spool and the Received header
	deadline time.Time // the end of the session (listen.session_timeout)
	sess     *session  // set at EHLO

	tc      *tls.Conn // after STARTTLS: reads and writes go through it
	in      []byte    // checked bytes from the client, not yet handed up
	inBuf   *[]byte   // in's storage, from inPool while in holds bytes (guard.go)
	prevCR  bool      // the last byte read was a CR, held back until the next one
	wantCmd bool      // go-smtp is about to read a command line
	sasl    bool      // the last reply was 334: the next line answers AUTH
	chunk   int64     // bytes of a BDAT chunk go-smtp has still to read
	verb    string    // verb of the last command line handed up
	cmds    int       // command lines handed up
	errs    int       // command lines the guard refused
	tlsNext bool      // STARTTLS was answered 220: handshake at the next Read
	readDL  time.Time // the read deadline go-smtp asked for last
	held    []byte    // continuation lines of a reply not yet written (Write)
	heldBuf [512]byte // held's storage while it fits

	busy      atomic.Bool                         // a transaction is open: a drain lets it finish
	authed    atomic.Bool                         // the client has logged in (AUTH)
	needHelo  atomic.Bool                         // after STARTTLS, until the next EHLO
	tlsState  atomic.Pointer[tls.ConnectionState] // set by STARTTLS
	ended     atomic.Pointer[closedError]         // set once: every later Read fails with it
	lastReply atomic.Bool                         // mute writes after the next complete line
	mute      atomic.Bool                         // drop writes: go-smtp's reply would follow ours
	shut      atomic.Bool                         // Close has run
	closeOnce sync.Once
}

// The guard's read buffers come from pools and are not part of a conn:
// allocating them for every connection (32 KiB + 64 KiB, zeroed) was about
// 88 KiB of the ~208 KiB per session that BenchmarkSession measured. Both
// are only ever touched by the connection's own goroutine, inside Read, and
// go back to their pool from there (never from Close, which may run on
// another goroutine while Read is still using them):
//
//   - scratchPool: what fill reads the socket into. Taken for one fill and
//     put back when it returns; check has copied the bytes out by then, and
//     a Reader must not keep p. Same size as before, so reads are split
//     exactly as they were.
//   - inPool: c.in's storage, taken when a read brings bytes and c.in is
//     empty, put back by Read once c.in is empty again (releaseIn). An idle
//     connection, waiting for its next command, holds no c.in storage.
const (
	scratchSize = 32 << 10
	inSize      = 64 << 10
)

var (
	scratchPool = sync.Pool{New: func() any { b := make([]byte, scratchSize); return &b }}
	inPool      = sync.Pool{New: func() any { b := make([]byte, 0, inSize); return &b }}
)

func newConn(nc net.Conn, s *Server, ip netip.Addr) *conn {
	return &conn{Conn: nc, srv: s, ip: ip, client: ip.String(),
		deadline: time.Now().Add(s.opts.Listen.SessionTimeout)}
}

// closedError is what Read returns once the session is over. It matches
// net.ErrClosed, so go-smtp's handleConn returns quietly and closes, and its
// cause, so reply and the session see why.
type closedError struct{ cause error }

func (e *closedError) Error() string   { return "session ended: " + e.cause.Error() }
func (e *closedError) Unwrap() []error { return []error{e.cause, net.ErrClosed} }

// SetReadDeadline is called by go-smtp right before it reads a command line
// (and only then: conn.go readLine), so it tells the guard that the next
// Read is for a command, or for the answer to an AUTH challenge. The
// deadline never goes past the end of the session: a session that lasts
// session_timeout is answered 421 4.4.2 at its next read.
func (c *conn) SetReadDeadline(t time.Time) error {
	c.wantCmd = true
	c.chunk = 0 // a refused BDAT has no chunk to read
	if t.IsZero() || t.After(c.deadline) {
		t = c.deadline
	}
	c.readDL = t
	return c.Conn.SetReadDeadline(t)
}

// out is where writes go: the TLS session after STARTTLS, else the socket.
func (c *conn) out() net.Conn {
	if c.tc != nil {
		return c.tc
	}
	return c.Conn
}

func (c *conn) isTLS() bool { return c.tlsState.Load() != nil }

func (c *conn) idleWhileDraining() bool {
	return c.srv.draining.Load() && !c.busy.Load()
}

// end writes the reply for cause, logs it, and ends the session: later
// Reads fail with the returned *closedError and go-smtp's own replies are
// dropped. Only the first call does anything.
func (c *conn) end(cause error) error {
	e := &closedError{cause: cause}
	if !c.ended.CompareAndSwap(nil, e) {
		return c.ended.Load()
	}
	c.mute.Store(true)
	r := reply(cause)
	c.srv.logRejected(r, cause, c.client)
	c.Conn.SetWriteDeadline(time.Now().Add(replyTimeout))
	c.out().Write(c.srv.replyLine(r))
	return e
}

// endSilently ends the session without a reply (none can be sent).
func (c *conn) endSilently(cause error) error {
	e := &closedError{cause: cause}
	if !c.ended.CompareAndSwap(nil, e) {
		return c.ended.Load()
	}
	c.mute.Store(true)
	return e
}

// endAfterReply ends the session after go-smtp has written the reply now
// being returned by a Session method. cause is for the log only.
func (c *conn) endAfterReply(cause error) {
	c.lastReply.Store(true)
	c.ended.CompareAndSwap(nil, &closedError{cause: cause})
}

// refuseLine answers a command line the guard drops, and ends the session
// once the client has had more than errThreshold of them.
func (c *conn) refuseLine(cause error) error {
	c.errs++
	if c.errs > errThreshold {
		return c.end(wrapErr(errTooManyErrors, cause.Error()))
	}
	r := reply(cause)
	c.srv.logRejected(r, cause, c.client)
	c.Conn.SetWriteDeadline(time.Now().Add(replyTimeout))
	if _, err := c.out().Write(c.srv.replyLine(r)); err != nil {
		return c.endSilently(err)
	}
	return nil
}

// Close closes the connection once and counts it out. The count drops
// before the socket closes, so a client that has seen EOF can count on the
// slot being free.
func (c *conn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		c.shut.Store(true)
		c.srv.release(c)
		err = c.Conn.Close()
	})
	return err
}

// closed reports whether the session is over: ended, or Close has run.
//
// Guard (G4): go-smtp's "too many errors" closes the socket but goes on
// executing the commands it has buffered. The guard hands go-smtp one line
// per Read, so it never has a command buffered; sessions also refuse to
// start or act on a closed connection.
func (c *conn) closed() bool {
	return c.ended.Load() != nil || c.shut.Load()
}

// go-smtp v0.25.1's replies that the guard replaces (Write).
var (
	goSMTPNoTLS         = []byte("502 5.5.1 TLS not supported\r\n")
	goSMTPTooManyErrors = []byte("500 5.5.1 Too many errors")
	goSMTPPipelining    = []byte("250-PIPELINING\r\n")
)

// Write passes go-smtp's replies on, unless the session has ended. go-smtp
// writes each reply line with one Write. Three are changed on the way:
//
//   - the EHLO line PIPELINING gets STARTTLS beside it when inbound TLS is
//     offered and not in use (go-smtp has no TLSConfig: starttls.go);
//   - "502 TLS not supported", go-smtp's answer to STARTTLS, becomes 220 and
//     the handshake follows at the next Read;
//   - Guard (G4): "500 Too many errors" becomes our 421 4.7.0, the last
//     reply of the session.
func (c *conn) Write(p []byte) (int, error) {
	if c.mute.Load() {
		return 0, net.ErrClosed
	}
	switch {
	case bytes.Equal(p, goSMTPPipelining) && c.offerTLS():
		c.hold([]byte("250-STARTTLS\r\n"))
	case bytes.Equal(p, goSMTPNoTLS) && c.verb == "STARTTLS" && c.offerTLS():
		if _, err := c.send([]byte("220 2.0.0 Ready to start TLS\r\n")); err != nil {
			return 0, err
		}
		c.tlsNext = true
		return len(p), nil
	case bytes.HasPrefix(p, goSMTPTooManyErrors):
		c.end(errTooManyErrors)
		return len(p), nil
	}
	c.sasl = bytes.HasPrefix(p, []byte("334 "))
	if isContinuation(p) && len(c.held)+len(p) <= maxHeld {
		c.hold(p)
		return len(p), nil
	}
	n, err := c.send(p)
	if c.lastReply.Load() && bytes.HasSuffix(p[:n], []byte("\n")) {
		c.mute.Store(true)
	}
	return n, err
}

// offerTLS reports whether STARTTLS is offered now: configured, not in use
// yet, and not after AUTH (RFC 3207 4.2 would have the login forgotten).
// Replies leave in one write. go-smtp writes each line of a reply with a
// write of its own (textproto's PrintfLine flushes), so the EHLO reply
// took eight writes, each waking the client. The continuation lines
// ("250-...") are held and go out with the final line, which is always
// written at once: nothing waits for a later read. Only the connection's
// goroutine (go-smtp's) writes through Write.
const maxHeld = 4 << 10

// isContinuation reports whether p is one whole line "NNN-...\r\n".
func isContinuation(p []byte) bool {
	return len(p) >= 6 && p[3] == '-' && p[len(p)-1] == '\n' &&
		p[0] >= '2' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9'
}

func (c *conn) hold(p []byte) {
	if c.held == nil {
		c.held = c.heldBuf[:0]
	}
	c.held = append(c.held, p...)
}

// send writes what is held and p in one write.
func (c *conn) send(p []byte) (int, error) {
	if len(c.held) == 0 {
		return c.out().Write(p)
	}
	c.held = append(c.held, p...)
	_, err := c.out().Write(c.held)
	c.held = c.held[:0]
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *conn) offerTLS() bool {
	return c.srv.tlsConfig != nil && c.tc == nil && !c.authed.Load()
}

var _ net.Conn = (*conn)(nil)
