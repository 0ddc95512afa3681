// Package upstream delivers spooled mail to an upstream provider, one attempt
// per call, under that provider's exact policy. *Client implements
// delivery.Deliverer.
//
// Contract:
//   - TLS is never optional. Mode implicit speaks TLS from the first byte;
//     mode starttls sends nothing but EHLO and STARTTLS in plaintext, and a
//     server that does not offer STARTTLS gets no AUTH, no MAIL and no message
//     (no fallback). Certificates are verified against the provider's roots,
//     server name and pins, within its TLS versions and suites (TLSConfig);
//     only tls.insecure_skip_verify, a loud per-provider opt-in, turns the
//     chain and name checks off. Mode none (plaintext) is accepted only for
//     a loopback host.
//   - The TLS handshake is complete and verified before any credential is
//     sent (G13), and AUTH PLAIN, LOGIN or XOAUTH2 is used only if the server
//     offers it (auth.go). XOAUTH2 tokens come from the provider's OAuth2
//     token endpoint, cached per provider (xoauth2.go).
//   - With the provider's rewrite_sender, the envelope sender and From: are
//     rewritten on the way out; the spooled message never changes (send.go).
//   - Every reply has a whole deadline that slow bytes cannot extend, every
//     write a progress deadline, and every attempt a total deadline, all
//     from the provider's timeouts (deadline.go); replies are bounded in
//     size, and cancelling ctx closes the connection (G11, G12).
//   - Each recipient gets its own Result. Errors are *Error, classified here
//     once: temporary, except a 5yz reply to MAIL, RCPT (but 552) or DATA.
//     An AUTH rejection is temporary: a rotated password must not dead-letter
//     the queue. Nothing is retried here, but one XOAUTH2 AUTH whose token
//     was refused (535), with a new token; the queue owns retries and failover.
//   - Credentials are never logged or put in an error, and go-smtp's
//     DebugWriter is never set (G14).
//   - Connections are reused (pool.go): after a delivery that left the
//     session in step, RSET and the connection waits, idle, for the next
//     delivery to the same provider, which checks it with NOOP first, up to
//     the provider's max_messages_per_connection and for its idle_timeout.
//     It keeps the TLS and AUTH state it was set up with. A reused connection
//     that fails before MAIL FROM is accepted is replaced by a fresh one in
//     the same attempt; after that, never, so no message goes twice. No
//     connection is reused after a 421, a timeout or a protocol error.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/tlsrelay/tlsrelay/delivery"
	"github.com/tlsrelay/tlsrelay/policy"
)

// Client delivers mail to the providers it knows. Its fields are read-only
// once Deliver has been called; Deliver is safe for concurrent use. Close
// closes the idle connections it keeps for reuse.
type Client struct {
	Providers map[string]*policy.Provider
	HelloName string // EHLO name; "" = "localhost"
	// Dial opens the TCP connection; nil = a net.Dialer. A seam for tests.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Timeout, if set, caps every per-provider wait (providers.*.timeouts:
	// connect, greeting, command) but the end of data's, each write and the
	// token fetch: tests and the probe use it; 0 = the provider's timeouts.
	Timeout time.Duration
	// DataTimeout, if set, caps the wait for the reply to the end of the body
	// (providers.*.timeouts.data_end; tests use it). That wait is longer than
	// the others because giving up after the provider may have accepted the
	// message means delivering it twice on the retry.
	DataTimeout time.Duration
	Log         *slog.Logger // nil = discard
	// HTTPClient asks OAuth2 token endpoints for XOAUTH2 access tokens;
	// nil = http.DefaultClient (each request bounded by tokenTimeout).
	HTTPClient *http.Client
	// Now is the clock that tells when a cached access token expires;
	// nil = time.Now. A seam for tests.
	Now func() time.Time

	expiry certWatch   // upstream certificates' expiry (certwatch.go)
	tokens tokenCaches // XOAUTH2 access tokens, per provider (xoauth2.go)
	pool   pool        // idle connections kept for reuse, per provider (pool.go)
	// noopIdle overrides defaultNoopAfter (tests: negative = NOOP always).
	noopIdle time.Duration

	provMu   sync.RWMutex
	reloaded map[string]*policy.Provider // set by SetProviders; replaces Providers
}

var _ delivery.Deliverer = (*Client)(nil)

func (c *Client) helloName() string {
	if c.HelloName != "" {
		return c.HelloName
	}
	return "localhost"
}

// dial opens a TCP connection to addr within the connect timeout.
func (c *Client) dial(ctx context.Context, addr string, within time.Duration) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var conn net.Conn
	var err error
	if c.Dial != nil {
		conn, err = c.Dial(dctx, "tcp", addr)
	} else {
		var d net.Dialer
		conn, err = d.DialContext(dctx, "tcp", addr)
	}
	if err != nil && dctx.Err() != nil && ctx.Err() == nil {
		err = notComplete("connect to "+addr, within, err)
	}
	return conn, err
}

// Deliver makes one attempt to hand msg to provider for rcpts. It returns one
// Result per recipient, in order; see the package comment for the errors.
func (c *Client) Deliver(ctx context.Context, provider string, msg *delivery.Message, rcpts []string) []delivery.Result {
	d := &attempt{
		c:       c,
		ctx:     ctx,
		name:    provider,
		msg:     msg,
		rcpts:   rcpts,
		results: make([]delivery.Result, len(rcpts)),
		pending: make([]bool, len(rcpts)),
	}
	if len(rcpts) == 0 {
		return d.results
	}
	for i := range d.pending {
		d.pending[i] = true
	}
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d.log = log.With("provider", provider)
	if msg != nil {
		d.log = d.log.With("id", msg.ID)
	}
	err := d.run()
	if err != nil {
		d.log.Debug("upstream session failed", "error", err)
	}
	d.finish(err)
	if d.cancel != nil {
		d.cancel()
	}
	return d.results
}

// delivery is the state of one Deliver call.
type attempt struct {
	c      *Client
	ctx    context.Context // the caller's, bounded by the attempt's deadline (bound)
	cancel context.CancelFunc
	name   string
	p      *policy.Provider
	t      policy.Timeouts // p's, capped by the Client's overrides
	// end is the attempt's deadline, endAfter from its start; endWhat names
	// it in errors ("attempt not finished after 30m0s").
	end      time.Time
	endAfter time.Duration
	endWhat  string
	msg      *delivery.Message
	rcpts    []string
	results  []delivery.Result
	pending  []bool // no outcome yet: gets the error that ends the session
	log      *slog.Logger
	out      *outgoing // the envelope and body to send, once computed (send.go)

	session             // the connection in use: dialled, or taken from the pool
	stop    func() bool // unregisters the close on ctx cancellation
	mailOK  bool        // the server accepted MAIL FROM on this session
	broken  bool        // the server replied 421 (closing): never reuse
	// txnDone: the server accepted the end of DATA, which ends the mail
	// transaction (RFC 5321 4.1.1.4): no RSET is needed before the next.
	txnDone bool
}

// session is an upstream connection and its SMTP state. A delivery owns the
// one it uses; between deliveries, the pool owns it (pool.go).
type session struct {
	raw     net.Conn      // the TCP connection; closed by close
	conn    *deadlineConn // raw with per-operation deadlines
	smtp    *smtpConn     // what sc reads and writes (inside TLS, if any)
	sc      *smtp.Client
	tlsInfo string           // "TLS 1.3 TLS_AES_128_GCM_SHA256", "none", or "" before it is known
	secure  bool             // a TLS handshake completed and the certificate was verified
	ready   bool             // set up as the policy says (TLS, AUTH): MAIL may follow
	msgs    int              // MAIL commands sent on it, the current one included
	prov    *policy.Provider // the policy it was set up under (TLS, AUTH)
	// timer closes the session when it has been idle for the provider's
	// idle_timeout; set while the pool holds it.
	timer *time.Timer
	// parked is when the pool took it (monotonic): a reuse after more than
	// noopAfter checks it with NOOP first.
	parked time.Time
}

// run makes the attempt: on an idle connection of the provider if one is
// alive, else (or if that one fails before MAIL FROM is accepted) on a new one.
func (d *attempt) run() (err error) {
	if err := d.configure(); err != nil {
		return err
	}
	d.cancel = d.bound("attempt", d.t.Attempt)
	if d.reuse() {
		err = d.send()
		if !d.redial(err) {
			d.release(err)
			return err
		}
		d.log.Debug("reused upstream connection failed before MAIL was accepted; dialling a new one", "error", err)
		d.discard()
	}
	if err := d.connect(); err != nil {
		return err
	}
	defer func() { d.release(err) }()
	if err := d.setup(); err != nil {
		return err
	}
	return d.send()
}

// setup secures a new connection as the policy says, says EHLO and
// authenticates.
func (d *attempt) setup() (err error) {
	switch d.p.TLS.Mode {
	case policy.TLSImplicit:
		err = d.implicitTLS()
	case policy.TLSStartTLS:
		err = d.startTLS()
	default:
		d.tlsInfo = "none"
		err = d.hello(newSMTPConn(d.conn))
	}
	if err != nil {
		return err
	}
	if err := d.auth(); err != nil {
		return err
	}
	d.ready, d.prov = true, d.p
	return nil
}

func configErr(format string, args ...any) *Error {
	return &Error{Op: "config", Err: fmt.Errorf(format, args...)}
}

// configure checks what policy validated already: a wrong config must fail
// closed here too, never fall back to plaintext or skip AUTH.
func (d *attempt) configure() error {
	p := d.c.provider(d.name)
	switch {
	case p == nil:
		return configErr("unknown provider %q", d.name)
	case d.msg == nil || d.msg.Body == nil:
		return configErr("no message body")
	}
	switch p.TLS.Mode {
	case policy.TLSImplicit, policy.TLSStartTLS:
	case policy.TLSNone:
		if !isLoopback(p.Host) {
			return configErr("provider %s: tls mode none is only for a loopback host, not %q", d.name, p.Host)
		}
	default:
		return configErr("provider %s: unknown tls mode %q", d.name, p.TLS.Mode)
	}
	switch p.Auth.Mechanism {
	case "", "plain", "login", "auto":
	case "xoauth2":
		if p.Auth.OAuth2 == nil {
			return configErr("provider %s: auth mechanism xoauth2 without auth.oauth2", d.name)
		}
	default:
		return configErr("provider %s: auth mechanism %q is not supported", d.name, p.Auth.Mechanism)
	}
	if strings.ContainsAny(d.c.helloName(), " \t\r\n") {
		return configErr("hello name %q is not a host name", d.c.helloName())
	}
	d.p, d.t = p, d.c.timeouts(p)
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (d *attempt) connect() error {
	addr := d.p.Addr()
	raw, err := d.c.dial(d.ctx, addr, d.t.Connect)
	if err != nil {
		return &Error{Op: "dial", Err: err}
	}
	d.raw = raw
	d.conn = &deadlineConn{Conn: raw, write: d.c.capped(writeTimeout)}
	d.conn.limit(d.endWhat, d.end, d.endAfter)
	d.stop = context.AfterFunc(d.ctx, func() { raw.Close() })
	d.log.Debug("upstream connected", "addr", addr, "tls_mode", string(d.p.TLS.Mode))
	return nil
}

// close says QUIT if the session is in step (no error, or the last error was
// a reply), then closes the connection.
func (d *attempt) close(err error) {
	var e *Error
	if d.sc != nil && (err == nil || errors.As(err, &e) && e.Code != 0) {
		d.conn.expect("reply to QUIT", quitTimeout)
		d.sc.Quit() // best effort: the outcome is already known
	}
	d.stop()
	d.raw.Close()
}

// hello makes the go-smtp client on conn, reads the greeting (unless conn
// replays one) and says EHLO, each reply within its own deadline.
func (d *attempt) hello(conn *smtpConn) error {
	conn.dl = d.conn
	d.conn.await("upstream greeting", d.t.Greeting)
	d.conn.expect("reply to EHLO", d.t.Command) // and to HELO, if EHLO is refused
	// Never set sc.DebugWriter: it copies AUTH and bodies (G14).
	d.sc, d.smtp = smtp.NewClient(conn), conn
	if err := conn.check(d.sc.Hello(d.c.helloName())); err != nil {
		op := "ehlo"
		if conn.writes == 0 {
			op = "greeting"
		}
		d.sc = nil // go-smtp keeps the error: no QUIT is possible
		return setupErr(op, err)
	}
	return nil
}

// finish gives every recipient without an outcome the error that ended the
// session: no recipient is ever left looking delivered by default.
func (d *attempt) finish(err error) {
	if err == nil {
		err = &Error{Op: "data", Err: errors.New("upstream: no outcome for this recipient")}
	}
	var e *Error
	if ctxErr := d.ctx.Err(); ctxErr != nil && errors.As(err, &e) && e.Code == 0 {
		var late *deadlineError
		if errors.As(context.Cause(d.ctx), &late) {
			e.Err = d.lateErr(e.Err) // the attempt's deadline, not the caller's
		} else if !errors.Is(e, ctxErr) {
			e.Err = fmt.Errorf("%w (%w)", e.Err, ctxErr)
		}
	}
	for i, p := range d.pending {
		if p {
			d.set(i, delivery.Result{Err: err})
		}
	}
}

// set records the outcome for recipient i.
func (d *attempt) set(i int, r delivery.Result) {
	var e *Error
	if errors.As(r.Err, &e) {
		r.Reply = e.reply()
		d.broken = d.broken || e.Code == 421
	}
	r.TLS = d.tlsInfo
	d.results[i] = r
	d.pending[i] = false
}
