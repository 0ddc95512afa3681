package relay

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// TestBodyReaderPooledBuffers: the head comes first and unchecked, the
// buffers go back to bodyPool once the last Read has returned, and every
// Read after that gives the same end without touching them.
func TestBodyReaderPooledBuffers(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       string
		err        error
	}{
		{"clean", "Subject: x\r\n\r\nhello\r\n", "Received: y\r\nSubject: x\r\n\r\nhello\r\n", nil},
		{"bare LF", "Subject: x\r\n\r\nhel\nlo\r\n", "", errBareLF},
		{"bare CR at the end", "Subject: x\r\n\r\nhello\r", "", errBareCR},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBodyReader("Received: y\r\n", iotest.OneByteReader(strings.NewReader(tc.body)), false)
			got, err := io.ReadAll(b)
			if tc.err == nil && (err != nil || string(got) != tc.want) {
				t.Fatalf("read %q, %v; want %q", got, err, tc.want)
			}
			if tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if b.bufs != nil || b.out != nil {
				t.Error("buffers kept after the last Read")
			}
			want := tc.err
			if want == nil {
				want = io.EOF
			}
			for range 2 {
				if n, err := b.Read(make([]byte, 8)); n != 0 || !errors.Is(err, want) {
					t.Errorf("Read after the end: %d, %v; want 0, %v", n, err, want)
				}
			}
			if tc.err == nil && b.n != int64(len(tc.body)) {
				t.Errorf("n = %d, want %d (the body without the head)", b.n, len(tc.body))
			}
		})
	}
}
