package relay

import (
	"fmt"
	"strings"
	"testing"
)

const smuggled = "MAIL FROM:<ceo@bank.example>\r\nRCPT TO:<x@example.net>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n"

// TestBareLFRejected: a bare LF is refused after the real end of data, with
// nothing queued, and the session stays in sync (security.md T01 reject mode).
func TestBareLFRejected(t *testing.T) {
	for _, body := range []string{
		"Subject: x\r\n\r\nline 1\nline 2\r\n",
		"Subject: x\r\n\r\nx\n.\n" + smuggled,
		"Subject: x\r\n\r\nx\n.\r\n" + smuggled,
		"Subject: x\r\n\r\nx\r\n.\n" + smuggled,
		"\n\r\n",
	} {
		t.Run(fmt.Sprintf("%q", body), func(t *testing.T) {
			ts := startServer(t, nil)
			c := dial(t, ts.addr)
			c.hello()
			c.envelope("a@example.com", "b@example.net")
			c.send(body + ".\r\n")
			c.expect("550 5.6.0 message contains bare CR or LF; lines must end with CRLF")
			c.cmd("NOOP", "250 ")
			c.envelope("a@example.com", "b@example.net")
			c.send("ok\r\n.\r\n")
			c.expect("250 2.0.0 queued as id-1")
			if m := ts.spool.messages(); len(m) != 1 || strings.Contains(m[0].body, "smuggled") {
				t.Errorf("spool = %q, want only the second message", m)
			}
			if !strings.Contains(ts.logs.String(), "msg=rejected code=550") {
				t.Errorf("no rejected event:\n%s", ts.logs)
			}
		})
	}
}

// TestBareCRRejected: a bare CR is refused at once and the session ends, so
// go-smtp's DATA reader never acts on it (G1, G2; security.md T01, T03-T05).
func TestBareCRRejected(t *testing.T) {
	for _, tc := range []struct{ name, data string }{
		{"mid line", "line\rmore\r\n.\r\n"},
		{"CR dot CR", "x\r\n\r.\r" + smuggled + ".\r\n"},
		{"CRLF dot CR", "x\r\n.\r" + smuggled + ".\r\n"},
		{"G1 CR CR LF", "Subject: x\r\r\n\r\r\nbody\r\r\n.\r\nQUIT\r\n"},
		{"G2 dot CR", "a\r\n.\rX\r\n.\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, nil)
			c := dial(t, ts.addr)
			c.hello()
			c.envelope("a@example.com", "b@example.net")
			c.send(tc.data)
			c.expect("550 5.6.0 message contains bare CR or LF")
			c.expectEOF()
			if m := ts.spool.messages(); len(m) != 0 {
				t.Errorf("spool = %q, want nothing", m)
			}
		})
	}
}

// TestBareCRSplitAcrossReads: the CR ends one write and the next byte comes
// in another.
func TestBareCRSplitAcrossReads(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.hello()
	c.envelope("a@example.com", "b@example.net")
	c.send("abc\r\n.\r")
	c.cmd("NOOP", "550 5.6.0 ") // N follows the CR: no CRLF.CRLF, no NOOP
	c.expectEOF()
	if m := ts.spool.messages(); len(m) != 0 {
		t.Errorf("spool = %q, want nothing", m)
	}
}

func TestBareCRInCommand(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.hello()
	c.cmd("NOOP", "250 ")
	c.send("MAIL FROM:<a@example.com>\rRCPT TO:<b@example.net>\r\n")
	c.expect("550 5.6.0 ")
	c.expectEOF()
}

// TestBDAT: go-smtp always offers CHUNKING and hands BDAT chunks over raw
// (G3); the same check applies to them.
func TestBDAT(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.hello()
	c.cmd("MAIL FROM:<a@example.com>", "250 ")
	c.cmd("RCPT TO:<b@example.net>", "250 ")
	chunk := "Subject: x\n\nl1\n.\n" + smuggled
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(chunk), chunk))
	c.expect("550 5.6.0 ")
	c.cmd("NOOP", "250 ")

	c.cmd("MAIL FROM:<a@example.com>", "250 ")
	c.cmd("RCPT TO:<b@example.net>", "250 ")
	part1, part2 := "Subject: y\r\n\r\n", ".not stuffed\r\n"
	c.send(fmt.Sprintf("BDAT %d\r\n%s", len(part1), part1))
	c.expect("250 ")
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(part2), part2))
	c.expect("250 2.0.0 queued as id-1")
	if m := ts.spool.messages(); len(m) != 1 || m[0].body != wantReceived+part1+part2 {
		t.Errorf("spool = %q", m)
	}
}

// TestLongLine: a line past the 2000-byte limit is refused and go-smtp
// closes the connection; our reply is the last one.
func TestLongLine(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.hello()
	c.envelope("a@example.com", "b@example.net")
	c.send("Subject: x\r\n\r\n" + strings.Repeat("x", 2100) + "\r\n.\r\n")
	c.expect("554 5.6.0 ")
	c.expectEOF()
	if m := ts.spool.messages(); len(m) != 0 {
		t.Errorf("spool = %q, want nothing", m)
	}
}
