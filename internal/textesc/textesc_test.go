package textesc

import (
	"encoding/json"
	"testing"
)

func TestEscape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"250 2.0.0 OK queued as 1234", "250 2.0.0 OK queued as 1234"},
		{"héllo wörld 中文", "héllo wörld 中文"},
		{"550 \x1b]0;pwned\x07 no", `550 \x1b]0;pwned\x07 no`},
		{"a\r\nb\tc\x00", `a\x0d\x0ab\x09c\x00`},
		{"del\x7f c1\u009b[2J", `del\x7f c1\u009b[2J`},
		{"evil\u202etxt.exe", `evil\u202etxt.exe`},
		{"bad utf8 \xff\xfe", `bad utf8 \xff\xfe`},
	} {
		if got := Escape(tc.in); got != tc.want {
			t.Errorf("Escape(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// EscapeJSON keeps the JSON valid and the decoded string the same, with no
// raw control byte left in the encoding.
func TestEscapeJSON(t *testing.T) {
	in := "x\x1b[31m\n \u009b \u202e \x7f é"
	b, _ := json.MarshalIndent(map[string]string{"k": in}, "", "  ")
	out := EscapeJSON(b)
	for _, c := range string(out) {
		if unsafeRune(c) && c != '\n' {
			t.Fatalf("raw %U left in %s", c, out)
		}
	}
	var m map[string]string
	if err := json.Unmarshal(out, &m); err != nil || m["k"] != in {
		t.Fatalf("decoded %q, %v; want %q", m["k"], err, in)
	}
}
