package upstream

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/tlsrelay/tlsrelay/delivery"
	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/policy"
)

const rewriteTo = "noreply@verified.example"

func TestRewriteFrom(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"display name",
			"From: Alice App <app@example.com>\r\nTo: b@example.net\r\n",
			"From: Alice App <" + rewriteTo + ">\r\nReply-To: Alice App <app@example.com>\r\nTo: b@example.net\r\n"},
		{"quoted display name with brackets",
			"Subject: x\r\nFrom: \"A <b> (c)\" <app@example.com>\r\n",
			"Subject: x\r\nFrom: \"A <b> (c)\" <" + rewriteTo + ">\r\nReply-To: \"A <b> (c)\" <app@example.com>\r\n"},
		{"folded",
			"From: \"A Very Long\r\n Display Name\"\r\n <app@example.com>\r\nTo: b@example.net\r\n",
			"From: \"A Very Long\r\n Display Name\" <" + rewriteTo + ">\r\nReply-To: \"A Very Long\r\n Display Name\"\r\n <app@example.com>\r\nTo: b@example.net\r\n"},
		{"encoded word kept",
			"From: =?UTF-8?B?w6lsaXNl?= <app@example.com>\r\n",
			"From: =?UTF-8?B?w6lsaXNl?= <" + rewriteTo + ">\r\nReply-To: =?UTF-8?B?w6lsaXNl?= <app@example.com>\r\n"},
		{"bare address",
			"from:app@example.com\r\n",
			"From: " + rewriteTo + "\r\nReply-To:app@example.com\r\n"},
		{"address with a comment",
			"From: app@example.com (Alice App)\r\n",
			"From: \"Alice App\" <" + rewriteTo + ">\r\nReply-To: app@example.com (Alice App)\r\n"},
		{"angle address alone",
			"From: <app@example.com>\r\n",
			"From: <" + rewriteTo + ">\r\nReply-To: <app@example.com>\r\n"},
		{"reply-to kept",
			"Reply-To: owner@example.com\r\nFrom: App <app@example.com>\r\n",
			"Reply-To: owner@example.com\r\nFrom: App <" + rewriteTo + ">\r\n"},
		{"no from",
			"To: b@example.net\r\nSubject: From: nobody\r\n",
			"To: b@example.net\r\nSubject: From: nobody\r\n"},
		{"tab-folded other field untouched",
			"X-Long: a\r\n\tb\r\nFrom: app@example.com\r\n",
			"X-Long: a\r\n\tb\r\nFrom: " + rewriteTo + "\r\nReply-To: app@example.com\r\n"},
	}
	for _, tc := range cases {
		if got := string(rewriteFrom([]byte(tc.in), rewriteTo)); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func TestReadHeader(t *testing.T) {
	big := "X-Big: " + strings.Repeat("x", 70<<10) + "\r\n\r\nbody\r\n"
	cases := []struct{ name, in, hdr, rest string }{
		{"normal", "A: 1\r\nB: 2\r\n\r\nbody\r\n", "A: 1\r\nB: 2\r\n", "\r\nbody\r\n"},
		{"headers only", "A: 1\r\n", "A: 1\r\n", ""},
		{"no header fields", "\r\nbody\r\n", "", "\r\nbody\r\n"},
		{"too big", big, "<nil>", big},
		{"unterminated", "A: 1", "<nil>", "A: 1"},
	}
	// One byte at a time, to cross every read boundary; and with the last
	// data and io.EOF from the same Read.
	readers := map[string]func(io.Reader) io.Reader{"one byte": iotest.OneByteReader, "data+EOF": iotest.DataErrReader}
	for _, tc := range cases {
		for rname, reader := range readers {
			hdr, rest, err := readHeader(reader(strings.NewReader(tc.in)), maxRewriteHeader)
			if err != nil {
				t.Fatal(err)
			}
			got := string(hdr)
			if hdr == nil {
				got = "<nil>"
			}
			all, _ := io.ReadAll(rest)
			if got != tc.hdr || string(all) != tc.rest {
				t.Errorf("%s, %s: hdr %.40q rest %.40q; want %.40q, %.40q", tc.name, rname, got, all, tc.hdr, tc.rest)
			}
		}
	}
	if _, _, err := readHeader(iotest.ErrReader(io.ErrUnexpectedEOF), 100); err == nil {
		t.Error("a read error was lost")
	}
}

// rewriteDeliver sends msgBody from sender through a server with rewrite_sender
// set (or not) and returns what the server received.
func rewriteDeliver(t *testing.T, rewrite, sender, msgBody string) (smtptest.Message, *smtptest.LogBuffer) {
	t.Helper()
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, Users: users, AuthRequired: true})
	p := fakeProvider(s, policy.TLSImplicit, "plain")
	p.RewriteSender = rewrite
	c, logs := newClient(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msg := &delivery.Message{ID: "m1", From: sender, Size: int64(len(msgBody)), Body: strings.NewReader(msgBody)}
	if r := c.Deliver(ctx, "fake", msg, []string{"b@example.net"}); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	return waitOne(t, s), logs
}

func TestRewriteSenderDelivery(t *testing.T) {
	in := "Received: from app\r\n\tby relay; Mon, 1 Jan 2026 00:00:00 +0000\r\n" +
		"From: \"App\r\n Sender\" <app@example.com>\r\nSubject: hi\r\n\r\n" +
		"From: a line of the body that looks like a header\r\n.dot\r\n" + strings.Repeat("b", 998) + "\r\n"
	m, _ := rewriteDeliver(t, rewriteTo, "app@example.com", in)
	if m.From != rewriteTo {
		t.Errorf("MAIL FROM %q, want %q", m.From, rewriteTo)
	}
	hdr, bodyPart, _ := bytes.Cut(m.Data, []byte("\r\n\r\n"))
	wantHdr := "Received: from app\r\n\tby relay; Mon, 1 Jan 2026 00:00:00 +0000\r\n" +
		"From: \"App\r\n Sender\" <" + rewriteTo + ">\r\nReply-To: \"App\r\n Sender\" <app@example.com>\r\nSubject: hi"
	if string(hdr) != wantHdr {
		t.Errorf("header:\n got %q\nwant %q", hdr, wantHdr)
	}
	if _, wantBody, _ := strings.Cut(in, "\r\n\r\n"); string(bodyPart) != wantBody {
		t.Errorf("body changed:\n got %q\nwant %q", bodyPart, wantBody)
	}
}

func TestRewriteSenderSize(t *testing.T) {
	in := "From: App <app@example.com>\r\n\r\nbody\r\n"
	d := &attempt{p: &policy.Provider{RewriteSender: rewriteTo}, log: slog.New(slog.DiscardHandler),
		msg: &delivery.Message{From: "app@example.com", Size: int64(len(in)), Body: strings.NewReader(in)}}
	from, body, size, err := d.envelope()
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(body)
	if from != rewriteTo || size != int64(len(out)) || !bytes.HasPrefix(out, []byte("From: App <"+rewriteTo+">\r\nReply-To:")) {
		t.Errorf("envelope = %q, size %d for %d bytes:\n%s", from, size, len(out), out)
	}
}

func TestRewriteSenderNullSender(t *testing.T) {
	in := "From: MAILER-DAEMON@relay.local\r\nSubject: bounce\r\n\r\nbody\r\n"
	m, _ := rewriteDeliver(t, rewriteTo, "", in)
	if m.From != "" || string(m.Data) != in {
		t.Errorf("a bounce was rewritten: MAIL FROM %q, data %q", m.From, m.Data)
	}
}

func TestRewriteSenderOff(t *testing.T) {
	m, _ := rewriteDeliver(t, "", "app@example.com", body)
	if m.From != "app@example.com" || string(m.Data) != body {
		t.Errorf("changed without rewrite_sender: MAIL FROM %q, data %q", m.From, m.Data)
	}
}

func TestRewriteSenderHugeHeader(t *testing.T) {
	in := "From: app@example.com\r\nX-Big: x\r\n" + strings.Repeat(" "+strings.Repeat("x", 900)+"\r\n", 75) + "\r\nbody\r\n"
	m, logs := rewriteDeliver(t, rewriteTo, "app@example.com", in)
	if m.From != rewriteTo || string(m.Data) != in {
		t.Errorf("MAIL FROM %q; data changed: %v", m.From, string(m.Data) != in)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"header block larger than 64KiB") {
		t.Errorf("no warning:\n%s", logs)
	}
}
