package queue

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/delivery"
)

// permFor fails rcpt "bad@x" permanently with a 5.1.1 text, the rest pass.
type permErr struct{}

func (permErr) Error() string   { return "rcpt: 550 5.1.1 no such user" }
func (permErr) Permanent() bool { return true }
func (permErr) SMTPCode() int   { return 550 }

func failBad(_ string, rcpts []string) []delivery.Result {
	rs := make([]delivery.Result, len(rcpts))
	for i, r := range rcpts {
		if r == "bad@x" {
			rs[i].Err = permErr{}
		}
	}
	return rs
}

func TestBounceToSender(t *testing.T) {
	o, _ := testOptions(t, t.TempDir())
	o.Bounce = Bounce{To: "sender", Hostname: "relay.test"}
	d := &fakeDeliverer{fn: failBad}
	q := openQueue(t, o, d)
	runQueue(t, q)
	id, err := q.Enqueue(context.Background(), "c", "app@example.com", []string{"good@x", "bad@x"},
		strings.NewReader("Subject: report\r\nX-Original: yes\r\n\r\nsecret body\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	waitEmpty(t, q)
	calls := d.Calls()
	if len(calls) != 2 {
		t.Fatalf("calls = %+v, want the message then its bounce", calls)
	}
	bounce := calls[1]
	if len(bounce.rcpts) != 1 || bounce.rcpts[0] != "app@example.com" {
		t.Fatalf("bounce went to %v, want the envelope sender", bounce.rcpts)
	}
	for _, want := range []string{
		"Content-Type: multipart/report; report-type=delivery-status;",
		"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.test\r\n",
		"X-Tlsrelay-Queue-ID: " + id,
		"Final-Recipient: rfc822; bad@x\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; rcpt: 550 5.1.1 no such user\r\n",
		"Content-Type: text/rfc822-headers\r\n\r\nSubject: report\r\nX-Original: yes\r\n",
		"Auto-Submitted: auto-replied",
	} {
		if !strings.Contains(bounce.body, want) {
			t.Errorf("bounce lacks %q:\n%s", want, bounce.body)
		}
	}
	if strings.Contains(bounce.body, "good@x") || strings.Contains(bounce.body, "secret body") {
		t.Errorf("bounce names the delivered recipient or quotes the body:\n%s", bounce.body)
	}
}

func TestNoBounceForNullSenderOrWhenOff(t *testing.T) {
	for _, tc := range []struct {
		name, from, to string
	}{
		{"null sender", "", "sender"},
		{"null sender to fixed address", "", "postmaster@example.com"},
		{"off", "app@example.com", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, _ := testOptions(t, t.TempDir())
			o.Bounce = Bounce{To: tc.to, Hostname: "relay.test"}
			d := &fakeDeliverer{fn: failBad}
			q := openQueue(t, o, d)
			runQueue(t, q)
			if _, err := q.Enqueue(context.Background(), "c", tc.from, []string{"bad@x"}, strings.NewReader("S: x\r\n\r\nb\r\n")); err != nil {
				t.Fatal(err)
			}
			waitEmpty(t, q)
			if n := len(d.Calls()); n != 1 {
				t.Fatalf("%d deliveries, want 1 (no notice)", n)
			}
		})
	}
}

func TestDelayWarningOnce(t *testing.T) {
	o, _ := testOptions(t, t.TempDir())
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	o.Now = clock.Now
	o.Retry = Retry{Initial: time.Minute, Max: time.Minute, Factor: 1}
	o.Bounce = Bounce{To: "ops@example.com", Hostname: "relay.test", DelayWarning: time.Hour}
	o.Route = func(_, rcpt string) []string {
		if rcpt == "ops@example.com" {
			return []string{"ops"}
		}
		return []string{"down"}
	}
	d := &fakeDeliverer{fn: func(p string, rcpts []string) []delivery.Result {
		if p == "down" {
			return allResults(errTemp)(p, rcpts)
		}
		return make([]delivery.Result, len(rcpts))
	}}
	q := openQueue(t, o, d)
	runQueue(t, q)
	id := enqueue(t, q, "a@x")
	opsCalls := func() (n int) {
		for _, c := range d.Calls() {
			if c.provider == "ops" {
				n++
			}
		}
		return n
	}
	// advance moves the clock and waits until the item has had attempts
	// attempts and the ops provider has received notices notices.
	advance := func(by time.Duration, attempts, notices int) {
		t.Helper()
		clock.Add(by)
		q.mu.Lock()
		q.notifyLocked() // the scheduler sleeps on a real timer
		q.mu.Unlock()
		waitFor(t, q, func(items []Item) bool {
			for _, it := range items {
				if it.ID == id && it.Rcpts[0].Attempts == attempts && it.Rcpts[0].Status == Deferred {
					return opsCalls() == notices
				}
			}
			return false
		})
	}
	advance(0, 1, 0)           // first attempt fails; too early for a warning
	advance(2*time.Hour, 2, 1) // past delay_warning: one notice
	advance(2*time.Hour, 3, 1) // and never a second
	it, _ := q.Get(id)
	if !it.Warned {
		t.Fatal("Warned not recorded")
	}
	var notice string
	for _, c := range d.Calls() {
		if c.provider == "ops" {
			notice = c.body
		}
	}
	for _, want := range []string{"Subject: Delayed Mail (still being retried)", "Action: delayed", "Status: 4.0.0", "Will-Retry-Until: "} {
		if !strings.Contains(notice, want) {
			t.Errorf("delay notice lacks %q:\n%s", want, notice)
		}
	}
}

// TestForgedSenderFloodIsBounded: 500 failing messages with forged senders
// across 5 domains and 20 KiB headers yield at most bounce_rate x 5
// notices, each under 20 KiB without the body; the rest are logged as
// suppressed. Notices to system senders and about notices are never sent.
func TestForgedSenderFloodIsBounded(t *testing.T) {
	o, logs := testOptions(t, t.TempDir())
	o.Bounce = Bounce{To: "sender", Hostname: "relay.test", RateN: 3, RatePer: time.Hour}
	d := &fakeDeliverer{fn: failBad}
	q := openQueue(t, o, d)
	runQueue(t, q)
	big := "Subject: flood\r\n" + strings.Repeat("X-Padding: "+strings.Repeat("p", 70)+"\r\n", 250) // ~20 KiB
	for i := range 500 {
		from := fmt.Sprintf("victim%d@domain%d.example", i, i%5)
		if _, err := q.Enqueue(context.Background(), "c", from, []string{"bad@x"}, strings.NewReader(big+"\r\nsecret body\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	for _, from := range []string{"MAILER-DAEMON@sys.example", "postmaster@sys.example", "noreply@sys.example"} {
		q.Enqueue(context.Background(), "c", from, []string{"bad@x"}, strings.NewReader("Subject: s\r\n\r\nx\r\n"))
	}
	q.Enqueue(context.Background(), "c", "x@notice.example", []string{"bad@x"},
		strings.NewReader("Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\nx\r\n"))
	q.Enqueue(context.Background(), "c", "y@notice.example", []string{"bad@x"}, strings.NewReader("Auto-Submitted: auto-replied\r\n\r\nx\r\n"))
	waitEmpty(t, q)
	notices := 0
	for _, c := range d.Calls() {
		if len(c.rcpts) == 1 && c.rcpts[0] != "bad@x" {
			notices++
			if len(c.body) >= 20<<10 || strings.Contains(c.body, "secret body") {
				t.Errorf("notice of %d bytes (or quoting the body) to %s", len(c.body), c.rcpts[0])
			}
			if strings.Contains(c.rcpts[0], "sys.example") || strings.Contains(c.rcpts[0], "notice.example") {
				t.Errorf("notice sent to %s", c.rcpts[0])
			}
		}
	}
	if notices == 0 || notices > 15 {
		t.Fatalf("%d notices, want 1 to 15 (3 per domain, 5 domains)", notices)
	}
	for _, want := range []string{"reason=\"rate limit\"", "reason=\"system sender\"", "reason=\"message is a notice\""} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no suppression logged with %s", want)
		}
	}
}
