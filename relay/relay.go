// Package relay is tlsrelay's inbound side: a go-smtp server that legacy
// apps use as their smarthost, and the only code that picks SMTP reply codes.
//
// The contract:
//
//   - 250 2.0.0 "queued as <id>" is given only after Spool.EnqueueRouted has
//     returned, that is after the message is durably on disk. Any other
//     outcome queues nothing.
//   - The spooled message is the client's DATA, dot-unstuffed, CRLF only,
//     with our Received: header in front. A bare CR anywhere (command, DATA,
//     BDAT) is refused with 550 5.6.0 and ends the session (go-smtp's DATA
//     reader mishandles CR, G1/G2). A bare LF in a message is refused with
//     550 5.6.0 and the session goes on; with listen.line_endings fix it
//     becomes CRLF instead (DATA only: a BDAT chunk's byte count must hold,
//     so a bare LF there is refused in both modes). End of data is CRLF . CRLF
//     only. Read timeouts end the session with 421 4.4.2.
//   - Spool and disk trouble is always 4xx (452 4.3.1 when the spool is over
//     budget, else 451 4.3.0), never 5xx: a legacy app drops mail on a 5xx.
//   - Every reply the relay picks comes from one table (reply.go). Reply
//     texts are generic; details go to the log, keyed by the events
//     "accepted" and "rejected". Message bodies, AUTH lines and passwords
//     are never logged.
//   - Access rules and limits are applied before go-smtp sees a connection:
//     clients outside listen.allowed_networks get 554 5.7.1, clients past
//     listen.max_connections or max_connections_per_ip 421 4.7.0, and
//     clients during Shutdown 421 4.3.2, each as the greeting, and are closed.
//   - Addresses pass a strict grammar (address.go) and the allow-lists
//     (listen.allowed_senders, allowed_recipients): 501 for bad syntax, 550
//     5.7.1 for a refused address. With listen.users, MAIL needs AUTH first
//     (530 5.7.0); plaintext AUTH is taken only from loopback clients, others
//     use STARTTLS (listen.tls) first (538 5.7.11).
//
// go-smtp v0.25.1 has defects a Session cannot fix (security.md, table G):
// the connection guard below go-smtp (guard.go, conn.go, starttls.go) works
// around them; docs/security.md maps each to its guard and test. Each
// workaround is marked "Guard (Gn)" where it is made.
package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/tlsrelay/tlsrelay/policy"
)

// forceGrace bounds how long Shutdown waits, once it has closed the
// connections, for their sessions to return (from Spool.EnqueueRouted, say).
const forceGrace = 2 * time.Second

// maxCommands caps the commands of one session (421 4.7.0 past it), so that
// a client cannot keep a slot with an endless stream of NOOP or RSET; the
// session lifetime (listen.session_timeout) bounds it in time as well.
const maxCommands = 20000

// Spool is where accepted mail goes; *queue.Queue implements it. It
// returns only once the message is durably on disk. An error with a method
// Full() bool returning true means the spool is over its budget. Errors from
// reading body are returned wrapped (errors.Is works), and a message whose
// body could not be read to io.EOF is never committed. routes[i] is to[i]'s
// route as Options.Route gave it at RCPT, so that a reload between RCPT and
// the end of DATA cannot take back an accepted recipient; routes is nil
// when Options.Route is, and the spool resolves routes itself.
type Spool interface {
	EnqueueRouted(ctx context.Context, client, from string, to []string, routes [][]string, body io.Reader) (id string, err error)
}

// Options configure a Server. Listen must have every limit set (policy's
// loader fills in the defaults); New refuses zero limits, since go-smtp reads
// zero as "unlimited" (security.md G9). An empty Listen.AllowedNetworks means
// loopback only (127.0.0.0/8 and ::1), never "everyone".
type Options struct {
	Listen policy.Listen
	// Route is a recipient's providers, in order; nil or empty refuses it
	// (550 5.7.1). The route found at RCPT travels with the recipient into
	// the spool. A nil Route makes everything routable (the spool routes).
	Route func(from, rcpt string) []string
	Spool Spool
	Log   *slog.Logger     // nil = discard
	Now   func() time.Time // for the Received header; nil = time.Now

	// Seams for tests: the wait after a failed login (nil = time.Sleep) and
	// the commands per session (0 = maxCommands).
	sleep       func(time.Duration)
	maxCommands int
}

// Server is the inbound SMTP server. Create it with New.
type Server struct {
	opts        Options
	smtp        *smtp.Server
	log         *slog.Logger
	now         func() time.Time
	allowedNets []netip.Prefix
	ctx         context.Context // for EnqueueRouted; cancelled when Shutdown gives up
	cancel      context.CancelFunc
	draining    atomic.Bool
	tlsConfig   *tls.Config // inbound STARTTLS; nil = not offered
	users       *userTable  // inbound AUTH; nil = not offered
	logins      *loginLimiter
	maxCommands int
	sleep       func(time.Duration) // the delay after a failed login; a seam for tests
	slots       chan struct{}       // transaction slots, listen.max_transactions (txn.go)

	mu            sync.Mutex
	ln            *listener
	conns         map[*conn]struct{}
	perIP         map[netip.Addr]int // open connections by client address
	drained       chan struct{}      // made by Shutdown; closed when conns is empty
	drainedClosed bool
}

// New checks o and builds the server. It does not listen yet.
func New(o Options) (*Server, error) {
	if err := check(o); err != nil {
		return nil, err
	}
	s := &Server{opts: o, log: o.Log, now: o.Now, conns: map[*conn]struct{}{}, perIP: map[netip.Addr]int{},
		maxCommands: maxCommands, logins: newLoginLimiter(), sleep: time.Sleep,
		slots: make(chan struct{}, o.Listen.MaxTransactions)}
	if o.sleep != nil {
		s.sleep = o.sleep
	}
	if o.maxCommands > 0 {
		s.maxCommands = o.maxCommands
	}
	var err error
	if s.users, err = newUserTable(o.Listen.Users); err != nil {
		return nil, err
	}
	s.tlsConfig = serverTLSConfig(o.Listen.TLS)
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.allowedNets = o.Listen.AllowedNetworks
	if len(s.allowedNets) == 0 {
		s.allowedNets = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	// Guard (G9): go-smtp leaves every limit at "unlimited" and an empty
	// Addr at all interfaces; set each one. Guard (G14): Debug stays nil, it
	// would log AUTH and bodies. AUTH: AllowInsecureAuth lets every AUTH
	// reach the session, which decides (auth.go): advertised and accepted only
	// with listen.users, and in plaintext only from a loopback client.
	// TLSConfig stays nil: inbound STARTTLS is done below go-smtp, by the
	// connection guard (starttls.go), so that the guard sees plaintext.
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Network = "tcp"
	srv.Addr = o.Listen.Addr
	srv.Domain = o.Listen.Hostname
	srv.MaxMessageBytes = o.Listen.MaxMessageBytes
	srv.MaxRecipients = o.Listen.MaxRecipients
	srv.MaxLineLength = o.Listen.MaxLineBytes
	srv.ReadTimeout = o.Listen.ReadTimeout
	srv.WriteTimeout = o.Listen.WriteTimeout
	srv.AllowInsecureAuth = true
	srv.TLSConfig = nil
	srv.Debug = nil
	srv.ErrorLog = errorLog{s.log}
	s.smtp = srv
	return s, nil
}

// check refuses options that would leave a limit off or the server open.
func check(o Options) error {
	l := o.Listen
	switch {
	case l.Addr == "":
		return errors.New("relay: listen.addr is empty (it would mean all interfaces)")
	case l.Hostname == "":
		return errors.New("relay: listen.hostname is empty")
	case l.MaxMessageBytes <= 0:
		return fmt.Errorf("relay: listen.max_message_bytes must be positive, got %d", l.MaxMessageBytes)
	case l.MaxRecipients <= 0:
		return fmt.Errorf("relay: listen.max_recipients must be positive, got %d", l.MaxRecipients)
	case l.MaxConnections <= 0 || l.MaxConnectionsPerIP <= 0:
		return fmt.Errorf("relay: listen.max_connections and max_connections_per_ip must be positive, got %d and %d",
			l.MaxConnections, l.MaxConnectionsPerIP)
	case l.SessionTimeout <= 0:
		return fmt.Errorf("relay: listen.session_timeout must be positive, got %s", l.SessionTimeout)
	case l.MaxLineBytes < minCommandLine:
		return fmt.Errorf("relay: listen.max_line_bytes must be at least %d, got %d", minCommandLine, l.MaxLineBytes)
	case l.LineEndings != policy.LineEndingsReject && l.LineEndings != policy.LineEndingsFix:
		return fmt.Errorf("relay: listen.line_endings must be %q or %q, got %q", policy.LineEndingsReject, policy.LineEndingsFix, l.LineEndings)
	case l.MaxTransactions <= 0 || l.TransactionWait <= 0:
		return fmt.Errorf("relay: listen.max_transactions and transaction_wait must be positive, got %d and %s",
			l.MaxTransactions, l.TransactionWait)
	case l.ReadTimeout <= 0 || l.WriteTimeout <= 0:
		return fmt.Errorf("relay: listen.read_timeout and write_timeout must be positive, got %s and %s",
			l.ReadTimeout, l.WriteTimeout)
	case o.Spool == nil:
		return errors.New("relay: no Spool")
	}
	return nil
}

// ListenAndServe listens on Options.Listen.Addr and serves; see Serve.
func (s *Server) ListenAndServe() error {
	l, err := net.Listen("tcp", s.opts.Listen.Addr)
	if err != nil {
		return fmt.Errorf("relay: listen on %s: %w", s.opts.Listen.Addr, err)
	}
	return s.Serve(l)
}

// Serve accepts connections on l until Shutdown, then returns nil; Shutdown
// closes l. A Server serves one listener, once: a second Serve (or one after
// Shutdown) closes l and returns smtp.ErrServerClosed.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.ln != nil || s.draining.Load() {
		s.mu.Unlock()
		l.Close()
		return smtp.ErrServerClosed
	}
	s.ln = &listener{Listener: l, srv: s}
	s.mu.Unlock()
	return s.smtp.Serve(s.ln)
}

// Addr is the address Serve listens on, or nil before Serve.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Shutdown drains the server. New connections keep being accepted and get
// 421 4.3.2 (the listener stays open, so clients see a reply instead of a
// refused connection). Sessions outside a transaction get 421 4.3.2 at their
// next command; sessions inside one may finish it. When the last connection
// has closed, Shutdown closes the listener and returns nil.
//
// When ctx is done first, Shutdown closes every connection (a message not
// yet answered 250 is not queued: its read fails and the context given to
// Enqueue is cancelled), waits up to forceGrace for the sessions to return
// from Data, and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	drained := s.startDrain()
	select {
	case <-drained:
		err := s.smtp.Shutdown(ctx) // closes the listener; waits for go-smtp's handlers
		s.cancel()
		if errors.Is(err, smtp.ErrServerClosed) {
			err = nil // a second Shutdown
		}
		return err
	case <-ctx.Done():
	}
	s.cancel()
	s.mu.Lock()
	for c := range s.conns {
		c.Conn.Close() // go-smtp's handler sees the error and calls c.Close
	}
	s.mu.Unlock()
	s.smtp.Close()
	t := time.NewTimer(forceGrace)
	defer t.Stop()
	select {
	case <-drained:
	case <-t.C:
		s.log.Warn("smtp_error", "detail", "sessions still running after Shutdown closed them")
	}
	return ctx.Err()
}

// startDrain turns draining on, wakes the sessions that wait for a command
// outside a transaction (their Read then answers 421 4.3.2), and returns a
// channel closed when no connection is left.
func (s *Server) startDrain() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.draining.Store(true)
	if s.drained == nil {
		s.drained = make(chan struct{})
		if len(s.conns) == 0 {
			close(s.drained)
			s.drainedClosed = true
		}
	}
	for c := range s.conns {
		if !c.busy.Load() {
			c.Conn.SetReadDeadline(time.Now())
		}
	}
	return s.drained
}

// logRejected writes the "rejected" event for a reply we gave.
func (s *Server) logRejected(r *smtp.SMTPError, cause error, client string, attrs ...any) {
	args := append([]any{"code", r.Code, "reason", cause.Error(), "client", client}, attrs...)
	s.log.Info("rejected", args...)
}

// errorLog routes go-smtp's internal errors (failed connections, recovered
// panics) to slog instead of stderr.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Printf(format string, v ...any) {
	l.log.Warn("smtp_error", "detail", fmt.Sprintf(format, v...))
}

func (l errorLog) Println(v ...any) {
	l.log.Warn("smtp_error", "detail", fmt.Sprint(v...))
}
