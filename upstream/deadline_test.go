package upstream

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/delivery"
	"github.com/tlsrelay/tlsrelay/policy"
)

// slow is a raw upstream that answers the standard replies (pool_test.go),
// but trickles the reply to one command (at; "220" is the greeting) one
// byte per second, waits delay before every other reply to a command, and
// takes its replies from replies first. The first head bytes of the
// trickled reply go at once.
type slow struct {
	at      string
	delay   time.Duration
	replies map[string]string
	head    int

	gone chan struct{} // closed when the client has closed the connection
	once sync.Once
}

const slowGreeting = "220 slow.example ESMTP\r\n"

func newSlow(at string, delay time.Duration) *slow {
	return &slow{at: at, delay: delay, gone: make(chan struct{})}
}

func (s *slow) closed() { s.once.Do(func() { close(s.gone) }) }

func (s *slow) text(v string) string {
	if r, ok := s.replies[v]; ok {
		return r
	}
	if v == "220" {
		return slowGreeting
	}
	return standard(v)
}

func (s *slow) handle(c net.Conn, stop <-chan struct{}) {
	r := bufio.NewReader(c)
	for v := "220"; ; {
		if v == s.at {
			s.trickle(c, r, s.text(v), stop)
			return
		}
		if !s.say(c, v, stop) || v == "QUIT" {
			return
		}
		line, err := r.ReadString('\n')
		for v == "DATA" && err == nil && line != ".\r\n" { // the body
			line, err = r.ReadString('\n')
		}
		if err != nil {
			s.closed()
			return
		}
		if v == "DATA" {
			v = "."
		} else {
			v = verb(line)
		}
	}
}

// say writes the reply to v, after delay unless v is the greeting.
func (s *slow) say(c net.Conn, v string, stop <-chan struct{}) bool {
	if s.delay > 0 && v != "220" {
		t := time.NewTimer(s.delay)
		defer t.Stop()
		select {
		case <-stop:
			return false
		case <-t.C:
		}
	}
	_, err := io.WriteString(c, s.text(v))
	return err == nil
}

// trickle writes text one byte per second (a time.Ticker: the server's
// behaviour, not synchronisation) until it is all sent, the client closes
// the connection or the test ends; then it closes the connection.
func (s *slow) trickle(c net.Conn, r *bufio.Reader, text string, stop <-chan struct{}) {
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		io.Copy(io.Discard, r) // the client sends nothing more until it closes
		s.closed()
	}()
	defer func() {
		c.Close()
		<-gone
	}()
	if _, err := io.WriteString(c, text[:s.head]); err != nil {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i := s.head; i < len(text); i++ {
		select {
		case <-stop:
			return
		case <-gone:
			return
		case <-tick.C:
		}
		if _, err := c.Write([]byte{text[i]}); err != nil {
			return
		}
	}
	select {
	case <-stop:
	case <-gone:
	}
}

// slowClient returns a Client for s with timeouts t, which would keep its
// connections for reuse.
func slowClient(t *testing.T, s *slow, timeouts policy.Timeouts) *Client {
	t.Helper()
	p := scripted(t, s.handle)
	p.Timeouts = timeouts
	p.MaxMessagesPerConnection, p.IdleTimeout = 100, time.Minute
	c, _ := newClient(t, p)
	t.Cleanup(func() { c.Close() })
	return c
}

// checkCutOff checks that the attempt ended within 5s, at op with no reply,
// deferred, saying want, and that its connection was closed, not kept.
func checkCutOff(t *testing.T, c *Client, s *slow, r delivery.Result, took time.Duration, op, want string) {
	t.Helper()
	wantErr(t, r, op, 0, true)
	t.Logf("after %v: %v", took, r.Err)
	if took > 5*time.Second {
		t.Errorf("Deliver took %v, want < 5s", took)
	}
	if r.Err == nil || !strings.Contains(r.Err.Error(), want) {
		t.Errorf("err = %v, want it to say %q", r.Err, want)
	}
	select {
	case <-s.gone:
	case <-time.After(5 * time.Second):
		t.Error("the connection was not closed")
	}
	if n := c.idleCount("fake"); n != 0 {
		t.Errorf("%d idle connections, want 0 (never kept after a timeout)", n)
	}
}

// A greeting trickled one byte per second is cut off at the greeting
// timeout, though every byte arrives well within it (RFC 5321 4.5.3.2.1).
func TestTricklingGreetingIsCutOff(t *testing.T) {
	t.Parallel()
	s := newSlow("220", 0)
	c := slowClient(t, s, policy.Timeouts{Greeting: 2 * time.Second})
	r, took := timed(t, c, context.Background(), smallMsg())
	checkCutOff(t, c, s, r, took, "greeting", "upstream greeting not complete after 2s")
}

// The reply to MAIL FROM, trickled, is cut off at the command timeout.
func TestTricklingMailReplyIsCutOff(t *testing.T) {
	t.Parallel()
	s := newSlow("MAIL", 0)
	c := slowClient(t, s, policy.Timeouts{Command: 2 * time.Second})
	r, took := timed(t, c, context.Background(), smallMsg())
	checkCutOff(t, c, s, r, took, "mail", "reply to MAIL FROM not complete after 2s")
}

// The reply to the end of data, trickled, is cut off at the data_end
// timeout (RFC 5321 4.5.3.2.6).
func TestTricklingDataEndReplyIsCutOff(t *testing.T) {
	t.Parallel()
	s := newSlow(".", 0)
	c := slowClient(t, s, policy.Timeouts{DataEnd: 2 * time.Second})
	r, took := timed(t, c, context.Background(), smallMsg())
	checkCutOff(t, c, s, r, took, "data", "reply to end of data not complete after 2s")
}

// A reply cut off at its deadline after "250 2" is not taken for a 250
// (bufio.Reader.ReadLine returns a line cut short as a line: smtpConn.check),
// so the message is not taken for delivered.
func TestReplyCutShortIsNotAccepted(t *testing.T) {
	t.Parallel()
	s := newSlow(".", 0)
	s.head = len("250 2")
	c := slowClient(t, s, policy.Timeouts{DataEnd: 2 * time.Second})
	r, took := timed(t, c, context.Background(), smallMsg())
	checkCutOff(t, c, s, r, took, "data", "reply to end of data not complete after 2s")
}

// A server that answers each command within the command timeout, but so
// late that the session outlasts the attempt timeout, is cut off at that:
// EHLO, MAIL and RCPT take 1.8s, the reply to DATA would come at 2.4s.
func TestAttemptDeadlineCutsOffSlowSession(t *testing.T) {
	t.Parallel()
	s := newSlow("none", 600*time.Millisecond)
	c := slowClient(t, s, policy.Timeouts{Greeting: time.Second, Command: time.Second, DataEnd: time.Second, Attempt: 2 * time.Second})
	r, took := timed(t, c, context.Background(), smallMsg())
	checkCutOff(t, c, s, r, took, "data", "attempt not finished after 2s")
}

// An upstream's reply text reaches the Result (and from there the spool's
// last_error and the operator's terminal) with its control characters
// escaped.
func TestReplyTextEscaped(t *testing.T) {
	t.Parallel()
	s := newSlow("none", 0)
	s.replies = map[string]string{"MAIL": "550 5.7.1 go away \x1b]0;pwned\x07 now\r\n"}
	c := slowClient(t, s, policy.Timeouts{})
	r, _ := timed(t, c, context.Background(), smallMsg())
	wantErr(t, r, "mail", 550, false)
	const want = `550 5.7.1 go away \x1b]0;pwned\x07 now`
	for what, got := range map[string]string{"error": r.Err.Error(), "reply": r.Reply} {
		if !strings.Contains(got, want) || strings.ContainsAny(got, "\x1b\x07") {
			t.Errorf("%s %q, want it to hold %q and no raw control byte", what, got, want)
		}
	}
}

func TestCleanText(t *testing.T) {
	for in, want := range map[string]string{
		"250 ok":                "250 ok",
		"caf\u00e9 \\ok":        "caf\u00e9 \\ok",
		"\x1b]0;pwned\x07":      `\x1b]0;pwned\x07`,
		"a\tb\r\x00\x7f":        `a\x09b\x0d\x00\x7f`,
		"c1 \u009b2J":           `c1 \u009b2J`,
		"raw \x9b byte":         `raw \x9b byte`,
		"bidi \u202egnp.exe":    `bidi \u202egnp.exe`,
		"isolate \u2066x\u2069": `isolate \u2066x\u2069`,
	} {
		if got := cleanText(in); got != want {
			t.Errorf("cleanText(%q) = %q, want %q", in, got, want)
		}
	}
	// Server text inside an error that is not a reply is escaped too.
	e := &Error{Op: "mail", Err: textproto.ProtocolError("invalid response code: \x1b[2J")}
	if got := e.Error(); got != `mail: invalid response code: \x1b[2J` {
		t.Errorf("Error() = %q", got)
	}
}
