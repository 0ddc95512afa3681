package relay

import (
	"net"
	"testing"
)

// writeCounter records each write that reaches the socket.
type writeCounter struct {
	net.Conn
	writes []string
}

func (w *writeCounter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

// A multi-line reply, written by go-smtp a line at a time, reaches the
// socket in one write, when its final line is written; a one-line reply
// at once.
func TestReplyLeavesInOneWrite(t *testing.T) {
	w := &writeCounter{}
	c := &conn{Conn: w}
	for _, line := range []string{"250-relay.test Hello\r\n", "250-8BITMIME\r\n", "250-SIZE 1000\r\n"} {
		if n, err := c.Write([]byte(line)); n != len(line) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", line, n, err)
		}
	}
	if len(w.writes) != 0 {
		t.Fatalf("continuation lines written before the final one: %q", w.writes)
	}
	c.Write([]byte("250 ENHANCEDSTATUSCODES\r\n"))
	want := "250-relay.test Hello\r\n250-8BITMIME\r\n250-SIZE 1000\r\n250 ENHANCEDSTATUSCODES\r\n"
	if len(w.writes) != 1 || w.writes[0] != want {
		t.Fatalf("writes %q, want one: %q", w.writes, want)
	}
	c.Write([]byte("354 Go ahead\r\n"))
	if len(w.writes) != 2 || w.writes[1] != "354 Go ahead\r\n" {
		t.Fatalf("a one-line reply was not written at once: %q", w.writes)
	}
}
