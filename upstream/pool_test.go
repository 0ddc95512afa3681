package upstream

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/tlsrelay/tlsrelay/delivery"
	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/policy"
)

// reusing is a Client for a provider that keeps connections: the fake with
// AUTH over TLS (mode), at most maxMsgs messages per connection.
func reusing(t *testing.T, mode smtptest.Mode, maxMsgs int) (*smtptest.Server, *Client) {
	t.Helper()
	s := smtptest.Start(t, smtptest.Options{Mode: mode, Users: users, AuthRequired: true})
	pm := map[smtptest.Mode]policy.TLSMode{smtptest.ImplicitTLS: policy.TLSImplicit, smtptest.StartTLS: policy.TLSStartTLS, smtptest.Plain: policy.TLSNone}
	p := fakeProvider(s, pm[mode], "plain")
	p.MaxConnections, p.MaxMessagesPerConnection, p.IdleTimeout = 4, maxMsgs, time.Minute
	c, _ := newClient(t, p)
	t.Cleanup(func() { c.Close() })
	return s, c
}

// numbered is message n: its own Subject, so that each arrival can be told apart.
func numbered(n int) string {
	return fmt.Sprintf("From: app@example.com\r\nTo: b@example.net\r\nSubject: message %d\r\n\r\nbody of %d\r\n.dot line\r\n", n, n)
}

// send delivers message n to one recipient through "fake" (bounded by 20s).
func send(t *testing.T, c *Client, n int) delivery.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b := numbered(n)
	msg := &delivery.Message{ID: fmt.Sprint("m", n), From: "app@example.com", Size: int64(len(b)), Body: strings.NewReader(b)}
	return c.Deliver(ctx, "fake", msg, []string{"b@example.net"})[0]
}

// sendOK delivers messages from..to and fails the test unless each is accepted.
func sendOK(t *testing.T, c *Client, from, to int) []delivery.Result {
	t.Helper()
	var rs []delivery.Result
	for n := from; n <= to; n++ {
		r := send(t, c, n)
		if r.Err != nil {
			t.Fatalf("message %d: %v", n, r.Err)
		}
		rs = append(rs, r)
	}
	return rs
}

// arrived checks that the fake holds exactly messages 1..n, once each, intact.
func arrived(t *testing.T, s *smtptest.Server, n int) {
	t.Helper()
	msgs := s.Messages()
	if len(msgs) != n {
		t.Fatalf("the server has %d messages, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		if want := numbered(i + 1); !bytes.Equal(m.Data, []byte(want)) || m.From != "app@example.com" {
			t.Errorf("message %d arrived as %q from %q, want %q", i+1, m.Data, m.From, want)
		}
	}
}

// waitOpen waits (at most 10s) until the fake has n connections open.
func waitOpen(t *testing.T, s *smtptest.Server, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitOpenConnections(ctx, n); err != nil {
		t.Fatal(err)
	}
}

func TestReuseOneConnection(t *testing.T) {
	for _, mode := range []smtptest.Mode{smtptest.ImplicitTLS, smtptest.StartTLS} {
		t.Run(mode.String(), func(t *testing.T) {
			s, c := reusing(t, mode, 100)
			rs := sendOK(t, c, 1, 5)
			arrived(t, s, 5)
			if n, a, m := s.Connections(), s.AuthAttempts(), s.MailAttempts(); n != 1 || a != 1 || m != 5 {
				t.Errorf("connections %d, AUTH %d, MAIL %d; want 1, 1, 5", n, a, m)
			}
			for i, r := range rs {
				if !strings.HasPrefix(r.TLS, "TLS 1.3 ") || r.TLS != rs[0].TLS {
					t.Errorf("message %d: Result.TLS %q, want the first one's (TLS 1.3)", i+1, r.TLS)
				}
				if !strings.HasPrefix(r.Reply, "250 ") {
					t.Errorf("message %d: reply %q", i+1, r.Reply)
				}
			}
			for _, m := range s.Messages() {
				if m.TLS == nil || m.AuthUser != "alice" {
					t.Errorf("a message arrived without TLS or AUTH: %+v", m)
				}
			}
			if c.idleCount("fake") != 1 {
				t.Errorf("%d idle connections, want 1", c.idleCount("fake"))
			}
		})
	}
}

func TestMaxMessagesPerConnection(t *testing.T) {
	for _, tc := range []struct{ max, conns int }{{1, 5}, {2, 3}, {5, 1}} {
		t.Run(fmt.Sprint(tc.max), func(t *testing.T) {
			s, c := reusing(t, smtptest.ImplicitTLS, tc.max)
			sendOK(t, c, 1, 5)
			arrived(t, s, 5)
			if n := s.Connections(); n != tc.conns {
				t.Errorf("max_messages_per_connection %d: %d connections for 5 messages, want %d", tc.max, n, tc.conns)
			}
		})
	}
}

// A Provider built by hand (no MaxMessagesPerConnection) keeps nothing.
func TestNoReuseByDefault(t *testing.T) {
	s, c := reusing(t, smtptest.Plain, 0)
	sendOK(t, c, 1, 2)
	if n := s.Connections(); n != 2 || c.idleCount("fake") != 0 {
		t.Errorf("%d connections, %d idle; want 2, 0", n, c.idleCount("fake"))
	}
}

func TestServerDropsIdleConnection(t *testing.T) {
	s, c := reusing(t, smtptest.StartTLS, 100)
	sendOK(t, c, 1, 1)
	s.DropConnections()
	waitOpen(t, s, 0)
	rs := sendOK(t, c, 2, 3)
	arrived(t, s, 3)
	if n, m := s.Connections(), s.MailAttempts(); n != 2 || m != 3 {
		t.Errorf("connections %d, MAIL %d; want 2 (one redial), 3 (nothing twice)", n, m)
	}
	if !strings.HasPrefix(rs[0].TLS, "TLS ") {
		t.Errorf("Result.TLS after the redial = %q", rs[0].TLS)
	}
}

func TestIdleTimeout(t *testing.T) {
	s, c := reusing(t, smtptest.ImplicitTLS, 100)
	c.Providers["fake"].IdleTimeout = 50 * time.Millisecond
	sendOK(t, c, 1, 1)
	waitOpen(t, s, 0) // closed by the idle timer, and by nothing else here
	if n := c.idleCount("fake"); n != 0 {
		t.Errorf("%d idle connections after the idle timeout, want 0", n)
	}
	sendOK(t, c, 2, 2)
	arrived(t, s, 2)
	if n := s.Connections(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

func TestCloseClosesIdleConnections(t *testing.T) {
	s, c := reusing(t, smtptest.ImplicitTLS, 100)
	s2 := smtptest.Start(t, smtptest.Options{Mode: smtptest.StartTLS})
	p2 := fakeProvider(s2, policy.TLSStartTLS, "")
	p2.MaxMessagesPerConnection = 100
	c.Providers["other"] = p2
	sendOK(t, c, 1, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msg := &delivery.Message{ID: "o", From: "a@example.com", Body: strings.NewReader(body)}
	if r := c.Deliver(ctx, "other", msg, []string{"b@example.net"}); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	if s.OpenConnections() != 1 || s2.OpenConnections() != 1 {
		t.Fatalf("open connections %d and %d before Close, want 1 and 1", s.OpenConnections(), s2.OpenConnections())
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	waitOpen(t, s, 0)
	waitOpen(t, s2, 0)
	if c.idleCount("fake")+c.idleCount("other") != 0 {
		t.Error("idle connections left after Close")
	}
	// A delivery after Close works and keeps nothing.
	sendOK(t, c, 2, 2)
	arrived(t, s, 2)
	if c.idleCount("fake") != 0 {
		t.Error("a connection was kept after Close")
	}
	waitOpen(t, s, 0)
	c.Close() // twice is fine
}

// smtpErr421 is a server closing the session.
var smtpErr421 = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "closing"}

func TestNoReuseAfter421(t *testing.T) {
	t.Run("data", func(t *testing.T) {
		s, c := reusing(t, smtptest.ImplicitTLS, 100)
		sendOK(t, c, 1, 1)
		s.SetDataErr(func(*smtptest.Message) error { return smtpErr421 })
		wantErr(t, send(t, c, 2), "data", 421, true)
		s.SetDataErr(nil)
		sendOK(t, c, 3, 3)
		if n, m := s.Connections(), s.MailAttempts(); n != 2 || m != 3 {
			t.Errorf("connections %d, MAIL %d; want 2 (no reuse after the 421), 3", n, m)
		}
	})
	t.Run("rcpt", func(t *testing.T) {
		s, c := reusing(t, smtptest.ImplicitTLS, 100)
		s.SetRcptErr(func(string) error { return smtpErr421 })
		wantErr(t, send(t, c, 1), "rcpt", 421, true)
		s.SetRcptErr(nil)
		sendOK(t, c, 2, 2)
		if n := s.Connections(); n != 2 {
			t.Errorf("connections %d, want 2 (no reuse after a 421 to RCPT)", n)
		}
	})
	t.Run("mail on a reused connection", func(t *testing.T) {
		s, c := reusing(t, smtptest.ImplicitTLS, 100)
		sendOK(t, c, 1, 1)
		s.SetMailErr(func(string) error { return smtpErr421 })
		// The reused connection says 421 to MAIL: the attempt goes on over a
		// new connection, which says 421 too.
		wantErr(t, send(t, c, 2), "mail", 421, true)
		s.SetMailErr(nil)
		sendOK(t, c, 3, 3)
		if n, m := s.Connections(), s.MailAttempts(); n != 3 || m != 4 {
			t.Errorf("connections %d, MAIL %d; want 3, 4", n, m)
		}
	})
}

// A 5xx reply leaves the session in step: the connection is kept.
func TestReuseAfterRefusals(t *testing.T) {
	s, c := reusing(t, smtptest.ImplicitTLS, 100)
	s.SetRcptErr(func(string) error { return smtpErr(550, 5, 1, 1, "no such user") })
	wantErr(t, send(t, c, 1), "rcpt", 550, false)
	s.SetRcptErr(nil)
	s.SetDataErr(func(*smtptest.Message) error { return smtpErr(554, 5, 7, 1, "spam") })
	wantErr(t, send(t, c, 2), "data", 554, false)
	s.SetDataErr(nil)
	sendOK(t, c, 3, 3)
	if n, m := s.Connections(), s.MailAttempts(); n != 1 || m != 3 {
		t.Errorf("connections %d, MAIL %d; want 1, 3", n, m)
	}
}

func TestConcurrentReuse(t *testing.T) {
	s, c := reusing(t, smtptest.ImplicitTLS, 100)
	const workers, each = 3, 4
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if r := send(t, c, w*each+i+1); r.Err != nil {
					errs <- r.Err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(s.Messages()); n != workers*each {
		t.Errorf("%d messages, want %d", n, workers*each)
	}
	if n := s.Connections(); n > workers {
		t.Errorf("%d connections for %d concurrent senders, want at most %d", n, workers, workers)
	}
}

// script is a hand-written plaintext SMTP server, for what go-smtp cannot
// do: reply decides the reply to each command ("." is the end of the body)
// on connection conn (1, 2 ...) after mails MAIL commands on it. "" closes
// the connection without a reply; "stall" waits until the test ends. Unlike
// go-smtp, it refuses a MAIL inside a transaction (503), as Postfix does.
type script struct {
	conns atomic.Int32
	msgs  atomic.Int32 // 250 replies to the end of a body
	reply func(conn, mails int, verb string) string
}

// standard is the reply of a well-behaved server.
func standard(verb string) string {
	switch verb {
	case "EHLO":
		return "250-script.test\r\n250 8BITMIME\r\n"
	case "MAIL", "RCPT", "RSET", "NOOP":
		return "250 2.0.0 ok\r\n"
	case "DATA":
		return "354 go ahead\r\n"
	case ".":
		return "250 2.0.0 queued\r\n"
	case "QUIT":
		return "221 2.0.0 bye\r\n"
	}
	return "502 5.5.2 unknown\r\n"
}

// start serves the script and returns a Client for it that keeps connections.
func (sc *script) start(t *testing.T) *Client {
	t.Helper()
	p := scripted(t, sc.handle)
	p.MaxMessagesPerConnection, p.IdleTimeout = 100, time.Minute
	c, _ := newClient(t, p)
	c.Timeout, c.DataTimeout = time.Second, time.Second
	t.Cleanup(func() { c.Close() })
	return c
}

func (sc *script) handle(c net.Conn, stop <-chan struct{}) {
	conn, mails, inMail := int(sc.conns.Add(1)), 0, false
	r := bufio.NewReader(c)
	say := func(verb string) bool {
		rep := sc.reply(conn, mails, verb)
		switch {
		case verb == "MAIL" && inMail:
			rep = "503 5.5.1 nested MAIL command\r\n"
		case verb == "MAIL":
			inMail = strings.HasPrefix(rep, "250")
		case verb == "RSET" || verb == ".":
			inMail = false
		}
		if rep == "stall" {
			<-stop
			return false
		}
		if rep == "" {
			return false
		}
		if verb == "." && strings.HasPrefix(rep, "250") {
			sc.msgs.Add(1)
		}
		_, err := io.WriteString(c, rep)
		return err == nil && verb != "QUIT"
	}
	if _, err := io.WriteString(c, "220 script.test ESMTP\r\n"); err != nil {
		return
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		v := verb(line)
		if v == "MAIL" {
			mails++
		}
		if !say(v) {
			return
		}
		if v != "DATA" {
			continue
		}
		for line != ".\r\n" {
			if line, err = r.ReadString('\n'); err != nil {
				return
			}
		}
		if !say(".") {
			return
		}
	}
}

func TestNoReuseAfterProtocolError(t *testing.T) {
	sc := &script{reply: func(conn, mails int, v string) string {
		if conn == 1 && mails == 2 && v == "." {
			return "this is not an SMTP reply\r\n"
		}
		return standard(v)
	}}
	c := sc.start(t)
	sendOK(t, c, 1, 1)
	wantErr(t, send(t, c, 2), "data", 0, true)
	sendOK(t, c, 3, 3)
	if n := sc.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (none reused after the protocol error)", n)
	}
}

func TestNoReuseAfterTimeout(t *testing.T) {
	sc := &script{reply: func(conn, mails int, v string) string {
		if conn == 1 && mails == 2 && v == "." {
			return "stall"
		}
		return standard(v)
	}}
	c := sc.start(t)
	sendOK(t, c, 1, 1)
	if r := send(t, c, 2); r.Err == nil || !strings.Contains(r.Err.Error(), "timeout") {
		t.Fatalf("message 2: %v, want a timeout", r.Err)
	}
	sendOK(t, c, 3, 3)
	if n := sc.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (none reused after the timeout)", n)
	}
}

// Every recipient refused: the transaction is still open, and RSET closes
// it before the connection is reused (go-smtp's Client.Reset is not used: it
// would say EHLO again).
func TestRsetAfterRefusedRecipients(t *testing.T) {
	var ehlos atomic.Int32
	sc := &script{reply: func(conn, mails int, v string) string {
		if v == "EHLO" {
			ehlos.Add(1)
		}
		if mails == 1 && v == "RCPT" {
			return "550 5.1.1 no such user\r\n"
		}
		return standard(v)
	}}
	c := sc.start(t)
	wantErr(t, send(t, c, 1), "rcpt", 550, false)
	sendOK(t, c, 2, 3)
	if n, m, e := sc.conns.Load(), sc.msgs.Load(), ehlos.Load(); n != 1 || m != 2 || e != 1 {
		t.Errorf("%d connections, %d messages, %d EHLO; want 1, 2, 1", n, m, e)
	}
}

// The server said 421 while the connection was idle for long: NOOP reads
// it, and the attempt goes on over a new connection.
func TestIdleConnection421(t *testing.T) {
	sc := &script{reply: func(conn, mails int, v string) string {
		if conn == 1 && v == "NOOP" {
			return "421 4.4.2 idle too long\r\n"
		}
		return standard(v)
	}}
	c := sc.start(t)
	c.noopIdle = -1 // every parked connection counts as idle for long
	sendOK(t, c, 1, 2)
	if n, m := sc.conns.Load(), sc.msgs.Load(); n != 2 || m != 2 {
		t.Errorf("%d connections, %d messages; want 2, 2", n, m)
	}
}

// A connection parked a moment ago goes straight to MAIL FROM, without
// NOOP; if the server closed it meanwhile with a 421, that reply to MAIL
// sends the attempt over a new connection, and the message goes once.
func TestRecentConnectionNoNoop(t *testing.T) {
	var noops atomic.Int32
	sc := &script{reply: func(conn, mails int, v string) string {
		switch {
		case v == "NOOP":
			noops.Add(1)
		case conn == 1 && mails == 3 && v == "MAIL":
			return "421 4.4.2 closing\r\n"
		}
		return standard(v)
	}}
	c := sc.start(t)
	sendOK(t, c, 1, 3)
	n, m, k := sc.conns.Load(), sc.msgs.Load(), noops.Load()
	if n != 2 || m != 3 || k != 0 {
		t.Errorf("%d connections, %d messages, %d NOOP; want 2, 3, 0", n, m, k)
	}
}

// A reused connection that fails at MAIL (no reply) is replaced within the
// attempt; one that fails after MAIL was accepted is not: the queue retries
// later, and nothing goes twice.
func TestRedialOnlyBeforeMail(t *testing.T) {
	t.Run("mail", func(t *testing.T) {
		sc := &script{reply: func(conn, mails int, v string) string {
			if conn == 1 && mails == 2 && v == "MAIL" {
				return "" // gone
			}
			return standard(v)
		}}
		c := sc.start(t)
		sendOK(t, c, 1, 2)
		if n, m := sc.conns.Load(), sc.msgs.Load(); n != 2 || m != 2 {
			t.Errorf("%d connections, %d messages; want 2, 2", n, m)
		}
	})
	t.Run("rcpt", func(t *testing.T) {
		sc := &script{reply: func(conn, mails int, v string) string {
			if conn == 1 && mails == 2 && v == "RCPT" {
				return "" // gone after MAIL was accepted
			}
			return standard(v)
		}}
		c := sc.start(t)
		sendOK(t, c, 1, 1)
		wantErr(t, send(t, c, 2), "rcpt", 0, true)
		if n, m := sc.conns.Load(), sc.msgs.Load(); n != 1 || m != 1 {
			t.Errorf("%d connections, %d messages; want 1 (no redial after MAIL), 1", n, m)
		}
	})
}

// After an accepted DATA the transaction is over (RFC 5321 4.1.1.4): the
// next message on the connection goes straight to MAIL, with no RSET in
// between; the strict server (503 on a MAIL inside a transaction)
// proves the transaction was indeed closed.
func TestNoRsetAfterAcceptedData(t *testing.T) {
	var rsets atomic.Int32
	sc := &script{reply: func(conn, mails int, v string) string {
		if v == "RSET" {
			rsets.Add(1)
		}
		return standard(v)
	}}
	c := sc.start(t)
	sendOK(t, c, 1, 3)
	if n, m, r := sc.conns.Load(), sc.msgs.Load(), rsets.Load(); n != 1 || m != 3 || r != 0 {
		t.Errorf("%d connections, %d messages, %d RSET; want 1, 3, 0", n, m, r)
	}
}
