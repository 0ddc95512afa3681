package upstream

import "testing"

// scanRef is the byte-at-a-time definition of bodyState.scan.
func scanRef(s *bodyState, p []byte) error {
	for _, b := range p {
		switch {
		case s.prevCR && b != '\n':
			return errCorruptBody
		case b == '\n' && !s.prevCR, b == 0:
			return errCorruptBody
		}
		s.prevCR = b == '\r'
		s.eightBit = s.eightBit || b >= 0x80
	}
	return nil
}

// bodyState.scan, a buffer at a time, agrees with the definition on every
// body of a small alphabet cut in two anywhere.
func TestBodyScanMatchesDefinition(t *testing.T) {
	alphabet := []byte{'a', '\r', '\n', 0, 0xc3, '.'}
	seed := uint32(1)
	next := func() uint32 { seed = seed*1664525 + 1013904223; return seed >> 8 }
	for n := 0; n < 3000; n++ {
		body := make([]byte, next()%24)
		for i := range body {
			body[i] = alphabet[next()%uint32(len(alphabet))]
			if next()%3 > 0 { // mostly valid text: CRLF pairs and letters
				body[i] = "ab\r\n"[next()%4]
			}
		}
		cut := int(next() % uint32(len(body)+1))
		var ref, got bodyState
		rerr := scanRef(&ref, body[:cut])
		if rerr == nil {
			rerr = scanRef(&ref, body[cut:])
		}
		gerr := got.scan(body[:cut])
		if gerr == nil {
			gerr = got.scan(body[cut:])
		}
		if (rerr == nil) != (gerr == nil) || (rerr == nil && (ref != got)) {
			t.Fatalf("body %q cut at %d: scan = %v %+v, definition %v %+v", body, cut, gerr, got, rerr, ref)
		}
	}
}
