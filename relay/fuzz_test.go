package relay

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// fuzzConn is the server's end of a fuzz session's pipe; closed is closed
// when the relay closes it, that is when go-smtp's handler has returned.
type fuzzConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *fuzzConn) RemoteAddr() net.Addr {
	return net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:4000"))
}

func (c *fuzzConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// fuzzServer is a relay for FuzzSession: inbound AUTH and STARTTLS on, short
// timeouts, one per line-ending mode.
func fuzzServer(f *testing.F, mode func(*Options)) (*Server, *fakeSpool, *pipeListener) {
	spool := &fakeSpool{}
	tlsMod, _ := withTLS(f, tls.VersionTLS12)
	o := testOptions()
	o.Spool = spool
	o.Listen.ReadTimeout = 200 * time.Millisecond
	o.Listen.SessionTimeout = 2 * time.Second
	o.Listen.MaxMessageBytes = 64 << 10
	both(withUsers, tlsMod, func(o *Options) { o.maxCommands = 200 })(&o)
	if mode != nil {
		mode(&o)
	}
	srv, err := New(o)
	if err != nil {
		f.Fatal(err)
	}
	l := newPipeListener()
	go srv.Serve(l)
	f.Cleanup(func() { l.Close(); srv.smtp.Close() })
	return srv, spool, l
}

// FuzzSession drives one relay session over a net.Pipe with the fuzz input
// as everything the client sends. It checks that nothing panics, that the
// session ends within a bound after the input does (no hang), and that
// whatever was spooled is CRLF only, with no bare CR or LF. The first byte
// picks line_endings: even reject, odd fix.
func FuzzSession(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add([]byte("\x00" + s))
		f.Add([]byte("\x01" + s))
	}
	type target struct {
		srv   *Server
		spool *fakeSpool
		l     *pipeListener
	}
	var targets [2]target
	for i, mode := range []func(*Options){nil, fixMode} {
		srv, spool, l := fuzzServer(f, mode)
		targets[i] = target{srv, spool, l}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		tg := targets[data[0]&1]
		tg.spool.mu.Lock()
		tg.spool.msgs = nil
		tg.spool.mu.Unlock()
		runFuzzSession(t, tg.l, data[1:])
		for _, m := range tg.spool.messages() {
			body := []byte(m.body)
			if bytes.Contains(bytes.ReplaceAll(body, []byte("\r\n"), nil), []byte("\r")) ||
				bytes.Contains(bytes.ReplaceAll(body, []byte("\r\n"), nil), []byte("\n")) {
				t.Fatalf("spooled a bare CR or LF: %q", m.body)
			}
			if !strings.HasPrefix(m.body, "Received: ") || (len(body) > 0 && !bytes.HasSuffix(body, []byte("\r\n"))) {
				t.Fatalf("spooled body %q", m.body)
			}
		}
	})
}

// runFuzzSession sends in as the client and waits, bounded, for the end.
func runFuzzSession(t *testing.T, l *pipeListener, in []byte) {
	server, client := net.Pipe()
	fc := &fuzzConn{Conn: server, closed: make(chan struct{})}
	select {
	case l.conns <- fc:
	case <-time.After(5 * time.Second):
		t.Fatal("the listener did not accept")
	}
	client.SetDeadline(time.Now().Add(5 * time.Second))
	go io.Copy(io.Discard, client) // the replies
	client.Write(in)               // returns once the relay has read it all, or has closed
	client.Close()
	select {
	case <-fc.closed:
	case <-time.After(10 * time.Second):
		t.Fatalf("the session did not end within 10s of its input")
	}
}

// fuzzSeeds are client streams for both fuzzers' corpora.
func fuzzSeeds() []string {
	txn := "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
	return []string{
		"EHLO x\r\nAUTH PLAIN " + plainIR(testUser, testUserPass) + "\r\n" + txn + "Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
		"EHLO x\r\nAUTH LOGIN\r\n" + b64(testUser) + "\r\n" + b64(testUserPass) + "\r\n" + txn + "a\nb\n.\n\r\n.\r\n",
		"EHLO x\r\nAUTH PLAIN " + plainIR(testUser, testUserPass) + "\r\n" + txn + "x\r\r\n.\r\nQUIT\r\n",
		"EHLO x\r\nAUTH PLAIN " + plainIR(testUser, testUserPass) + "\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nBDAT 5 LAST\r\nab\ncdQUIT\r\n",
		"EHLO x\r\nSTARTTLS\r\nMAIL FROM:<x@y.z>\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GARBAGE\r\nGARBAGE\r\nGARBAGE\r\nGARBAGE\r\nEHLO x\r\n" + txn + "x\r\n.\r\n",
		"EHLO x\nMAIL FROM:<\"a b\"@x.y>\nRCPT TO:<\"v@e> ORCPT=x\"@a.b>\n",
	}
}

// FuzzAddress checks the address grammar: no panic, an accepted address
// has no CR, LF, NUL, space or angle bracket in the form that is spooled
// and sent, and that form reads back (as go-smtp unquotes it) to the same.
func FuzzAddress(f *testing.F) {
	for _, s := range []string{"a@example.com", `a..b@x.y`, "x@[127.0.0.1]", "x@[IPv6:::1]", "a b@c.d",
		"victim@evil.test> ORCPT=rfc822;x@allowed.test", "é@x.y", "a@b@c", "a%b@c.d", strings.Repeat("a", 64) + "@b.c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := parseAddress(s)
		if err != nil {
			return
		}
		out := a.String()
		if strings.ContainsAny(out, "\r\n\x00 <>\\") || len(out) > maxAddressBytes+2 {
			t.Fatalf("parseAddress(%q) renders %q", s, out)
		}
		back, err := parseAddress(unquote(out))
		if err != nil || back != a || back.String() != out {
			t.Fatalf("%q -> %q -> %q, %v: does not round-trip", s, out, back.String(), err)
		}
	})
}

// unquote is what go-smtp's parser makes of a rendered address.
func unquote(s string) string {
	if rest, ok := strings.CutPrefix(s, `"`); ok {
		i := strings.Index(rest, `"@`)
		return rest[:i] + rest[i+1:]
	}
	return s
}
