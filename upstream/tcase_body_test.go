package upstream

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/delivery"
	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/policy"
)

// deliverBody sends body (as given: a seekable or not reader) to one
// recipient through "fake".
func deliverBody(t *testing.T, c *Client, body io.Reader, size int) delivery.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msg := &delivery.Message{ID: "m1", From: "app@example.com", Size: int64(size), Body: body}
	return c.Deliver(ctx, "fake", msg, []string{"b@example.net"})[0]
}

// sevenBitServer is a scripted server that offers no 8BITMIME and counts
// the MAIL commands it sees.
func sevenBitServer(t *testing.T, mails *atomic.Int32) *policy.Provider {
	return scripted(t, func(c net.Conn, _ <-chan struct{}) {
		r := bufio.NewReader(c)
		io.WriteString(c, "220 seven.test ESMTP\r\n")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
			case strings.HasPrefix(cmd, "EHLO"):
				io.WriteString(c, "250-seven.test\r\n250 PIPELINING\r\n")
			case strings.HasPrefix(cmd, "MAIL"):
				mails.Add(1)
				io.WriteString(c, "250 ok\r\n")
			case cmd == "QUIT":
				io.WriteString(c, "221 bye\r\n")
				return
			default:
				io.WriteString(c, "250 ok\r\n")
			}
		}
	})
}

// TestT10EightBitWithout8BITMIME: an 8-bit body is never sent raw to a
// server without 8BITMIME: it fails permanently with 5.6.3 before MAIL.
// To a server with 8BITMIME it is delivered intact (BODY=8BITMIME).
func TestT10EightBitWithout8BITMIME(t *testing.T) {
	const eight = "Subject: caf\xc3\xa9\r\n\r\nna\xc3\xafve \xd6\xd0\xce\xc4\r\n"
	var mails atomic.Int32
	c, _ := newClient(t, sevenBitServer(t, &mails))
	r := deliverBody(t, c, strings.NewReader(eight), len(eight))
	e := wantErr(t, r, "mail", 0, false)
	if !strings.Contains(e.Error(), "5.6.3") || mails.Load() != 0 {
		t.Fatalf("err %v, MAIL commands seen %d; want 5.6.3 and no MAIL", e, mails.Load())
	}

	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.Plain})
	c2, _ := newClient(t, &policy.Provider{Name: "fake", Host: s.Host(), Port: s.Port(), TLS: policy.TLS{Mode: policy.TLSNone}})
	if r := deliverBody(t, c2, strings.NewReader(eight), len(eight)); r.Err != nil {
		t.Fatalf("to an 8BITMIME server: %v", r.Err)
	}
	if got := string(s.Messages()[0].Data); got != eight {
		t.Fatalf("8-bit body changed: %q", got)
	}
}

// hideSeek hides a reader's Seek, so only the streaming check sees it.
type hideSeek struct{ io.Reader }

// TestT12OutboundInvariant: a spooled body with a bare CR, a bare LF or a
// NUL is never transmitted: with a seekable body nothing at all is sent
// (not even MAIL); with a stream, the DATA is cut before the bad bytes and
// never terminated, so the provider discards it. Both fail permanently.
// A "." line is not corruption: it goes out dot-stuffed and arrives intact.
func TestT12OutboundInvariant(t *testing.T) {
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.Plain})
	p := &policy.Provider{Name: "fake", Host: s.Host(), Port: s.Port(), TLS: policy.TLS{Mode: policy.TLSNone}}
	c, _ := newClient(t, p)
	for _, bad := range []string{"a\nb\r\n", "a\rb\r\n", "a\x00b\r\n", "ok\r\nend\r"} {
		body := "Subject: x\r\n\r\n" + bad
		if r := deliverBody(t, c, strings.NewReader(body), len(body)); !strings.Contains(errText(r), "5.6.0") || delivery.Temporary(r.Err) {
			t.Errorf("seekable %q: %v, want a permanent 5.6.0", bad, r.Err)
		}
		if r := deliverBody(t, c, hideSeek{strings.NewReader(body)}, len(body)); !strings.Contains(errText(r), "5.6.0") || delivery.Temporary(r.Err) {
			t.Errorf("stream %q: %v, want a permanent 5.6.0", bad, r.Err)
		}
	}
	if n := len(s.Messages()); n != 0 {
		t.Fatalf("%d corrupt messages reached the provider", n)
	}
	const dots = "Subject: dots\r\n\r\n.\r\n..\r\n.x\r\n"
	if r := deliverBody(t, c, strings.NewReader(dots), len(dots)); r.Err != nil {
		t.Fatalf("dot lines: %v", r.Err)
	}
	if got := string(s.Messages()[0].Data); got != dots {
		t.Fatalf("dot lines arrived as %q", got)
	}
}

func errText(r delivery.Result) string {
	if r.Err == nil {
		return ""
	}
	return r.Err.Error()
}
