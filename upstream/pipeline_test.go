package upstream

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/delivery"
)

// pipeServer offers PIPELINING and records, for each MAIL FROM, the line
// and what had already arrived behind it.
type pipeServer struct {
	mu    sync.Mutex
	mails []string // "MAIL line|bytes already buffered after it"
}

func (s *pipeServer) handle(c net.Conn, stop <-chan struct{}) {
	r := bufio.NewReader(c)
	io.WriteString(c, "220 pipe.test ESMTP\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		rep := "250 2.0.0 ok\r\n"
		switch verb(line) {
		case "EHLO":
			rep = "250-pipe.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-SMTPUTF8\r\n250 8BITMIME\r\n"
		case "MAIL":
			ahead, _ := r.Peek(r.Buffered())
			s.mu.Lock()
			s.mails = append(s.mails, line+"|"+string(ahead))
			s.mu.Unlock()
		case "DATA":
			io.WriteString(c, "354 go ahead\r\n")
			for line != ".\r\n" {
				if line, err = r.ReadString('\n'); err != nil {
					return
				}
			}
		case "QUIT":
			io.WriteString(c, "221 bye\r\n")
			return
		}
		if _, err := io.WriteString(c, rep); err != nil {
			return
		}
	}
}

// With PIPELINING offered, MAIL FROM, every RCPT TO and DATA leave in one
// write, exactly as go-smtp formats them (otherwise smtpConn's check fails
// the delivery): with SIZE (the 29 bytes of the body), BODY=8BITMIME and
// SMTPUTF8.
func TestPipelinedCommandsMatchGoSMTP(t *testing.T) {
	s := &pipeServer{}
	p := scripted(t, s.handle)
	p.MaxMessagesPerConnection, p.IdleTimeout = 100, time.Minute
	c, _ := newClient(t, p)
	t.Cleanup(func() { c.Close() })
	for _, from := range []string{"app@example.com", "dé@example.com"} {
		body := "Subject: x\r\n\r\nbody \xc3\xa9\r\n.dot\r\n"
		msg := &delivery.Message{ID: "m", From: from, Size: int64(len(body)), Body: strings.NewReader(body)}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		rs := c.Deliver(ctx, "fake", msg, []string{"a@example.net", "b@example.net"})
		cancel()
		for i, r := range rs {
			if r.Err != nil {
				t.Fatalf("from %s, recipient %d: %v", from, i, r.Err)
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	want := []string{
		"MAIL FROM:<app@example.com> BODY=8BITMIME SIZE=29\r\n|RCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n",
		"MAIL FROM:<dé@example.com> BODY=8BITMIME SIZE=29 SMTPUTF8\r\n|RCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n",
	}
	if strings.Join(s.mails, "\n") != strings.Join(want, "\n") {
		t.Fatalf("MAIL lines and what came with them:\n%q\nwant\n%q", s.mails, want)
	}
}

// A command go-smtp writes that is not the one sent ahead is refused, and
// the connection is not reused.
func TestPipelineMismatchBreaksTheConnection(t *testing.T) {
	raw := &countConn{reply: []byte("250 ok\r\n")}
	c := newSMTPConn(raw)
	c.sendAhead([][]byte{[]byte("MAIL FROM:<a@x>\r\n"), []byte("DATA\r\n")})
	if n, err := c.Write([]byte("MAIL FROM:<a@x>\r\n")); n == 0 || err != nil {
		t.Fatalf("the command sent ahead: Write = %d, %v", n, err)
	}
	_, err := c.Write([]byte("RCPT TO:<b@x>\r\n"))
	var mm *errPipelineMismatch
	if !errors.As(err, &mm) || !strings.Contains(err.Error(), "DATA") {
		t.Fatalf("a different command: error %v, want a pipeline mismatch", err)
	}
	d := &attempt{session: session{smtp: c}}
	d.pipelineDone()
	if !d.broken || len(c.out) != 0 {
		t.Fatal("after a mismatch the connection may be reused, or still holds the commands")
	}
}
