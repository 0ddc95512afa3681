// Package mailsink runs SMTP servers on the loopback interface that record
// what they receive: the built-in strict-TLS upstream of `tlsrelay demo`, and
// (through internal/smtptest, which adds the testing glue) the fake upstreams
// of tests. It is shaped like net/http/httptest, and it must not import
// testing: the shipped binary links it.
//
// Contract:
//   - A Server is a real go-smtp server listening on 127.0.0.1 on a port the
//     system picks, in one of three modes: Plain, ImplicitTLS (port 465 style)
//     or StartTLS (port 587 style).
//   - Its TLS certificates are made in memory when it starts: an ECDSA P-256
//     CA and a leaf for 127.0.0.1, ::1 and localhost, valid from a day ago for
//     a year. RootCAs and CACertPEM trust exactly that CA; with
//     Options.Untrusted the leaf is signed by another CA, so verification
//     against RootCAs fails. The TLS options (tlsopts.go) make the servers of
//     TLS policy tests: only some versions or cipher suites, an RSA, expired,
//     self-signed or wrong-name leaf, or a required client certificate.
//   - AUTH (PLAIN and LOGIN with Options.Users, XOAUTH2 with Options.Tokens)
//     is offered only when one of them is set, and only over TLS except in
//     Plain mode.
//   - Every message that the server answers 250 to is recorded, with its
//     envelope, the authenticated user and the TLS state of its connection.
//     Connections, AUTH commands and MAIL commands are counted, whatever their
//     outcome, so a test can assert that nothing was sent.
//   - Replies can be changed at run time (SetMailErr, SetRcptErr, SetDataErr),
//     and Down and Up stop and resume listening on the same port, to simulate
//     an outage. DropConnections cuts the open connections, as a server does
//     to idle clients; OpenConnections and WaitOpenConnections tell when a
//     client has closed its connections.
//   - Close closes the listener and every connection and returns when every
//     goroutine the server started has finished.
//
// New needs no *testing.T; Start is New for tests, with the Close registered
// in t.Cleanup.
package mailsink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Mode is how a Server secures its connections.
type Mode int

const (
	Plain       Mode = iota // no TLS at all; AUTH allowed in plaintext
	ImplicitTLS             // TLS from the first byte (port 465)
	StartTLS                // plaintext greeting, STARTTLS offered (port 587)
)

func (m Mode) String() string {
	switch m {
	case Plain:
		return "plain"
	case ImplicitTLS:
		return "implicit"
	case StartTLS:
		return "starttls"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// Options configure a Server. The zero value is a plaintext server without
// AUTH that accepts every message.
type Options struct {
	Mode Mode

	// Users are the accepted AUTH PLAIN and LOGIN credentials, user ->
	// password. nil means AUTH is not offered.
	Users map[string]string
	// Tokens, if set, offers AUTH XOAUTH2 and accepts a bearer token when it
	// returns true for the user and token. A refused token gets the JSON
	// error challenge, then 535 5.7.8, as at Gmail.
	Tokens func(user, token string) bool
	// AuthMechanisms, if set, limits the mechanisms offered (and accepted)
	// to these, e.g. []string{"LOGIN"}.
	AuthMechanisms []string
	// AuthRequired makes MAIL before a successful AUTH fail with 530 5.7.0.
	AuthRequired bool
	// NoStartTLS, in StartTLS mode, neither offers nor accepts STARTTLS.
	NoStartTLS bool

	// CertNames override the leaf certificate's subject alternative names
	// (IP addresses or DNS names), e.g. to serve a certificate for a wrong name.
	CertNames []string
	// Untrusted signs the leaf with a CA that RootCAs does not contain.
	Untrusted bool
	// SelfSigned serves a self-signed leaf (signed by its own key, sent
	// alone); RootCAs does not trust it.
	SelfSigned bool
	// RSAKey gives the leaf an RSA 2048 key instead of ECDSA P-256, as the
	// RSA key-exchange suites (TLS_RSA_*) and ECDHE_RSA suites need. It is
	// implied when CipherSuites names only RSA suites.
	RSAKey bool
	// CertNotAfter is the leaf's expiry; zero = a year from now. In the past,
	// the certificate is expired.
	CertNotAfter time.Time

	// TLSMinVersion and TLSMaxVersion bound the TLS versions the server
	// accepts (tls.VersionTLS10...); 0 = 1.2 and 1.3. A MinVersion set
	// explicitly lets Go's server accept TLS 1.0 and 1.1.
	TLSMinVersion, TLSMaxVersion uint16
	// CipherSuites, when set, are the only TLS 1.0-1.2 suites the server
	// accepts. crypto/tls uses a suite listed here even when its defaults
	// leave it out (RSA key exchange since Go 1.22), without any GODEBUG.
	CipherSuites []uint16
	// RequireClientCert makes the server require a client certificate signed
	// by its client CA; ClientCertPEM makes one.
	RequireClientCert bool

	// Reply hooks: a non-nil error is the reply (a *smtp.SMTPError gives its
	// code; go-smtp turns other errors into 451 or 554). nil hooks accept.
	MailErr func(from string) error
	RcptErr func(to string) error
	DataErr func(m *Message) error // a refused message is not recorded

	Domain   string      // name in the greeting; "" = "localhost"
	ErrorLog smtp.Logger // go-smtp's internal errors; nil = discarded
}

// Message is one accepted message.
type Message struct {
	From     string
	To       []string
	Data     []byte               // as received, dot-unstuffed
	AuthUser string               // "" if the session did not authenticate
	AuthMech string               // "PLAIN", "LOGIN", "XOAUTH2"; "" without AUTH
	TLS      *tls.ConnectionState // nil if the session was plaintext
	Received time.Time            // when the server accepted it (before its 250 reply)
}

// Server is a running fake upstream.
type Server struct {
	opts  Options // hooks are read from hooks, below, not from here
	addr  *net.TCPAddr
	certs *certs
	srv   *smtp.Server

	lnMu      sync.Mutex    // serializes Down, Up and Close
	ln        net.Listener  // nil while down
	serveDone chan struct{} // closed when Serve on ln has returned
	closed    bool

	mu      sync.Mutex
	conns   map[net.Conn]struct{} // open accepted connections
	nconns  int
	nauth   int
	nmail   int
	msgs    []Message
	changed chan struct{} // closed and replaced when msgs grows or conns changes
	hooks   hooks
}

type hooks struct {
	mail func(string) error
	rcpt func(string) error
	data func(*Message) error
}

// New starts a server on 127.0.0.1 with a system-chosen port.
func New(opts Options) (*Server, error) {
	s := &Server{
		opts:    opts,
		conns:   make(map[net.Conn]struct{}),
		changed: make(chan struct{}),
		hooks:   hooks{mail: opts.MailErr, rcpt: opts.RcptErr, data: opts.DataErr},
	}
	var err error
	if s.certs, err = newCerts(&opts); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("mailsink: listen: %w", err)
	}
	s.addr = ln.Addr().(*net.TCPAddr)
	s.srv = s.newSMTPServer()
	s.serve(ln)
	return s, nil
}

func (s *Server) newSMTPServer() *smtp.Server {
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = s.opts.Domain
	if srv.Domain == "" {
		srv.Domain = "localhost"
	}
	// go-smtp sets no limits by default (security.md G9).
	srv.MaxMessageBytes = 64 << 20
	srv.MaxRecipients = 1000
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = s.opts.ErrorLog
	if srv.ErrorLog == nil {
		srv.ErrorLog = log.New(io.Discard, "", 0)
	}
	// AUTH is allowed only over TLS, except in Plain mode. The session enforces
	// that (session.authOK), so that go-smtp hands it every AUTH command and
	// a client that sends credentials in plaintext is counted, not hidden
	// behind go-smtp's own 523.
	srv.AllowInsecureAuth = true
	// Never srv.Debug: it would copy AUTH and bodies somewhere (G14).
	switch {
	case s.opts.Mode == ImplicitTLS, s.opts.Mode == StartTLS && !s.opts.NoStartTLS:
		srv.TLSConfig = s.serverTLSConfig()
	}
	return srv
}

func (s *Server) serverTLSConfig() *tls.Config {
	cfg := &tls.Config{
		Certificates: []tls.Certificate{s.certs.leaf},
		MinVersion:   tls.VersionTLS12,
	}
	s.applyTLSOptions(cfg)
	return cfg
}

// Addr returns the listening address, "127.0.0.1:port".
func (s *Server) Addr() string { return s.addr.String() }

// Host returns "127.0.0.1".
func (s *Server) Host() string { return s.addr.IP.String() }

// Port returns the listening port.
func (s *Server) Port() int { return s.addr.Port }

// Mode returns the server's mode.
func (s *Server) Mode() Mode { return s.opts.Mode }

// RootCAs returns a pool that trusts the server's certificate, unless the
// server was started with Options.Untrusted.
func (s *Server) RootCAs() *x509.CertPool { return s.certs.pool.Clone() }

// CACertPEM returns the CA of RootCAs, PEM-encoded (to write a ca_file).
func (s *Server) CACertPEM() []byte { return append([]byte(nil), s.certs.caPEM...) }

// Messages returns a copy of the messages accepted so far, in order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// WaitMessages blocks until at least n messages have been accepted or ctx is
// done. It returns the messages accepted so far, and ctx.Err() if it gave up.
func (s *Server) WaitMessages(ctx context.Context, n int) ([]Message, error) {
	for {
		s.mu.Lock()
		if len(s.msgs) >= n {
			msgs := append([]Message(nil), s.msgs...)
			s.mu.Unlock()
			return msgs, nil
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return s.Messages(), ctx.Err()
		}
	}
}

// Connections returns how many TCP connections the server has accepted.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nconns
}

// AuthAttempts returns how many AUTH commands naming a mechanism the server
// received, in plaintext or over TLS, whatever their outcome.
func (s *Server) AuthAttempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nauth
}

// MailAttempts returns how many MAIL commands the server received, whatever
// their outcome.
func (s *Server) MailAttempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nmail
}

// SetMailErr replaces the MAIL reply hook; nil accepts.
func (s *Server) SetMailErr(f func(from string) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks.mail = f
}

// SetRcptErr replaces the RCPT reply hook; nil accepts.
func (s *Server) SetRcptErr(f func(to string) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks.rcpt = f
}

// SetDataErr replaces the end-of-DATA reply hook; nil accepts.
func (s *Server) SetDataErr(f func(m *Message) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks.data = f
}

func (s *Server) currentHooks() hooks {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hooks
}

func (s *Server) record(m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
	s.notifyLocked()
}

// notifyLocked wakes the Wait* calls. Hold s.mu.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Close stops the server: it closes the listener and every connection, then
// waits for all of the server's goroutines. It is safe to call more than once.
func (s *Server) Close() error {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.stopListening()
	// Shutdown waits for go-smtp's connection goroutines; they end promptly
	// because their connections are closed. Its own listener errors are
	// second closes and are ignored.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if serr := s.srv.Shutdown(ctx); errors.Is(serr, context.DeadlineExceeded) {
		return fmt.Errorf("mailsink: connections still open after 30s: %w", serr)
	}
	return err
}

// serve starts go-smtp's Serve on ln; the caller holds lnMu (or owns s).
func (s *Server) serve(ln net.Listener) {
	l := &listener{Listener: ln, s: s}
	done := make(chan struct{})
	s.ln, s.serveDone = l, done
	go func() {
		defer close(done)
		s.srv.Serve(l) // returns when l is closed
	}()
}

// stopListening closes the listener, waits for its Serve to return (so no
// connection is accepted after this), then closes every open connection.
// The caller holds lnMu.
func (s *Server) stopListening() error {
	if s.ln == nil {
		return nil
	}
	err := s.ln.Close()
	<-s.serveDone
	s.ln = nil
	s.mu.Lock()
	open := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		open = append(open, c)
	}
	s.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
	return err
}

var errClosed = errors.New("mailsink: server closed")

// Down simulates an upstream outage: the server stops listening, so new
// connections are refused, and the open ones are cut. Up undoes it.
func (s *Server) Down() error {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.closed {
		return errClosed
	}
	return s.stopListening()
}

// Up listens again on the same address after Down. It fails if another
// process took the port meanwhile. Up on a running server does nothing.
func (s *Server) Up() error {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	switch {
	case s.closed:
		return errClosed
	case s.ln != nil:
		return nil
	}
	ln, err := net.Listen("tcp", s.addr.String())
	if err != nil {
		return fmt.Errorf("mailsink: listen again: %w", err)
	}
	s.serve(ln)
	return nil
}
