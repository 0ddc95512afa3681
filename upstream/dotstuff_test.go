package upstream

import (
	"bufio"
	"bytes"
	"net/textproto"
	"testing"
)

// The dot-stuffer followed by "\r\n.\r\n" (what go-smtp's DataCommand.Close
// writes when nothing went through it) puts on the wire exactly what
// net/textproto's dotWriter does, whatever the chunks the body comes in.
func TestDotStufferMatchesTextproto(t *testing.T) {
	bodies := []string{
		"", "a", "a\r\n", ".", ".\r\n", "..\r\n", "\r\n", "\r\n\r\n", "\r\n.\r\n",
		"Subject: x\r\n\r\n.leading\r\nmid.dle\r\n..two\r\n.\r\nend",
		"Subject: x\r\n\r\nline\r\n.\r\n.\r\n",
		"x\r\n.y\r\n\r\n.z\r\n",
	}
	for _, body := range bodies {
		var want bytes.Buffer
		bw := bufio.NewWriter(&want)
		dw := textproto.NewWriter(bw).DotWriter()
		dw.Write([]byte(body))
		dw.Close()
		// Every way of cutting the body in two chunks, and byte by byte.
		for cut := 0; cut <= len(body); cut++ {
			var got bytes.Buffer
			d := newDotStuffer(&got)
			d.Write([]byte(body[:cut]))
			d.Write([]byte(body[cut:]))
			got.WriteString("\r\n.\r\n")
			if got.String() != want.String() {
				t.Fatalf("body %q cut at %d: wire %q, want %q", body, cut, got.String(), want.String())
			}
		}
		var got bytes.Buffer
		d := newDotStuffer(&got)
		for i := range len(body) {
			d.Write([]byte{body[i]})
		}
		got.WriteString("\r\n.\r\n")
		if got.String() != want.String() {
			t.Fatalf("body %q byte by byte: wire %q, want %q", body, got.String(), want.String())
		}
	}
}

func BenchmarkDotStuffer(b *testing.B) {
	body := bytes.Repeat([]byte("a line of text that is about as long as most are in mail.\r\n.dot\r\n"), 512)
	var sink discardCounter
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		d := newDotStuffer(&sink)
		d.Write(body)
	}
}

type discardCounter struct{ n int }

func (d *discardCounter) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }
