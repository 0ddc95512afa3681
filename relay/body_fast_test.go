package relay

import (
	"bytes"
	"testing"
)

// process (a whole buffer at once when its line endings are clean) gives
// the same output and the same first error as processLines, for bodies of
// a small alphabet cut in two anywhere, with and without line_endings fix.
func TestBodyProcessMatchesLineByLine(t *testing.T) {
	alphabet := "ab:\r\n \r\n\r\n"
	seed := uint32(7)
	next := func() uint32 { seed = seed*1664525 + 1013904223; return seed >> 8 }
	for n := 0; n < 4000; n++ {
		body := make([]byte, next()%40)
		for i := range body {
			body[i] = alphabet[next()%uint32(len(alphabet))]
		}
		cut := int(next() % uint32(len(body)+1))
		fix := next()%2 == 0
		run := func(step func(*bodyReader, []byte) error) ([]byte, error, bool) {
			b := newBodyReader("", nil, fix)
			var out []byte
			for _, part := range [][]byte{body[:cut], body[cut:]} {
				b.out = b.out[:0]
				err := step(b, part)
				out = append(out, b.out...)
				if err != nil {
					return out, err, false
				}
			}
			return out, nil, b.prevCR
		}
		got, gerr, gcr := run((*bodyReader).process)
		want, werr, wcr := run((*bodyReader).processLines)
		if gerr != werr || (gerr == nil && (!bytes.Equal(got, want) || gcr != wcr)) {
			t.Fatalf("body %q cut at %d fix=%v: process = %q, %v; line by line %q, %v", body, cut, fix, got, gerr, want, werr)
		}
	}
}
