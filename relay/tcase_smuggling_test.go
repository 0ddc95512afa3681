package relay

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// security.md (b), "Smuggling and line endings": T01-T09 and T19, inbound.
// The outbound half (the dot-writer upstream) is in the root package's
// tcase_e2e_test.go.

// secVariants are the SEC Consult end-of-data variants of T01.
var secVariants = []struct{ name, seq string }{
	{"LF.LF", "\n.\n"}, {"LF.CRLF", "\n.\r\n"}, {"CRLF.LF", "\r\n.\n"}, {"CR.CR", "\r.\r"}, {"CRLF.CR", "\r\n.\r"},
}

func TestT01SECConsultVariants(t *testing.T) {
	for _, v := range secVariants {
		bareCR := strings.Contains(strings.ReplaceAll(v.seq, "\r\n", ""), "\r")
		t.Run("reject/"+v.name, func(t *testing.T) {
			ts := startServer(t, nil)
			c := dial(t, ts.addr)
			c.hello()
			c.envelope("a@example.com", "x@example.net")
			c.send("Subject: x\r\n\r\nbody" + v.seq + smuggled + ".\r\n")
			c.expect("550 5.6.0 ")
			if bareCR {
				c.expectEOF() // a bare CR ends the session at once
			} else {
				c.cmd("NOOP", "250 ") // read to the real terminator: in sync
			}
			if m := ts.spool.messages(); len(m) != 0 {
				t.Errorf("spool = %q, want nothing", m)
			}
		})
		t.Run("fix/"+v.name, func(t *testing.T) {
			ts := startServer(t, fixMode)
			c := dial(t, ts.addr)
			c.hello()
			c.envelope("a@example.com", "x@example.net")
			c.send("Subject: x\r\n\r\nbody" + v.seq + smuggled + ".\r\n")
			if bareCR {
				c.expect("550 5.6.0 ") // fix is for LF only
				c.expectEOF()
				return
			}
			c.expect("250 2.0.0 queued as id-1") // one reply, after the real terminator
			c.cmd("NOOP", "250 ")
			m := ts.spool.messages()
			if len(m) != 1 || strings.Count(m[0].body, "smuggled") != 1 || m[0].from != "a@example.com" {
				t.Fatalf("spool = %q, want one message with the smuggled text as body", m)
			}
			assertClean(t, m)
		})
	}
}

// TestT02PipelinedSmuggling: the whole dialogue in one write, DATA and BDAT.
func TestT02PipelinedSmuggling(t *testing.T) {
	for _, v := range secVariants[:3] {
		t.Run(v.name, func(t *testing.T) {
			ts := startServer(t, nil)
			c := dial(t, ts.addr)
			c.expect("220 ")
			c.send("EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<x@example.net>\r\nDATA\r\n" +
				"Subject: x\r\n\r\nbody" + v.seq + smuggled + ".\r\nQUIT\r\n")
			got := c.readAll()
			want := []string{"250", "250", "250", "354", "550", "221"}
			if codes := replyCodes(got); strings.Join(codes, " ") != strings.Join(want, " ") {
				t.Errorf("replies %q, want codes %v: a smuggled command was answered", got, want)
			}
			if m := ts.spool.messages(); len(m) != 0 {
				t.Errorf("spool = %q", m)
			}
		})
	}
	t.Run("BDAT", func(t *testing.T) {
		ts := startServer(t, nil)
		c := dial(t, ts.addr)
		c.expect("220 ")
		chunk := "Subject: x\r\n\r\nbody\n.\n" + smuggled
		c.send(fmt.Sprintf("EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<x@example.net>\r\nBDAT %d LAST\r\n%sQUIT\r\n", len(chunk), chunk))
		if codes := replyCodes(c.readAll()); strings.Join(codes, " ") != "250 250 250 550 221" {
			t.Errorf("reply codes %v", codes)
		}
		if m := ts.spool.messages(); len(m) != 0 {
			t.Errorf("spool = %q", m)
		}
	})
}

// replyCodes returns the codes of the last line of each reply.
func replyCodes(lines []string) []string {
	var codes []string
	for _, l := range lines {
		if len(l) >= 4 && l[3] == ' ' {
			codes = append(codes, l[:3])
		}
	}
	return codes
}

func TestT03BareCR(t *testing.T) {
	for _, mode := range []func(*Options){nil, fixMode} {
		for _, body := range []string{"line\rmore\r\n", "\r.\r\n", "x\r\n\r.\r\n"} {
			ts := startServer(t, mode)
			c := dial(t, ts.addr)
			c.hello()
			c.envelope("a@example.com", "x@example.net")
			c.send(body + ".\r\n")
			c.expect("550 5.6.0 ")
			c.expectEOF()
			if m := ts.spool.messages(); len(m) != 0 {
				t.Errorf("%q: spool = %q", body, m)
			}
		}
	}
}

// TestT04CRCRLF: CR CR LF line ends (G1) get a reply at once, not after a
// timeout, and QUIT never becomes message content. The relay refuses the
// bare CR and ends the session, so QUIT is not answered.
func TestT04CRCRLF(t *testing.T) {
	ts := startServer(t, nil) // read_timeout is testWait: the reply must not wait for it
	c := dial(t, ts.addr)
	c.hello()
	c.envelope("a@example.com", "x@example.net")
	start := time.Now()
	c.send("Subject: x\r\r\n\r\r\nbody\r\r\n.\r\nQUIT\r\n")
	c.expect("550 5.6.0 ")
	if d := time.Since(start); d > time.Second {
		t.Errorf("reply after %v, want within 1s", d)
	}
	c.expectEOF()
	if m := ts.spool.messages(); len(m) != 0 {
		t.Errorf("spool = %q", m)
	}
}

// TestT05DotCR: CR after a leading dot (G2) is refused, never dropped.
func TestT05DotCR(t *testing.T) {
	ts := startServer(t, fixMode)
	c := dial(t, ts.addr)
	c.hello()
	c.envelope("a@example.com", "x@example.net")
	c.send("a\r\n.\rX\r\n.\r\n")
	c.expect("550 5.6.0 ")
	c.expectEOF()
	if m := ts.spool.messages(); len(m) != 0 {
		t.Errorf("spool = %q (the CR must not be dropped silently)", m)
	}
}

// TestT06BDATBareLF: a BDAT chunk with bare LFs is refused, with line_endings
// fix too (its byte count must hold, so it is never rewritten).
func TestT06BDATBareLF(t *testing.T) {
	for name, mode := range map[string]func(*Options){"reject": nil, "fix": fixMode} {
		t.Run(name, func(t *testing.T) {
			ts := startServer(t, mode)
			c := dial(t, ts.addr)
			c.hello()
			c.cmd("MAIL FROM:<a@example.com>", "250 ")
			c.cmd("RCPT TO:<x@example.net>", "250 ")
			chunk := "Subject: x\n\nl1\n.\nMAIL FROM:<ceo@bank.example>\n"
			c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(chunk), chunk))
			c.expect("550 5.6.0 ")
			c.cmd("NOOP", "250 ")
			if m := ts.spool.messages(); len(m) != 0 {
				t.Errorf("spool = %q", m)
			}
		})
	}
}

// TestT07DotStuffing: the spool holds the message unstuffed, byte for byte.
func TestT07DotStuffing(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.hello()
	lines := []string{".", "..", ".leading", "...x", "last"}
	var stuffed, want strings.Builder
	for _, l := range lines {
		if strings.HasPrefix(l, ".") {
			stuffed.WriteString(".")
		}
		stuffed.WriteString(l + "\r\n")
		want.WriteString(l + "\r\n")
	}
	c.envelope("a@example.com", "x@example.net")
	c.send(stuffed.String() + ".\r\n")
	c.expect("250 ")
	c.envelope("a@example.com", "x@example.net")
	c.send(".\r\n") // only the terminator: an empty message
	c.expect("250 ")
	m := ts.spool.messages()
	if len(m) != 2 || m[0].body != wantReceived+want.String() || m[1].body != wantReceived {
		t.Errorf("spool = %q", m)
	}
}

// TestT08NUL: NUL passes through unchanged (documented policy), never cut.
func TestT08NUL(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.hello()
	c.envelope("a@example.com", "x@example.net")
	c.send("li\x00ne\r\n.\r\n")
	c.expect("250 ")
	if m := ts.spool.messages(); len(m) != 1 || m[0].body != wantReceived+"li\x00ne\r\n" {
		t.Errorf("spool = %q", m)
	}
}

// TestT09LongLines: up to max_line_bytes passes; past it 554 5.6.0, the
// session ends and nothing is spooled.
func TestT09LongLines(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.hello()
	c.envelope("a@example.com", "x@example.net")
	c.send(strings.Repeat("x", 1500) + "\r\n.\r\n")
	c.expect("250 ")
	c.envelope("a@example.com", "x@example.net")
	c.send(strings.Repeat("x", 2100) + "\r\n.\r\n")
	c.expect("554 5.6.0 ")
	c.expectEOF()
	if m := ts.spool.messages(); len(m) != 1 {
		t.Errorf("spool has %d messages, want the first only", len(m))
	}
}

// TestT19BareLFCommands: reject mode refuses a command ending in a bare LF
// (500 5.5.2, the session goes on); fix mode takes it as CRLF.
func TestT19BareLFCommands(t *testing.T) {
	t.Run("reject", func(t *testing.T) {
		ts := startServer(t, nil)
		c := dial(t, ts.addr)
		c.expect("220 ")
		c.send("EHLO x\n")
		c.expect("500 5.5.2 ")
		c.hello2()
		c.send("MAIL FROM:<a@example.com>\n")
		c.expect("500 5.5.2 ")
		c.cmd("NOOP", "250 ")
	})
	t.Run("fix", func(t *testing.T) {
		ts := startServer(t, fixMode)
		c := dial(t, ts.addr)
		c.expect("220 ")
		c.send("EHLO x\nMAIL FROM:<a@example.com>\nRCPT TO:<b@example.net>\nDATA\n")
		c.expect("250 ")
		c.expect("250 ")
		c.expect("250 ")
		c.expect("354 ")
		// End of data is CRLF.CRLF in both modes: LF.CRLF is a smuggling
		// variant (T01) and only continues the body.
		c.send("Subject: unix\n\nline\n.\r\nend\r\n.\r\nQUIT\n")
		c.expect("250 2.0.0 queued")
		c.expect("221 ")
		m := ts.spool.messages()
		if len(m) != 1 || !strings.HasSuffix(m[0].body, "Subject: unix\r\n\r\nline\r\n.\r\nend\r\n") {
			t.Errorf("spool = %q", m)
		}
		assertClean(t, m)
	})
}

// hello2 is EHLO after the greeting was read.
func (c *client) hello2() {
	c.t.Helper()
	c.cmd("EHLO client.test", "250 ")
}
