package upstream

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// countConn records each write that reaches the connection.
type countConn struct {
	net.Conn
	writes [][]byte
	reply  []byte
}

func (c *countConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

func (c *countConn) Read(p []byte) (int, error) { return copy(p, c.reply), nil }

func (c *countConn) SetDeadline(time.Time) error { return nil }

// Writes are held until the next read, and sent in one write of at most
// maxCoalesce bytes: a command and its reply still alternate, but a body
// and its terminator leave together.
func TestSMTPConnCoalescesWritesUntilRead(t *testing.T) {
	raw := &countConn{reply: []byte("250 ok\r\n")}
	c := newSMTPConn(raw)
	chunk := bytes.Repeat([]byte("x"), 4096)
	for i := 0; i < 10; i++ {
		if n, err := c.Write(chunk); n != len(chunk) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	c.Write([]byte(".\r\n"))
	if len(raw.writes) != 1 || len(raw.writes[0]) != maxCoalesce {
		t.Fatalf("before the read: %d writes reached the connection, want one of %d bytes", len(raw.writes), maxCoalesce)
	}
	buf := make([]byte, 64)
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	var sent bytes.Buffer
	for _, w := range raw.writes {
		sent.Write(w)
	}
	if len(raw.writes) != 2 || sent.Len() != 10*4096+3 || !bytes.HasSuffix(sent.Bytes(), []byte("x.\r\n")) {
		t.Fatalf("after the read: %d writes, %d bytes; want 2 writes of all %d bytes in order", len(raw.writes), sent.Len(), 10*4096+3)
	}
	c.Write([]byte("QUIT\r\n"))
	c.Read(buf)
	if len(raw.writes) != 3 || string(raw.writes[2]) != "QUIT\r\n" {
		t.Fatalf("a command was not sent before its reply was read: %q", raw.writes[len(raw.writes)-1])
	}
}
