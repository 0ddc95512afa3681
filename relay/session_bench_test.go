package relay

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/delivery"
	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/queue"
)

// discardSpool reads the body to its end and keeps nothing.
type discardSpool struct{}

func (discardSpool) EnqueueRouted(_ context.Context, _, _ string, _ []string, _ [][]string, body io.Reader) (string, error) {
	if _, err := io.Copy(io.Discard, body); err != nil {
		return "", err
	}
	return "bench", nil
}

// nopDeliverer never runs: the benchmark does not start the queue's workers.
type nopDeliverer struct{}

func (nopDeliverer) Deliver(context.Context, string, *delivery.Message, []string) []delivery.Result {
	return nil
}

// BenchmarkSession measures one whole inbound SMTP session over loopback, as
// smtp-source makes it: connect, greeting, EHLO, MAIL, RCPT, DATA, a 4 KiB
// body, the 250 after the data, QUIT. "discard" reads the body into nothing
// (the SMTP side alone); "queue" spools it in a real queue in a temporary
// directory, fsyncs included, as `serve` does.
func BenchmarkSession(b *testing.B) {
	body := smtptest.Body(4 << 10)
	for _, bc := range []struct {
		name  string
		spool func(b *testing.B) Spool
	}{
		{"4KiB/discard", func(*testing.B) Spool { return discardSpool{} }},
		{"4KiB/queue", func(b *testing.B) Spool {
			q, err := queue.Open(queue.Options{Dir: b.TempDir(), Route: func(string, string) []string { return []string{"p"} }}, nopDeliverer{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { q.Close() })
			return q
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			addr := startBenchServer(b, bc.spool(b))
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := benchSession(addr, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// startBenchServer serves testOptions with spool on 127.0.0.1 until b ends.
func startBenchServer(b *testing.B, spool Spool) string {
	b.Helper()
	o := testOptions()
	o.Listen.MaxConnections, o.Listen.MaxConnectionsPerIP = 100, 100
	o.Spool = spool
	o.Log = slog.New(slog.DiscardHandler)
	srv, err := New(o)
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		srv.Shutdown(ctx)
		select {
		case <-done:
		case <-ctx.Done():
			b.Error("Serve did not return after Shutdown")
		}
	})
	return l.Addr().String()
}

// benchSession runs one session; body is CRLF text, not dot-stuffed (it has
// no line starting with a dot).
func benchSession(addr, body string) error {
	conn, err := net.DialTimeout("tcp", addr, testWait)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(testWait))
	r := bufio.NewReader(conn)
	w := bufio.NewWriter(conn)
	step := func(send, want string) error {
		if send != "" {
			w.WriteString(send)
			if err := w.Flush(); err != nil {
				return err
			}
		}
		for range 100 { // a multi-line reply has a few lines, never 100
			line, err := r.ReadString('\n')
			if err != nil {
				return fmt.Errorf("after %q: %w", send, err)
			}
			if len(line) >= 4 && line[3] == '-' {
				continue
			}
			if !strings.HasPrefix(line, want) {
				return fmt.Errorf("after %q: reply %q, want %s", send, line, want)
			}
			return nil
		}
		return fmt.Errorf("after %q: reply too long", send)
	}
	for _, s := range [][2]string{
		{"", "220"},
		{"EHLO client.test\r\n", "250"},
		{"MAIL FROM:<a@example.com>\r\n", "250"},
		{"RCPT TO:<b@example.net>\r\n", "250"},
		{"DATA\r\n", "354"},
		{body + ".\r\n", "250"},
		{"QUIT\r\n", "221"},
	} {
		if err := step(s[0], s[1]); err != nil {
			return err
		}
	}
	return nil
}
