package crlf

import "testing"

// checkRef is the byte-at-a-time definition of Check.
func checkRef(p []byte, afterCR bool) (ok, trailingCR bool) {
	prevCR := afterCR
	for _, b := range p {
		switch {
		case prevCR && b != '\n':
			return false, false
		case b == '\n' && !prevCR:
			return false, false
		}
		prevCR = b == '\r'
	}
	return true, prevCR
}

// Check agrees with the definition on every string of up to 7 bytes over
// {a, CR, LF}, after a CR or not.
func TestCheckMatchesDefinition(t *testing.T) {
	alphabet := "a\r\n"
	for n := 0; n <= 7; n++ {
		total := 1
		for range n {
			total *= len(alphabet)
		}
		for code := range total {
			p := make([]byte, n)
			for i, c := 0, code; i < n; i, c = i+1, c/len(alphabet) {
				p[i] = alphabet[c%len(alphabet)]
			}
			for _, after := range []bool{false, true} {
				ok, tr := Check(p, after)
				wok, wtr := checkRef(p, after)
				if ok != wok || (ok && tr != wtr) {
					t.Fatalf("Check(%q, %v) = %v, %v; want %v, %v", p, after, ok, tr, wok, wtr)
				}
			}
		}
	}
}
