package queue

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// A body being received counts against max_bytes from its first byte: a
// second message that would pass the budget is refused (full) while the
// first is still arriving, and the first, once complete, holds its size.
func TestBodyInTmpCountsAgainstBudget(t *testing.T) {
	o, _ := testOptions(t, t.TempDir())
	o.MaxBytes = 64 << 10
	q := openQueue(t, o, nopDeliverer{})
	pr, pw := io.Pipe()
	first := make(chan error, 1)
	go func() {
		_, err := q.Enqueue(context.Background(), "c", "a@example.com", []string{"b@example.org"}, pr)
		first <- err
	}()
	body := "Subject: big\r\n\r\n" + strings.Repeat("x", 40<<10) + "\r\n"
	pw.Write([]byte(body[:len(body)-2]))
	pw.Write([]byte("\r")) // returns once the enqueue has read (and reserved) the rest
	_, err := q.Enqueue(context.Background(), "c", "a@example.com", []string{"b@example.org"}, strings.NewReader(body))
	var full interface{ Full() bool }
	if !errors.As(err, &full) || !full.Full() {
		t.Fatalf("second enqueue while the first is arriving: %v, want a full error", err)
	}
	pw.Write([]byte("\n"))
	pw.Close()
	if err := <-first; err != nil {
		t.Fatalf("first enqueue: %v", err)
	}
	if s := q.Stats(); s.Items != 1 || s.Bytes != int64(len(body)) {
		t.Fatalf("Stats = %+v, want 1 message of %d bytes (no reservation left over)", s, len(body))
	}
}
