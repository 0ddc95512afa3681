package sendmail

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 12, 6, 15, 4, 5, 0, time.UTC)

func prepare(t *testing.T, in string, i Input) *Message {
	t.Helper()
	i.Hostname, i.Now = "host.example", testNow
	if i.Limit == 0 {
		i.Limit = 1 << 20
	}
	m, err := Prepare(strings.NewReader(in), i)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPrepareKeepsWhatIsThere(t *testing.T) {
	in := "From: App <app@x.example>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <1@x.example>\nSubject: hi\n\nbody\n"
	m := prepare(t, in, Input{IgnoreDots: true})
	want := strings.ReplaceAll(in, "\n", "\r\n")
	if string(m.Data) != want {
		t.Fatalf("got %q\nwant %q", m.Data, want)
	}
}

func TestPrepareAddsMissingFields(t *testing.T) {
	m := prepare(t, "Subject: cron\r\n\r\nout\r\n", Input{From: "root@host.example", FullName: "Cron Daemon"})
	s := string(m.Data)
	for _, w := range []string{"Subject: cron\r\n", "From: \"Cron Daemon\" <root@host.example>\r\n",
		"Date: Sun, 06 Dec 2026 15:04:05 +0000\r\n", "Message-ID: <", "@host.example>\r\n\r\nout\r\n"} {
		if !strings.Contains(s, w) {
			t.Errorf("%q lacks %q", s, w)
		}
	}
	if !strings.HasPrefix(s, "Subject: cron\r\n") {
		t.Errorf("added fields must follow the existing ones: %q", s)
	}
}

func TestPrepareDots(t *testing.T) {
	in := "Subject: d\n\nline\n.\nafter\n"
	if m := prepare(t, in, Input{}); strings.Contains(string(m.Data), "after") {
		t.Errorf("without -i a lone dot must end the message: %q", m.Data)
	}
	if m := prepare(t, in, Input{IgnoreDots: true}); !strings.Contains(string(m.Data), "line\r\n.\r\nafter\r\n") {
		t.Errorf("with -i the dot line must stay: %q", m.Data)
	}
}

func TestPrepareReadRcpts(t *testing.T) {
	in := "From: a@x.example\nTo: B <b@y.example>, c@y.example\nCc: d@z.example\nBcc: secret@z.example,\n hidden@z.example\nSubject: t\n\nbody\n"
	m := prepare(t, in, Input{ReadRcpts: true, IgnoreDots: true})
	want := []string{"b@y.example", "c@y.example", "d@z.example", "secret@z.example", "hidden@z.example"}
	if !reflect.DeepEqual(m.Rcpts, want) {
		t.Errorf("Rcpts = %q, want %q", m.Rcpts, want)
	}
	if s := string(m.Data); strings.Contains(s, "Bcc") || strings.Contains(s, "secret@") || strings.Contains(s, "hidden@") {
		t.Errorf("Bcc left in the message: %q", s)
	}
	if m := prepare(t, "To: root, admin\n\nx\n", Input{ReadRcpts: true}); !reflect.DeepEqual(m.Rcpts, []string{"root", "admin"}) {
		t.Errorf("bare names: %q", m.Rcpts)
	}
}

func TestPrepareOther(t *testing.T) {
	m := prepare(t, "From someone Mon Jan  1 00:00:00 2024\nSubject: mbox\n\nß\n", Input{})
	if strings.Contains(string(m.Data), "From someone") || !m.EightBit {
		t.Errorf("mbox From_ line kept or 8-bit not seen: %+v %q", m, m.Data)
	}
	m = prepare(t, "just text, no header\n", Input{From: "a@x.example"})
	if !strings.HasSuffix(string(m.Data), "\r\n\r\njust text, no header\r\n") || !strings.HasPrefix(string(m.Data), "From: <a@x.example>\r\n") {
		t.Errorf("headerless input: %q", m.Data)
	}
	if _, err := Prepare(strings.NewReader(strings.Repeat("x", 100)), Input{Limit: 99}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over the limit: %v", err)
	}
	if m := prepare(t, "To: ü@x.example\n\nx\n", Input{ReadRcpts: true}); !m.UTF8 {
		t.Error("a UTF-8 recipient must ask for SMTPUTF8")
	}
}
