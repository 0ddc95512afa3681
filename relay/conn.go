package relay

import (
	"bytes"
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

// admit checks allowed_networks, the drain and max_connections, in that
// order, and counts the connection in.
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
	c := &conn{Conn: nc, srv: s, client: ip.String()}
	s.conns[c] = struct{}{}
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

// conn is an admitted connection. Below go-smtp it is the line-ending guard
// and the place that ends a session with a reply of our own; Close counts it
// out. Read and Write are called only by go-smtp's goroutine for this
// connection; busy, ended and mute are also touched by sessions and Shutdown.
type conn struct {
	net.Conn
	srv    *Server
	client string // IP address, for logs, the spool and the Received header

	busy      atomic.Bool                 // a transaction is open: a drain lets it finish
	ended     atomic.Pointer[closedError] // set once: every later Read fails with it
	lastReply atomic.Bool                 // mute writes after the next complete line
	mute      atomic.Bool                 // drop writes: go-smtp's reply would follow ours
	shut      atomic.Bool                 // Close has run
	closeOnce sync.Once

	prevCR bool // the last byte handed up was CR
	trip   bool // a bare CR follows the bytes handed up: end at the next Read
}

// closedError is what Read returns once the session is over. It matches
// net.ErrClosed, so go-smtp's handleConn returns quietly and closes, and its
// cause, so reply and the session see why.
type closedError struct{ cause error }

func (e *closedError) Error() string   { return "session ended: " + e.cause.Error() }
func (e *closedError) Unwrap() []error { return []error{e.cause, net.ErrClosed} }

// Read hands go-smtp the client's bytes, up to the first bare CR.
//
// Guard (security.md G1, G2, G3): go-smtp's DATA reader drops a CR after a
// leading dot and misses end-of-data after CR CR LF, so a bare CR can change
// content or hide the terminator before Session.Data can see it. No byte
// after a bare CR ever reaches go-smtp: the guard answers 550 5.6.0 and ends
// the session, in commands, DATA and BDAT alike. A bare LF does no such harm
// to go-smtp's parser; Session.Data rejects it and the session stays in sync.
//
// Guard (G10): a read timeout is answered here with 421 4.4.2
// and ends the session, in every state. go-smtp would answer a timeout inside
// DATA or BDAT with 554 and then read the rest of the message as commands.
//
// While the server drains, a Read outside a transaction answers 421 4.3.2
// and ends the session; Shutdown wakes such Reads with a past deadline.
func (c *conn) Read(p []byte) (int, error) {
	if e := c.ended.Load(); e != nil {
		return 0, e
	}
	if c.trip {
		return 0, c.end(errBareCR)
	}
	if c.idleWhileDraining() {
		return 0, c.end(errShuttingDown)
	}
	n, err := c.Conn.Read(p)
	good, bare := c.scan(p[:n])
	if bare {
		c.trip = true
		if good == 0 {
			return 0, c.end(errBareCR)
		}
		return good, nil
	}
	if n > 0 && isReadTimeout(err) {
		return n, nil // the deadline has passed: the next Read reports it
	}
	if isReadTimeout(err) {
		if c.idleWhileDraining() {
			return 0, c.end(errShuttingDown)
		}
		return 0, c.end(err)
	}
	return n, err
}

// scan returns how many bytes of b come before a bare CR, and whether one
// was found. A CR at the end of b is handed up; the next byte decides.
func (c *conn) scan(b []byte) (good int, bare bool) {
	for i, ch := range b {
		if c.prevCR && ch != '\n' {
			if i == 0 {
				return 0, true // the CR went up with the last Read
			}
			return i - 1, true
		}
		c.prevCR = ch == '\r'
	}
	return len(b), false
}

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
	c.Conn.Write(c.srv.replyLine(r))
	return e
}

// endAfterReply ends the session after go-smtp has written the reply now
// being returned by a Session method. cause is for the log only.
func (c *conn) endAfterReply(cause error) {
	c.lastReply.Store(true)
	c.ended.CompareAndSwap(nil, &closedError{cause: cause})
}

// Write passes go-smtp's replies on, unless the session has ended.
func (c *conn) Write(p []byte) (int, error) {
	if c.mute.Load() {
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Write(p)
	if c.lastReply.Load() && bytes.HasSuffix(p[:n], []byte("\n")) {
		c.mute.Store(true)
	}
	return n, err
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
// executing the commands it has buffered. With a ReadTimeout set (New
// insists), its readLine already stops at SetReadDeadline on the closed
// socket; sessions also refuse to start or act on a closed connection.
func (c *conn) closed() bool {
	return c.ended.Load() != nil || c.shut.Load()
}

var _ net.Conn = (*conn)(nil)
