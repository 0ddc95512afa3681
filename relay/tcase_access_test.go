package relay

import (
	"crypto/tls"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/policy"
)

// security.md (b), "Open relay and access control" (inbound): T23, T25,
// T27-T30, and inbound STARTTLS.

// TestT23CrossProtocol: an HTTP request line, or a header-shaped line, closes
// the connection before anything runs; pure SMTP from an SSRF (gopher) is
// stopped only by AUTH or the allow-lists.
func TestT23CrossProtocol(t *testing.T) {
	txn := "EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nx\r\n.\r\n"
	for name, in := range map[string]string{
		"POST with body":    "POST / HTTP/1.1\r\nHost: 127.0.0.1:2525\r\nContent-Length: 99\r\n\r\n" + txn,
		"GET":               "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT":           "CONNECT smtp.example:25 HTTP/1.1\r\n\r\n",
		"2-header POST":     "POST / HTTP/1.0\r\n" + txn,
		"header after EHLO": "EHLO x\r\nUser-Agent: curl/8\r\n" + txn,
	} {
		t.Run(name, func(t *testing.T) {
			ts := startServer(t, nil)
			c := dial(t, ts.addr)
			c.expect("220 ")
			c.send(in)
			got := c.readAll()
			if len(got) == 0 || !strings.HasPrefix(got[len(got)-1], "554 5.7.0 ") {
				t.Errorf("replies %q, want 554 5.7.0 and the close", got)
			}
			if m := ts.spool.messages(); len(m) != 0 {
				t.Errorf("spool = %q", m)
			}
		})
	}
	t.Run("gopher with AUTH and allow-lists", func(t *testing.T) {
		ts := startServer(t, both(withUsers, func(o *Options) { o.Listen.AllowedRecipients = []string{"*@allowed.test"} }))
		c := dial(t, ts.addr)
		c.expect("220 ")
		c.send(txn)
		c.expect("250 ")
		c.expect("530 5.7.0 ")
		c.expect("502 ")
		c.expect("502 ")
		if m := ts.spool.messages(); len(m) != 0 {
			t.Errorf("spool = %q", m)
		}
	})
}

// TestT25AuthBruteForce: 535 5.7.8 per failure, 421 4.7.0 at the third on a
// connection, a wait that grows per client address, and AUTH refused from
// that address once it has failed too often.
func TestT25AuthBruteForce(t *testing.T) {
	d := &delays{}
	ts := startServer(t, both(withUsers, func(o *Options) { o.sleep = d.sleep }))
	for i := 0; i < authFailuresPerIP; i += authFailuresPerConn {
		c := dial(t, ts.addr)
		c.hello()
		for j := 1; j <= authFailuresPerConn && i+j <= authFailuresPerIP; j++ {
			want := "535 5.7.8 "
			if j == authFailuresPerConn {
				want = "421 4.7.0 "
			}
			c.cmd("AUTH PLAIN "+plainIR(testUser, "bad-pw-Q9z"), want)
		}
	}
	c := dial(t, ts.addr)
	c.hello()
	c.cmd("AUTH PLAIN "+plainIR(testUser, testUserPass), "421 4.7.0 ") // blocked, even the right password
	c.expectEOF()
	got := d.list()
	if len(got) != authFailuresPerIP || got[0] != loginBaseDelay || got[1] != 2*loginBaseDelay || got[len(got)-1] != loginMaxDelay {
		t.Errorf("delays %v: want growing from %v to %v", got, loginBaseDelay, loginMaxDelay)
	}
	if logs := ts.logs.String(); strings.Contains(logs, "bad-pw-Q9z") || strings.Contains(logs, testUserPass) {
		t.Errorf("a password is in the log:\n%s", logs)
	}
}

// TestT27RecipientAllowList: 550 5.7.1 outside the list; domains ignore
// case; no trailing dot (501), no subdomains, no address literals.
func TestT27RecipientAllowList(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.Listen.AllowedRecipients = []string{"*@allowed.test", "one@other.test"} })
	c := dial(t, ts.addr)
	c.hello()
	c.cmd("MAIL FROM:<a@example.com>", "250 ")
	for rcpt, want := range map[string]string{
		"someone@notallowed.test": "550 5.7.1 ", "x@ALLOWED.TEST": "250 ", "x@allowed.test.": "501 5.1.3 ",
		"x@sub.allowed.test": "550 5.7.1 ", "x@xn--bcher-kva.example": "550 5.7.1 ", "x@[127.0.0.1]": "550 5.7.1 ",
		"ONE@other.test": "250 ", "two@other.test": "550 5.7.1 ",
	} {
		c.cmd("RCPT TO:<"+rcpt+">", want)
	}
}

// TestT28SenderAllowList: 550 5.7.1 outside the list, the null sender only
// with "<>", case ignored.
func TestT28SenderAllowList(t *testing.T) {
	for _, tc := range []struct {
		list  []string
		from  string
		allow bool
	}{
		{[]string{"*@sender.test"}, "evil@other.test", false},
		{[]string{"*@sender.test"}, "a@SENDER.TEST", true},
		{[]string{"*@sender.test"}, "", false},
		{[]string{"*@sender.test", "<>"}, "", true},
		{[]string{"*"}, "", false},
		{[]string{"*"}, "anyone@any.test", true},
		{nil, "", true},
	} {
		ts := startServer(t, func(o *Options) { o.Listen.AllowedSenders = tc.list })
		c := dial(t, ts.addr)
		c.hello()
		want := "550 5.7.1 "
		if tc.allow {
			want = "250 "
		}
		c.cmd("MAIL FROM:<"+tc.from+">", want)
	}
}

// TestT29OpenRelayBattery: only the allowed (sender, recipient) pairs pass;
// a client address outside allowed_networks is refused at connect.
func TestT29OpenRelayBattery(t *testing.T) {
	ts := startServer(t, func(o *Options) {
		o.Listen.AllowedSenders = []string{"a@sender.test"}
		o.Listen.AllowedRecipients = []string{"*@allowed.test"}
		o.Listen.AllowedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	senders := []string{"", "postmaster", "a@sender.test", "A@Sender.Test", "a@sender.test.evil"}
	rcpts := []string{"x@allowed.test", "x@evil.test", "x%evil.test@allowed.test", "@allowed.test:x@evil.test",
		`"x@evil.test"@allowed.test`, "x@allowed.test@evil.test"}
	var accepted []string
	for _, f := range senders {
		for _, r := range rcpts {
			c := dial(t, ts.addr)
			c.hello()
			if strings.HasPrefix(c.cmd("MAIL FROM:<"+f+">", ""), "250") &&
				strings.HasPrefix(c.cmd("RCPT TO:<"+r+">", ""), "250") {
				accepted = append(accepted, f+" -> "+r)
			}
			c.cmd("QUIT", "221 ")
			c.expectEOF() // the slot is free again
		}
	}
	want := []string{"a@sender.test -> x@allowed.test", "A@Sender.Test -> x@allowed.test"}
	if !slices.Equal(accepted, want) {
		t.Errorf("accepted %q, want %q", accepted, want)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: testWait}
	nc, err := d.Dial("tcp", ts.addr)
	if err != nil {
		t.Skipf("cannot connect from 127.0.0.2: %v", err)
	}
	c := &client{t: t, conn: nc, r: newReader(nc)}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(testWait))
	c.expect("554 5.7.1 ")
	c.expectEOF()
}

// TestT30InboundAuth: 530 before AUTH, 538 for plaintext AUTH off loopback,
// 535 for a wrong password, and both mechanisms work.
func TestT30InboundAuth(t *testing.T) {
	ts := startServer(t, withUsers)
	c := dial(t, ts.addr)
	c.expect("220 ")
	if caps := c.ehlo("x"); !slices.Contains(caps, "AUTH PLAIN LOGIN") {
		t.Errorf("EHLO = %q, want AUTH PLAIN LOGIN on loopback", caps)
	}
	c.cmd("MAIL FROM:<a@example.com>", "530 5.7.0 ")
	c.cmd("AUTH PLAIN "+plainIR(testUser, "wrong"), "535 5.7.8 ")
	c.cmd("AUTH PLAIN "+plainIR("nobody", testUserPass), "535 5.7.8 ")
	c.cmd("AUTH CRAM-MD5", "504 5.5.4 ")
	c.cmd("AUTH LOGIN", "334 "+b64("Username:"))
	c.cmd(b64(testUser), "334 "+b64("Password:"))
	c.cmd(b64(testUserPass), "235 ")
	c.envelope("a@example.com", "b@example.net")
	c.send("x\r\n.\r\n")
	c.expect("250 ")

	ps, l := startPipeServer(t, both(withUsers, func(o *Options) {
		o.Listen.AllowedNetworks = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
	}))
	r := pipeClient(t, l.dial("192.0.2.7:4000"))
	r.expect("220 ")
	if caps := r.ehlo("x"); slices.ContainsFunc(caps, func(c string) bool { return strings.HasPrefix(c, "AUTH") }) {
		t.Errorf("EHLO off loopback in plaintext = %q: AUTH must not be offered", caps)
	}
	r.cmd("AUTH PLAIN "+plainIR(testUser, testUserPass), "538 5.7.11 ")
	r.cmd("MAIL FROM:<a@example.com>", "530 5.7.0 ")
	if m := ps.spool.messages(); len(m) != 0 {
		t.Errorf("spool = %q", m)
	}
}

// TestInboundSTARTTLS: STARTTLS is offered, AUTH then works off loopback,
// plaintext pipelined after STARTTLS is dropped, and the guard keeps working
// inside TLS.
func TestInboundSTARTTLS(t *testing.T) {
	mod, pool := withTLS(t, tls.VersionTLS12)
	ts, l := startPipeServer(t, both(withUsers, mod, func(o *Options) {
		o.Listen.AllowedNetworks = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
	}))
	c := pipeClient(t, l.dial("192.0.2.7:4000"))
	c.expect("220 ")
	if caps := c.ehlo("x"); !slices.Contains(caps, "STARTTLS") {
		t.Fatalf("EHLO = %q, want STARTTLS", caps)
	}
	c.send("STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n") // CVE-2011-0411
	c.expect("220 ")
	tc := tls.Client(c.conn, &tls.Config{RootCAs: pool, ServerName: "relay.test"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.conn, c.r = tc, newReader(tc)
	c.cmd("MAIL FROM:<a@example.com>", "503 5.5.1 ") // EHLO first, after STARTTLS
	caps := c.ehlo("x")
	if slices.Contains(caps, "STARTTLS") || !slices.Contains(caps, "AUTH PLAIN LOGIN") {
		t.Errorf("EHLO inside TLS = %q", caps)
	}
	c.cmd("AUTH PLAIN "+plainIR(testUser, testUserPass), "235 ")
	c.envelope("a@example.com", "b@example.net")
	c.send("inside\r\n.\r\n")
	c.expect("250 ")
	c.envelope("a@example.com", "b@example.net")
	c.send("x\r\r\n.\r\n")
	c.expect("550 5.6.0 ") // the guard sees the plaintext inside TLS
	c.expectEOF()
	m := ts.spool.messages()
	if len(m) != 1 || m[0].from != "a@example.com" || m[0].client != "192.0.2.7" {
		t.Errorf("spool = %q", m)
	}
}

// TestInboundTLSVersions: TLS 1.1 clients are refused by default and taken
// with min_version 1.1 (the opt-in for old clients, inbound only).
func TestInboundTLSVersions(t *testing.T) {
	for _, tc := range []struct {
		min uint16
		ok  bool
	}{{tls.VersionTLS12, false}, {tls.VersionTLS11, true}} {
		mod, pool := withTLS(t, tc.min)
		ts := startServer(t, mod)
		c := dial(t, ts.addr)
		c.hello()
		c.cmd("STARTTLS", "220 ")
		cfg := &tls.Config{RootCAs: pool, ServerName: "relay.test", MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11}
		err := tls.Client(c.conn, cfg).Handshake()
		if (err == nil) != tc.ok {
			t.Errorf("min_version %x: TLS 1.1 handshake error %v, want ok=%v", tc.min, err, tc.ok)
		}
	}
	if (policy.ListenTLS{}).Cert != nil {
		t.Fatal("zero ListenTLS must be off")
	}
}
