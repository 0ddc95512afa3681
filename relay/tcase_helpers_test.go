package relay

import (
	"bufio"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/policy"
)

// Helpers for the security.md T-case tests (tcase_*_test.go).

// pipeListener is a net.Listener whose connections are net.Pipes that
// claim to come from a given address: a test can be a client that is not on
// loopback, and the fuzzer needs no sockets.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2525}
}

// dial hands the server one end of a new pipe, from the client address
// from, and returns the other end (nil once the listener is closed).
func (l *pipeListener) dial(from string) net.Conn {
	server, client := net.Pipe()
	sc := &addrConn{Conn: server, remote: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(from))}
	select {
	case l.conns <- sc:
		return client
	case <-l.done:
		server.Close()
		client.Close()
		return nil
	}
}

// addrConn is a net.Conn with a RemoteAddr of our choosing.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c *addrConn) RemoteAddr() net.Addr { return c.remote }

// startPipeServer runs a Server on a pipeListener; see startServer.
func startPipeServer(t *testing.T, mod func(*Options)) (*testServer, *pipeListener) {
	t.Helper()
	ts := &testServer{spool: &fakeSpool{}, logs: &smtptest.LogBuffer{}, done: make(chan error, 1)}
	o := testOptions()
	o.Spool = ts.spool
	o.Log = newTestLogger(ts.logs)
	if mod != nil {
		mod(&o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ts.Server = srv
	l := newPipeListener()
	go func() { ts.done <- srv.Serve(l) }()
	t.Cleanup(func() { ts.stop(t) })
	return ts, l
}

// pipeClient wraps a pipe end as a test client.
func pipeClient(t *testing.T, conn net.Conn) *client {
	t.Helper()
	if conn == nil {
		t.Fatal("the listener is closed")
	}
	conn.SetDeadline(time.Now().Add(testWait))
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// readAll reads replies until the server closes, each line without CRLF.
func (c *client) readAll() []string {
	c.t.Helper()
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if line != "" {
			lines = append(lines, strings.TrimSuffix(line, "\r\n"))
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !isReset(err) {
				c.t.Fatalf("reading replies: %v (after %q)", err, lines)
			}
			return lines
		}
	}
}

// ehlo sends EHLO and returns the capabilities (without the greeting line).
func (c *client) ehlo(name string) []string {
	c.t.Helper()
	c.send("EHLO " + name + "\r\n")
	var caps []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("EHLO: %v", err)
		}
		if !strings.HasPrefix(line, "250") {
			c.t.Fatalf("EHLO reply %q", line)
		}
		caps = append(caps, strings.TrimSpace(line[4:]))
		if line[3] == ' ' {
			return caps[1:]
		}
	}
}

// testCert writes a self-signed certificate for localhost, relay.test and
// 127.0.0.1 and its key to files, and returns them with a pool that trusts it.
func testCert(t testing.TB) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	kp, err := smtptest.SelfSigned("relay.test", "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, kp.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, kp.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, kp.Pool
}

// withTLS turns inbound STARTTLS on, with min as the lowest version.
func withTLS(t testing.TB, min uint16) (func(*Options), *x509.CertPool) {
	t.Helper()
	certFile, keyFile, pool := testCert(t)
	cc, err := policy.LoadClientCert(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return func(o *Options) {
		o.Listen.TLS = policy.ListenTLS{CertFile: certFile, KeyFile: keyFile, Cert: cc, MinVersion: min}
	}, pool
}

// Inbound AUTH accounts of the tests.
const (
	testUser     = "app"
	testUserPass = "in-pw-Kx7w-never-logged"
)

// withUsers turns inbound AUTH on with testUser, and failed logins wait no time.
func withUsers(o *Options) {
	o.Listen.Users = []policy.User{{Username: testUser, Password: policy.Secret(testUserPass), PasswordFrom: "env X"}}
	o.sleep = func(time.Duration) {}
}

// fixMode sets line_endings: fix.
func fixMode(o *Options) { o.Listen.LineEndings = policy.LineEndingsFix }

// both applies every mod in turn.
func both(mods ...func(*Options)) func(*Options) {
	return func(o *Options) {
		for _, m := range mods {
			m(o)
		}
	}
}

// assertClean fails if a spooled body has a CR or LF that is not part of CRLF.
func assertClean(t *testing.T, msgs []fakeMsg) {
	t.Helper()
	for _, m := range msgs {
		b := strings.ReplaceAll(m.body, "\r\n", "")
		if strings.ContainsAny(b, "\r\n") {
			t.Errorf("spooled body %q has a bare CR or LF", m.body)
		}
	}
}

// delays makes failed logins wait no time and records the waits asked for.
type delays struct {
	mu  sync.Mutex
	got []time.Duration
}

func (d *delays) sleep(x time.Duration) { d.mu.Lock(); d.got = append(d.got, x); d.mu.Unlock() }

func (d *delays) list() []time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]time.Duration(nil), d.got...)
}

func newTestLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// plainIR is the initial response of AUTH PLAIN for user and pass.
func plainIR(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
