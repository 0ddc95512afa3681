package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/smtptest"
)

// pipeConn returns a guard conn on one end of a net.Pipe and the other end.
// A pipe hands each Write to exactly one Read, so the test controls how the
// input is split.
func pipeConn(t *testing.T) (*conn, net.Conn, *bufio.Reader) {
	t.Helper()
	o := testOptions()
	o.Spool = &fakeSpool{}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	server, peer := net.Pipe()
	deadline := time.Now().Add(testWait)
	server.SetDeadline(deadline)
	peer.SetDeadline(deadline)
	t.Cleanup(func() { server.Close(); peer.Close() })
	c := newConn(server, srv, netip.MustParseAddr("127.0.0.1"))
	srv.conns[c] = struct{}{}
	return c, peer, bufio.NewReader(peer)
}

// TestGuardBareCR: the guard hands up nothing from a read with a bare CR
// in it, and a CR at the end of a read waits for the next byte: it is never
// handed up before the guard knows it is not bare.
func TestGuardBareCR(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []string
		want   string // handed up before the guard ends the session
	}{
		{"CR at the end of one read, X in the next", []string{"abc\r", "X"}, "abc"},
		{"line, then CR at the end of a read", []string{"ab\r\n", "c\r", "X"}, "ab\r\nc"},
		{"CR and X in one read", []string{"ab\rX"}, ""},
		{"CR CR LF", []string{"a\r\r\n"}, ""},
		{"CR alone first", []string{"\rX"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, peer, pr := pipeConn(t)
			replies := make(chan string, 1)
			go func() {
				for _, w := range tc.writes {
					peer.Write([]byte(w))
				}
				line, _ := pr.ReadString('\n')
				replies <- line
			}()
			var got []byte
			buf := make([]byte, 64)
			var err error
			for err == nil {
				var n int
				n, err = c.Read(buf)
				got = append(got, buf[:n]...)
			}
			if string(got) != tc.want {
				t.Errorf("handed up %q, want %q", got, tc.want)
			}
			if !errors.Is(err, errBareLineEnding) || !errors.Is(err, net.ErrClosed) {
				t.Errorf("Read error %v: want one that matches errBareLineEnding and net.ErrClosed", err)
			}
			if r := <-replies; r != "550 5.6.0 message contains bare CR or LF; lines must end with CRLF\r\n" {
				t.Errorf("reply %q", r)
			}
			if _, werr := c.Write([]byte("554 5.0.0 go-smtp's reply\r\n")); werr == nil {
				t.Error("a write after the guard's reply went through")
			}
			if n, err2 := c.Read(buf); n != 0 || err2 != err {
				t.Errorf("Read after the end = %d, %v; want 0, %v", n, err2, err)
			}
		})
	}
}

// TestGuardPassesCRLF: outside commands the guard passes bytes on as they
// are, CRLF split across reads and bare LF included, one line per Read.
func TestGuardPassesCRLF(t *testing.T) {
	c, peer, _ := pipeConn(t)
	in := []string{"EHLO x\r", "\nMAIL FROM:<a@b>\r\n", "\r", "\n", "bare LF\npasses\n"}
	go func() {
		for _, w := range in {
			peer.Write([]byte(w))
		}
		peer.Close()
	}()
	var reads []string
	buf := make([]byte, 64)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			reads = append(reads, string(buf[:n]))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Join(reads, ""); got != strings.Join(in, "") {
		t.Errorf("read %q, want %q", got, strings.Join(in, ""))
	}
	for _, r := range reads {
		if i := strings.IndexByte(r, '\n'); i >= 0 && i != len(r)-1 {
			t.Errorf("read %q goes past the end of a line", r)
		}
	}
}

// TestTooManyErrorsThenPipelined: go-smtp closes after too many errors but
// goes on running the commands it has buffered (G4). None of them may open
// a session or queue a message.
func TestTooManyErrorsThenPipelined(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.expect("220 ")
	var b strings.Builder
	for range 5 {
		b.WriteString("GARBAGE\r\n")
	}
	b.WriteString("EHLO x.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nSubject: x\r\n\r\nx\r\n.\r\n")
	c.send(b.String())
	var replies []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			break
		}
		replies = append(replies, line)
	}
	if m := ts.spool.messages(); len(m) != 0 {
		t.Errorf("spool = %q, want nothing; replies %q", m, replies)
	}
	for _, r := range replies {
		if strings.HasPrefix(r, "354") || strings.HasPrefix(r, "250 2.0.0 queued") {
			t.Errorf("reply %q after the connection was closed", r)
		}
	}
}

func TestBDATBareCR(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.hello()
	c.cmd("MAIL FROM:<a@example.com>", "250 ")
	c.cmd("RCPT TO:<b@example.net>", "250 ")
	chunk := "Subject: x\r\n\r\nl1\r.\rX\r\n"
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(chunk), chunk))
	c.expect("550 5.6.0 ")
	c.expectEOF()
	if m := ts.spool.messages(); len(m) != 0 {
		t.Errorf("spool = %q, want nothing", m)
	}
	if n := strings.Count(ts.logs.String(), "msg=rejected"); n != 1 {
		t.Errorf("%d rejected events, want 1:\n%s", n, ts.logs)
	}
}

// badSpool breaks the Spool contract: it commits whatever it managed to read.
type badSpool struct{ limit int64 }

func (b badSpool) EnqueueRouted(ctx context.Context, client, from string, to []string, _ [][]string, body io.Reader) (string, error) {
	io.Copy(io.Discard, io.LimitReader(body, b.limit))
	return "id-bad", nil
}

func TestSpoolContractViolation(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
		limit            int64
	}{
		{"short read", "x\r\n", "451 4.3.0 ", 10},
		{"read error ignored", "bare\nLF\r\n", "550 5.6.0 ", 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, func(o *Options) { o.Spool = badSpool{tc.limit} })
			c := dial(t, ts.addr)
			c.hello()
			c.envelope("a@example.com", "b@example.net")
			c.send(tc.body + ".\r\n")
			c.expect(tc.want)
			if !strings.Contains(ts.logs.String(), "msg=spool_contract") {
				t.Errorf("the violation is not logged:\n%s", ts.logs)
			}
		})
	}
}

func TestServeOnce(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.expect("220 ") // Serve is running
	if got := ts.Addr(); got == nil || got.String() != ts.addr {
		t.Errorf("Addr() = %v, want %s", got, ts.addr)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.Serve(l); err == nil {
		t.Error("a second Serve succeeded")
	}
}

func TestListenAndServeError(t *testing.T) {
	o := testOptions()
	o.Spool = &fakeSpool{}
	o.Listen.Addr = "256.0.0.1:25"
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.ListenAndServe(); err == nil || !strings.Contains(err.Error(), "256.0.0.1:25") {
		t.Errorf("ListenAndServe = %v, want an error naming the address", err)
	}
	if srv.Addr() != nil {
		t.Errorf("Addr() = %v before listening", srv.Addr())
	}
}

func TestErrorLogGoesToSlog(t *testing.T) {
	var buf smtptest.LogBuffer
	l := errorLog{slog.New(slog.NewTextHandler(&buf, nil))}
	l.Printf("error handling %v: %s", "127.0.0.1:1", "boom")
	l.Println("panic", 1)
	if got := buf.String(); !strings.Contains(got, "msg=smtp_error") || !strings.Contains(got, "boom") || !strings.Contains(got, "panic1") {
		t.Errorf("log = %q", got)
	}
}

// TestGuardReleasesInStorage: c.in's pooled storage is held while checked
// bytes wait to be handed up, and given back once they all have been.
func TestGuardReleasesInStorage(t *testing.T) {
	c, peer, _ := pipeConn(t)
	go peer.Write([]byte("NOOP\r\nRSET\r\n"))
	buf := make([]byte, 64)
	for i, want := range []string{"NOOP\r\n", "RSET\r\n"} {
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("Read %d: %q, %v; want %q", i, buf[:n], err, want)
		}
		if held := c.inBuf != nil; held != (i == 0) {
			t.Errorf("after Read %d: storage held %v, want %v", i, held, i == 0)
		}
	}
}
