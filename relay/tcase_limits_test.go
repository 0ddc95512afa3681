package relay

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// security.md (b), "Resource limits and denial of service" (inbound): T32(b),
// T34-T39, and the header size limit.

// TestT32MailLoop (b): more than 100 Received: fields is a loop, 554 5.4.6.
// (a), a provider pointing back at the relay, is refused by policy
// (policy/tcase_listen_test.go).
func TestT32MailLoop(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.hello()
	c.envelope("a@example.com", "b@example.net")
	c.send(strings.Repeat("Received: from x by y; date\r\n", maxReceived) + "Subject: ok\r\n\r\nbody\r\n.\r\n")
	c.expect("250 ")
	c.envelope("a@example.com", "b@example.net")
	c.send(strings.Repeat("received: from x by y; date\r\n", maxReceived+1) + "\r\nbody\r\n.\r\n")
	c.expect("554 5.4.6 ")
	c.cmd("NOOP", "250 ")
	if m := ts.spool.messages(); len(m) != 1 {
		t.Errorf("spool has %d messages, want 1", len(m))
	}
}

// TestHeaderTooBig: a header past maxHeaderBytes gets 552 5.3.4; the same
// bytes in the body pass.
func TestHeaderTooBig(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.Listen.MaxMessageBytes = 4 << 20 })
	c := dial(t, ts.addr)
	c.hello()
	field := "X-Long: " + strings.Repeat("x", 900) + "\r\n"
	c.envelope("a@example.com", "b@example.net")
	c.send(strings.Repeat(field, maxHeaderBytes/len(field)+1) + "\r\nbody\r\n.\r\n")
	c.expect("552 5.3.4 message header")
	c.envelope("a@example.com", "b@example.net")
	c.send("Subject: x\r\n\r\n" + strings.Repeat(field, maxHeaderBytes/len(field)+1) + ".\r\n")
	c.expect("250 ")
}

// TestT34Size: SIZE over the limit at MAIL, a body over it after the
// terminator, both 552 5.3.4, in sync; EHLO says the limit.
func TestT34Size(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.Listen.MaxMessageBytes = 1000 })
	c := dial(t, ts.addr)
	c.expect("220 ")
	if caps := c.ehlo("x"); !slices.Contains(caps, "SIZE 1000") {
		t.Errorf("EHLO = %q, want SIZE 1000", caps)
	}
	c.cmd("MAIL FROM:<a@example.com> SIZE=1001", "552 5.3.4 ")
	c.envelope("a@example.com", "b@example.net")
	c.send(strings.Repeat("0123456789\r\n", 100) + ".\r\n")
	c.expect("552 5.3.4 ")
	c.cmd("NOOP", "250 ")
	if m := ts.spool.messages(); len(m) != 0 {
		t.Errorf("spool = %q", m)
	}
}

// TestT35Idle: silence, or half a command, gets 421 4.4.2 and a close.
func TestT35Idle(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.Listen.ReadTimeout = 200 * time.Millisecond })
	c := dial(t, ts.addr)
	c.expect("220 ")
	c.expect("421 4.4.2 ")
	c.expectEOF()
	c = dial(t, ts.addr)
	c.expect("220 ")
	c.send("EHLO half-a-comm")
	c.expect("421 4.4.2 ")
	c.expectEOF()
}

// TestT36TrickledData: one byte at a time past the DATA deadline: 421 4.4.2
// (not go-smtp's 554, G10), nothing queued.
func TestT36TrickledData(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.Listen.ReadTimeout = 300 * time.Millisecond })
	c := dial(t, ts.addr)
	c.hello()
	c.envelope("a@example.com", "b@example.net")
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		<-tick.C
		if _, err := c.conn.Write([]byte("x")); err != nil {
			break // closed
		}
		if i > 100 {
			t.Fatal("still open after 5s of trickling")
		}
		c.conn.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if line, err := c.r.ReadString('\n'); err == nil {
			if !strings.HasPrefix(line, "421 4.4.2 ") {
				t.Fatalf("reply %q, want 421 4.4.2", line)
			}
			break
		}
	}
	if m := ts.spool.messages(); len(m) != 0 {
		t.Errorf("spool = %q", m)
	}
}

// TestT37KeepAliveFlood: session_timeout ends a busy session with 421
// 4.4.2, and the command cap ends one with 421 4.7.0.
func TestT37KeepAliveFlood(t *testing.T) {
	t.Run("lifetime", func(t *testing.T) {
		ts := startServer(t, func(o *Options) { o.Listen.SessionTimeout = 300 * time.Millisecond })
		c := dial(t, ts.addr)
		c.hello()
		deadline := time.Now().Add(testWait)
		for time.Now().Before(deadline) {
			c.send("NOOP\r\n")
			if got := c.reply(); strings.HasPrefix(got, "421 4.4.2 relay.test session time limit") {
				c.expectEOF()
				return
			} else if !strings.HasPrefix(got, "250 ") {
				t.Fatalf("reply %q", got)
			}
		}
		t.Fatal("the session outlived session_timeout")
	})
	t.Run("commands", func(t *testing.T) {
		ts := startServer(t, func(o *Options) { o.maxCommands = 20 })
		c := dial(t, ts.addr)
		c.hello()
		for i := range 19 { // 20 commands with the EHLO
			c.cmd([]string{"RSET", "NOOP"}[i%2], "250 ")
		}
		c.cmd("NOOP", "421 4.7.0 relay.test too many commands")
		c.expectEOF()
	})
}

// TestT38ConnectionFlood: past max_connections and max_connections_per_ip,
// 421 4.7.0 at once; a legitimate client gets in when a slot frees.
func TestT38ConnectionFlood(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.Listen.MaxConnections = 5; o.Listen.MaxConnectionsPerIP = 3 })
	var held []*client
	for range 3 {
		c := dial(t, ts.addr)
		c.expect("220 ")
		held = append(held, c)
	}
	c := dial(t, ts.addr)
	c.expect("421 4.7.0 relay.test too many connections from your address")
	c.expectEOF()
	// Other client addresses still get in, up to max_connections.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: testWait}
	if nc, err := d.Dial("tcp", ts.addr); err == nil {
		o := &client{t: t, conn: nc, r: newReader(nc)}
		t.Cleanup(func() { nc.Close() })
		nc.SetDeadline(time.Now().Add(testWait))
		o.expect("220 ")
	}
	held[0].cmd("QUIT", "221 ")
	held[0].expectEOF()
	c = dial(t, ts.addr)
	c.hello()
	c.envelope("a@example.com", "b@example.net")
	c.send("x\r\n.\r\n")
	c.expect("250 ")
	if logs := ts.logs.String(); !strings.Contains(logs, "code=421") {
		t.Errorf("no rejected event:\n%s", logs)
	}
}

// TestT39DisconnectMidData: a close or a reset mid-DATA queues nothing.
func TestT39DisconnectMidData(t *testing.T) {
	for _, reset := range []bool{false, true} {
		ts := startServer(t, nil)
		c := dial(t, ts.addr)
		c.hello()
		c.envelope("a@example.com", "b@example.net")
		c.send("Subject: x\r\n\r\nhalf a bo")
		if tc, ok := c.conn.(*net.TCPConn); ok && reset {
			tc.SetLinger(0)
		}
		c.conn.Close()
		ts.stop(t) // waits for the session to end
		if m := ts.spool.messages(); len(m) != 0 {
			t.Errorf("reset=%v: spool = %q", reset, m)
		}
	}
}
