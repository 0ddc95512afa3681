package relay

import (
	"slices"
	"strings"
	"testing"
)

// security.md (b), "Envelope and command parsing": T11, T13-T18, T20-T22,
// T24, and T31.

// TestT11InjectedHeaders: the HELO name is sanitized before it reaches the
// Received header, and AUTH= from an unauthenticated client is ignored (G7).
func TestT11InjectedHeaders(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.expect("220 ")
	c.cmd("EHLO x\x00Bcc: victim@evil.test", "250 ")
	c.cmd("MAIL FROM:<a@example.com> AUTH=x+0D+0AX-Injected@evil.example", "250 ")
	c.cmd("RCPT TO:<b@example.net>", "250 ")
	c.cmd("DATA", "354 ")
	c.send("Subject: x\r\n\r\nbody\r\n.\r\n")
	c.expect("250 ")
	c.cmd("EHLO "+strings.Repeat("h", 500), "250 ")
	c.envelope("a@example.com", "b@example.net")
	c.send("x\r\n.\r\n")
	c.expect("250 ")
	m := ts.spool.messages()
	if len(m) != 2 || !strings.HasPrefix(m[0].body, "Received: from x?Bcc: ([127.0.0.1]) ") ||
		strings.Contains(m[0].body, "X-Injected") || len(strings.SplitN(m[1].body, "\r\n", 2)[0]) > 400 {
		t.Errorf("spool = %q", m)
	}
	if logs := ts.logs.String(); strings.Contains(logs, "Injected") || strings.Contains(logs, "\x00") {
		t.Errorf("the log has the injected text:\n%s", logs)
	}
}

// TestT13QuotedLocalPartInjection: a quoted local part cannot smuggle
// parameters (G6): 501 at MAIL and RCPT, and a harmless quoted local part is
// spooled quoted again.
func TestT13QuotedLocalPartInjection(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.Listen.AllowedRecipients = []string{"*@allowed.test"} })
	c := dial(t, ts.addr)
	c.hello()
	c.cmd(`MAIL FROM:<"a> SIZE=1"@example.com>`, "501 5.1.7 ")
	c.cmd(`MAIL FROM:<"a b"@example.com>`, "501 5.1.7 ")
	c.cmd("MAIL FROM:<a@example.com>", "250 ")
	for _, rcpt := range []string{
		`"victim@evil.test> ORCPT=rfc822;x"@allowed.test`,
		`"victim@evil.test> NOTIFY=SUCCESS"@allowed.test`,
		`"v> SIZE=1"@allowed.test`,
		`"v ORCPT=rfc822;x"@allowed.test`,
	} {
		c.cmd("RCPT TO:<"+rcpt+">", "501 5.1.3 ")
	}
	c.cmd(`RCPT TO:<"a..b"@allowed.test>`, "250 ")
	c.cmd(`RCPT TO:<"plain"@allowed.test>`, "250 ")
	c.cmd("DATA", "354 ")
	c.send("x\r\n.\r\n")
	c.expect("250 ")
	if m := ts.spool.messages(); len(m) != 1 || !slices.Equal(m[0].to, []string{`"a..b"@allowed.test`, "plain@allowed.test"}) {
		t.Errorf("spool = %q, want the quoted local part quoted again", m)
	}
}

// TestT14ControlBytesInAddresses: NUL and ESC get 501; a CR anywhere ends
// the session (the guard refuses a bare CR in commands too).
func TestT14ControlBytesInAddresses(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.hello()
	c.cmd("MAIL FROM:<a\x00b@example.com>", "501 5.1.7 ")
	c.cmd("MAIL FROM:<a@example.com>", "250 ")
	c.cmd("RCPT TO:<a\x00b@allowed.test>", "501 5.1.3 ")
	c.cmd("RCPT TO:<a\x1bb@allowed.test>", "501 5.1.3 ")
	c.cmd("RCPT TO:<a\rb@allowed.test>", "550 5.6.0 ")
	c.expectEOF()
}

func TestT15NonASCIIWithoutSMTPUTF8(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.hello()
	c.cmd("MAIL FROM:<é@sender.test>", "553 5.6.7 ")
	c.cmd("MAIL FROM:<a@example.com>", "250 ")
	c.cmd("RCPT TO:<x@bü.example>", "553 5.6.7 ")
}

// TestT16SMTPUTF8NotOffered: SMTPUTF8 is not advertised and its parameter is
// refused (504), so no SMTPUTF8 message is ever queued for an upstream that
// might lack it.
func TestT16SMTPUTF8NotOffered(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.expect("220 ")
	if caps := c.ehlo("x"); slices.Contains(caps, "SMTPUTF8") {
		t.Errorf("EHLO offers SMTPUTF8: %q", caps)
	}
	c.cmd("MAIL FROM:<é@sender.test> SMTPUTF8", "504 5.5.4 ")
}

// TestT17RelayTricks: the allow-list sees the address that is sent upstream;
// source routes are stripped, %, ! and a quoted @ are refused.
func TestT17RelayTricks(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.Listen.AllowedRecipients = []string{"*@allowed.test"} })
	c := dial(t, ts.addr)
	c.hello()
	c.cmd("MAIL FROM:<a@example.com>", "250 ")
	c.cmd("RCPT TO:<@evil.test:victim@allowed.test>", "250 ")
	c.cmd("RCPT TO:<@allowed.test:victim@evil.test>", "550 5.7.1 ")
	for _, r := range []string{"victim%evil.test@allowed.test", "evil.test!victim@allowed.test",
		"victim@evil.test@allowed.test", `"victim@evil.test"@allowed.test`} {
		c.cmd("RCPT TO:<"+r+">", "550 5.7.1 ")
	}
	c.cmd("DATA", "354 ")
	c.send("x\r\n.\r\n")
	c.expect("250 ")
	if m := ts.spool.messages(); len(m) != 1 || !slices.Equal(m[0].to, []string{"victim@allowed.test"}) {
		t.Errorf("spool = %q", m)
	}
}

func TestT18LengthLimits(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.Listen.MaxRecipients = 10 })
	c := dial(t, ts.addr)
	c.hello()
	c.cmd("MAIL FROM:<a@example.com>", "250 ")
	c.cmd("RCPT TO:<"+strings.Repeat("l", 65)+"@example.net>", "501 5.1.3 ")
	c.cmd("RCPT TO:<"+strings.Repeat("l", 64)+"@example.net>", "250 ")
	long := strings.Repeat(strings.Repeat("d", 63)+".", 4)[:256]
	c.cmd("RCPT TO:<x@"+long+">", "501 5.1.3 ")
	path := strings.Repeat("l", 64) + "@" + strings.Repeat(strings.Repeat("d", 60)+".", 4) + "net" // 255
	c.cmd("RCPT TO:<"+path+">", "501 5.1.3 ")
	c.cmd("RCPT TO:<b@example.net> "+strings.Repeat("X", 500), "500 5.5.2 line too long")
	c.cmd("NOOP", "250 ") // the session goes on
	c.send("NOOP " + strings.Repeat("x", 2100) + "\r\n")
	c.expect("500 5.5.2 line too long, closing")
	c.expectEOF()
}

// TestT20Parameters documents go-smtp's own replies to parameters.
func TestT20Parameters(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.hello()
	c.cmd("MAIL FROM:<a@example.com> FOO=bar", "500 5.5.4 ")
	c.cmd("MAIL FROM:<a@example.com> SIZE=99999999999", "501 5.5.4 ")
	c.cmd("MAIL FROM:<a@example.com> BODY=BINARYMIME", "504 5.5.4 ")
	c.cmd("MAIL FROM:<a@example.com>", "250 ")
	c.cmd("RCPT TO:<b@example.net> NOTIFY=SUCCESS", "504 5.5.4 ")
}

// TestT21NestedMail: a second MAIL is 503 and the first transaction stays.
func TestT21NestedMail(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.Listen.AllowedSenders = []string{"a@example.com"} })
	c := dial(t, ts.addr)
	c.hello()
	c.cmd("MAIL FROM:<a@example.com>", "250 ")
	c.cmd("RCPT TO:<x@example.net>", "250 ")
	c.cmd("MAIL FROM:<b@example.com>", "503 5.5.1 ")
	c.cmd("MAIL FROM:<evil@example.com>", "503 5.5.1 ")
	c.cmd("DATA", "354 ")
	c.send("x\r\n.\r\n")
	c.expect("250 ")
	if m := ts.spool.messages(); len(m) != 1 || m[0].from != "a@example.com" || !slices.Equal(m[0].to, []string{"x@example.net"}) {
		t.Errorf("spool = %q", m)
	}
}

// TestT22SequenceErrors: go-smtp answers out-of-order commands with 502
// (accepted by docs/design.md); a second AUTH gets 503.
func TestT22SequenceErrors(t *testing.T) {
	ts := startServer(t, withUsers)
	c := dial(t, ts.addr)
	c.expect("220 ")
	c.cmd("MAIL FROM:<a@example.com>", "502 5.5.1 ")
	c.hello2()
	c.cmd("AUTH PLAIN "+plainIR(testUser, testUserPass), "235 ")
	c.cmd("AUTH PLAIN "+plainIR(testUser, testUserPass), "503 5.5.1 ")
	c.cmd("RCPT TO:<x@example.net>", "502 5.5.1 ")
	c.cmd("DATA", "502 5.5.1 ")
	if m := ts.spool.messages(); len(m) != 0 {
		t.Errorf("spool = %q", m)
	}
}

// TestT24TooManyErrors: after the threshold, 421 4.7.0, and no command
// buffered behind the errors runs (G4).
func TestT24TooManyErrors(t *testing.T) {
	for name, garbage := range map[string]string{"go-smtp's": "GARBAGE\r\n", "guard's": "NOOP\n"} {
		t.Run(name, func(t *testing.T) {
			ts := startServer(t, nil)
			c := dial(t, ts.addr)
			c.expect("220 ")
			c.send(strings.Repeat(garbage, 5) + "EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nx\r\n.\r\n")
			got := c.readAll()
			if len(got) == 0 || !strings.HasPrefix(got[len(got)-1], "421 4.7.0 relay.test too many errors") {
				t.Errorf("replies %q, want 421 4.7.0 last", got)
			}
			for _, r := range got {
				if strings.HasPrefix(r, "250") || strings.HasPrefix(r, "354") {
					t.Errorf("reply %q: a command after the limit ran", r)
				}
			}
			if m := ts.spool.messages(); len(m) != 0 {
				t.Errorf("spool = %q", m)
			}
		})
	}
}

// TestT31RecipientCount: 452 4.5.3 past the limit, the first ones kept, and
// a repeated recipient collapsed into one (go-smtp counts every RCPT it
// accepted towards max_recipients, repeats included).
func TestT31RecipientCount(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.Listen.MaxRecipients = 4 })
	c := dial(t, ts.addr)
	c.hello()
	c.cmd("MAIL FROM:<a@example.com>", "250 ")
	c.cmd("RCPT TO:<same@example.net>", "250 ")
	c.cmd("RCPT TO:<same@EXAMPLE.net>", "250 ") // the same mailbox: collapsed
	c.cmd("RCPT TO:<Same@example.net>", "250 ") // another local part: another mailbox
	c.cmd("RCPT TO:<b@example.net>", "250 ")
	c.cmd("RCPT TO:<c@example.net>", "452 4.5.3 ")
	c.cmd("DATA", "354 ")
	c.send("x\r\n.\r\n")
	c.expect("250 ")
	want := []string{"same@example.net", "Same@example.net", "b@example.net"}
	if m := ts.spool.messages(); len(m) != 1 || !slices.Equal(m[0].to, want) {
		t.Errorf("spool = %q, want recipients %q", m, want)
	}
}
