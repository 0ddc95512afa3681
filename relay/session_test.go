package relay

import (
	"errors"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"
)

func TestHappyPath(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.expect("220 relay.test ")
	c.send("EHLO client.test\r\n")
	var caps []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		caps = append(caps, strings.TrimSpace(line[4:]))
		if line[3] == ' ' {
			break
		}
	}
	for _, cp := range caps {
		if strings.HasPrefix(cp, "AUTH") {
			t.Errorf("EHLO advertises %q; inbound AUTH is not offered", cp)
		}
	}
	if !slices.Contains(caps, "SIZE 1048576") || !slices.Contains(caps, "LIMITS RCPTMAX=3") {
		t.Errorf("EHLO = %q, want SIZE 1048576 and LIMITS RCPTMAX=3", caps)
	}

	c.envelope("a@example.com", "b@example.net", "c@example.org")
	c.send("Subject: hi\r\n\r\nline 1\r\n..leading dot\r\n\r\n.\r\n")
	c.expect("250 2.0.0 queued as id-1")
	c.cmd("QUIT", "221 ")

	msgs := ts.spool.messages()
	if len(msgs) != 1 {
		t.Fatalf("spool has %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.from != "a@example.com" || !slices.Equal(m.to, []string{"b@example.net", "c@example.org"}) || m.client != "127.0.0.1" {
		t.Errorf("envelope = %q %q %q", m.client, m.from, m.to)
	}
	if want := wantReceived + "Subject: hi\r\n\r\nline 1\r\n.leading dot\r\n\r\n"; m.body != want {
		t.Errorf("body =\n%q\nwant\n%q", m.body, want)
	}
	logs := ts.logs.String()
	if !strings.Contains(logs, "msg=accepted id=id-1") || !strings.Contains(logs, "rcpts=2") {
		t.Errorf("no accepted event in the log:\n%s", logs)
	}
	if strings.Contains(logs, "leading dot") {
		t.Errorf("the log contains the message body:\n%s", logs)
	}
}

func TestNullSenderAndEmptyBody(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.hello()
	c.envelope("", "b@example.net")
	c.send(".\r\n")
	c.expect("250 2.0.0 queued as id-1")
	if m := ts.spool.messages(); len(m) != 1 || m[0].from != "" || m[0].body != wantReceived {
		t.Errorf("spool = %q", m)
	}
}

// TestGoSMTPClient sends through go-smtp's own client, which dot-stuffs.
func TestGoSMTPClient(t *testing.T) {
	ts := startServer(t, nil)
	c, err := smtp.Dial(ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH is advertised")
	}
	body := "Subject: x\r\n\r\n.\r\n..\r\nend\r\n"
	if err := c.SendMail("a@example.com", []string{"b@example.net"}, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	if m := ts.spool.messages(); len(m) != 1 || m[0].body != wantReceived+body {
		t.Errorf("spool = %q", m)
	}
}

func TestSpoolErrors(t *testing.T) {
	diskErr := &fs.PathError{Op: "write", Path: "/spool/tmp/x", Err: errors.New("input/output error")}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"full", fullError{}, "452 4.3.1 "},
		{"disk", diskErr, "451 4.3.0 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, nil)
			ts.spool.setFail(tc.err)
			c := dial(t, ts.addr)
			c.hello()
			c.envelope("a@example.com", "b@example.net")
			c.send("Subject: x\r\n\r\nbody\r\n.\r\n")
			if got := c.expect(tc.want); strings.Contains(got, "/spool") || strings.Contains(got, "input/output") {
				t.Errorf("reply %q shows the error's details", got)
			}
			c.cmd("RSET", "250 ")
			ts.spool.setFail(nil)
			c.envelope("a@example.com", "b@example.net")
			c.send("Subject: x\r\n\r\nbody\r\n.\r\n")
			c.expect("250 2.0.0 queued as id-1")
			if !strings.Contains(ts.logs.String(), "msg=rejected code="+tc.want[:3]) {
				t.Errorf("no rejected event:\n%s", ts.logs)
			}
		})
	}
}

func TestTooBig(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.Listen.MaxMessageBytes = 1000 })
	c := dial(t, ts.addr)
	c.hello()
	c.cmd("MAIL FROM:<a@example.com> SIZE=5000", "552 5.3.4 ") // go-smtp's own check
	c.envelope("a@example.com", "b@example.net")
	c.send("Subject: x\r\n\r\n" + strings.Repeat("0123456789abcde\r\n", 200) + ".\r\n")
	c.expect("552 5.3.4 ")
	c.cmd("NOOP", "250 ")
	if m := ts.spool.messages(); len(m) != 0 {
		t.Errorf("spool = %q, want nothing", m)
	}
}

func TestRecipientRules(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.hello()
	c.cmd("RCPT TO:<b@example.net>", "502 5.5.1 ") // go-smtp's own: RCPT before MAIL
	c.cmd("MAIL FROM:<a@example.com>", "250 ")
	c.cmd("MAIL FROM:<evil@example.com>", "503 5.5.1 ")
	c.cmd("RCPT TO:<x@nowhere.test>", "550 5.7.1 ")
	c.cmd(`RCPT TO:<"a b"@example.net>`, "501 5.1.3 ")
	c.cmd(`RCPT TO:<"victim@evil.test> ORCPT=rfc822;x"@example.net>`, "501 5.1.3 ")
	c.cmd("RCPT TO:<b1@example.net>", "250 ")
	c.cmd("RCPT TO:<b2@example.net>", "250 ")
	c.cmd("RCPT TO:<b3@example.net>", "250 ")
	c.cmd("RCPT TO:<b4@example.net>", "452 4.5.3 ")
	c.cmd("DATA", "354 ")
	c.send("Subject: x\r\n\r\nbody\r\n.\r\n")
	c.expect("250 2.0.0 queued as id-1")
	m := ts.spool.messages()
	if len(m) != 1 || m[0].from != "a@example.com" || !slices.Equal(m[0].to, []string{"b1@example.net", "b2@example.net", "b3@example.net"}) {
		t.Errorf("spool = %q; the nested MAIL must not change the transaction", m)
	}
	if logs := ts.logs.String(); !strings.Contains(logs, "code=550") || !strings.Contains(logs, "rcpt=x@nowhere.test") {
		t.Errorf("no rejected event for the unroutable recipient:\n%s", logs)
	}
}

func TestBadSender(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.hello()
	c.cmd("MAIL FROM:<"+strings.Repeat("a", 250)+"@example.com>", "501 5.1.7 ")
	c.cmd("MAIL FROM:<a\x01b@example.com>", "501 5.1.7 ")
	c.cmd("MAIL FROM:<a@example.com>", "250 ")
}

// TestRsetAndHelo checks that RSET and a second EHLO end the transaction.
func TestRsetAndHelo(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.hello()
	c.cmd("MAIL FROM:<a@example.com>", "250 ")
	c.cmd("RCPT TO:<b@example.net>", "250 ")
	c.cmd("RSET", "250 ")
	c.cmd("DATA", "502 5.5.1 ")
	c.cmd("MAIL FROM:<c@example.com>", "250 ")
	c.cmd("EHLO other.test", "250 ")
	c.envelope("d@example.com", "e@example.net")
	c.send("x\r\n.\r\n")
	c.expect("250 2.0.0 queued as id-1")
	m := ts.spool.messages()
	if len(m) != 1 || m[0].from != "d@example.com" || !strings.HasPrefix(m[0].body, "Received: from other.test ") {
		t.Errorf("spool = %q", m)
	}
}

func TestHeloIsSanitized(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.expect("220 ")
	c.cmd("EHLO evil\x00(x);\x7f", "250 ")
	c.envelope("a@example.com", "b@example.net")
	c.send("x\r\n.\r\n")
	c.expect("250 ")
	if m := ts.spool.messages(); len(m) != 1 || !strings.HasPrefix(m[0].body, "Received: from evil??x??? ([127.0.0.1]) ") {
		t.Errorf("spool = %q", m)
	}
}

func TestAuthRefused(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.hello()
	c.cmd("AUTH PLAIN AGFAYg==", "5")
	c.cmd("MAIL FROM:<a@example.com>", "250 ")
}

// The route found at RCPT is the one spooled: a route change (a SIGHUP
// reload) between RCPT and the end of DATA neither refuses an accepted
// recipient nor reroutes it.
func TestRouteResolvedOnceAtRcpt(t *testing.T) {
	var mu sync.Mutex
	routes := map[string][]string{"a@example.net": {"p1", "p2"}, "b@example.net": {"p3"}}
	ts := startServer(t, func(o *Options) {
		o.Route = func(_, rcpt string) []string {
			mu.Lock()
			defer mu.Unlock()
			return routes[rcpt]
		}
	})
	c := dial(t, ts.addr)
	c.hello()
	c.cmd("MAIL FROM:<s@example.com>", "250 ")
	c.cmd("RCPT TO:<a@example.net>", "250 ")
	c.cmd("RCPT TO:<b@example.net>", "250 ")
	mu.Lock()
	routes = map[string][]string{} // the reload: no route for anyone now
	mu.Unlock()
	c.cmd("DATA", "354 ")
	c.send("Subject: x\r\n\r\nbody\r\n.\r\n")
	c.expect("250 2.0.0 queued as id-1")
	m := ts.spool.messages()
	if len(m) != 1 || !slices.EqualFunc(m[0].routes, [][]string{{"p1", "p2"}, {"p3"}}, slices.Equal[[]string]) {
		t.Fatalf("spooled routes = %v, want those of RCPT time", m)
	}
	c.cmd("MAIL FROM:<s@example.com>", "250 ")
	c.cmd("RCPT TO:<a@example.net>", "550 5.7.1 ") // the next transaction sees the new routes
}
