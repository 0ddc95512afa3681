// Package textesc makes text that strangers wrote safe to show: an
// upstream's reply, a client's address, a header. admin renders it for
// the operator's terminal and upstream keeps it in errors, logs and the
// spool, with the same escapes.
package textesc

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Raw control bytes are commands to a terminal (ESC sequences can set the
// title, rewrite lines, or on some terminals paste or run text), so text
// from strangers is shown escaped, never as it is.

// Escape returns s with C0 and C1 control characters, DEL, invalid UTF-8
// and the Unicode bidirectional controls (which can make text read in an
// order other than its bytes) replaced by Go-style escapes: "\x1b",
// "\u009b", "\u202e". Everything else, including non-ASCII letters, is kept.
func Escape(s string) string {
	i := strings.IndexFunc(s, unsafeRune)
	if i < 0 && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case r < 0x80 && unsafeRune(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[:n])
		}
		s = s[n:]
	}
	return b.String()
}

// unsafeRune reports the runes Escape replaces.
func unsafeRune(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r <= 0x9f:
		return true
	case r >= 0x200e && r <= 0x200f, r >= 0x2028 && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

// EscapeJSON makes encoded JSON safe for a terminal: encoding/json escapes
// C0 controls and U+2028/9 but writes DEL, C1 controls and the
// bidirectional controls raw; they become \u escapes, which decode to the
// same strings.
func EscapeJSON(b []byte) []byte {
	i := 0
	for i < len(b) && b[i] < 0x7f {
		i++
	}
	if i == len(b) {
		return b
	}
	out := make([]byte, 0, len(b)+16)
	out = append(out, b[:i]...)
	for i < len(b) {
		r, n := utf8.DecodeRune(b[i:])
		if r >= 0x7f && unsafeRune(r) { // below, only JSON's own layout: encoding/json escapes the rest
			out = fmt.Appendf(out, `\u%04x`, r)
		} else {
			out = append(out, b[i:i+n]...)
		}
		i += n
	}
	return out
}
