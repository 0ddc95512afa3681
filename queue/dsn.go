package queue

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Bounce configures delivery status notifications (RFC 3464).
type Bounce struct {
	// To is where notifications go: "" (none), "sender" (the message's
	// envelope sender) or an address. A message with the null sender
	// never causes one: no bounce for a bounce.
	To string
	// Hostname names this relay in the notification (Reporting-MTA).
	Hostname string
	// DelayWarning sends one "delayed" notice for a message still not
	// delivered after this long; 0 = never.
	DelayWarning time.Duration
	// RateN per RatePer caps the notices to the senders of one domain when
	// To is "sender" (dsnlimit.go); zero = 10 per hour.
	RateN   int
	RatePer time.Duration
}

// maxQuotedHeader bounds the original header block quoted in a notice
// (the body is never quoted), so that a notice stays under 20 KiB.
const maxQuotedHeader = 16 << 10

// maxQuotedError bounds each recipient's error in a notice.
const maxQuotedError = 1000

// target returns the address a notice about it goes to, or "".
func (b Bounce) target(it *Item) string {
	if it.From == "" || b.To == "" {
		return ""
	}
	if b.To == "sender" {
		return it.From
	}
	return b.To
}

// notify enqueues a notice about the recipients of it that have status
// want (Failed: a bounce; Deferred: a delay warning). bodyPath is where the
// original message is now. Errors are logged: a lost notice loses no mail.
func (q *Queue) notify(it *Item, want Status, bodyPath string) {
	to := q.opts.Bounce.target(it)
	if to == "" {
		return
	}
	var rcpts []Rcpt
	for _, r := range it.Rcpts {
		if r.Status == want {
			rcpts = append(rcpts, r)
		}
	}
	if len(rcpts) == 0 {
		return
	}
	header := readHeader(bodyPath)
	kind := map[Status]string{Failed: "bounce", Deferred: "delay_warning"}[want]
	if reason := q.suppressReason(to, header); reason != "" {
		q.log.Info("notice suppressed", "id", it.ID, "kind", kind, "to", to, "reason", reason)
		return
	}
	msg := q.dsn(it, rcpts, want, header)
	id, err := q.Enqueue(context.Background(), "localhost", "", []string{to}, strings.NewReader(msg))
	if err != nil {
		q.log.Error("notice not sent", "id", it.ID, "kind", kind, "to", to, "error", err)
		return
	}
	q.log.Info("notice queued", "id", it.ID, "kind", kind, "to", to, "notice_id", id)
}

// readHeader returns the header block of a spooled message, bounded.
func readHeader(path string) []byte {
	f, err := openOwned(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out bytes.Buffer
	r := bufio.NewReader(io.LimitReader(f, maxQuotedHeader))
	for {
		line, err := r.ReadBytes('\n')
		if len(bytes.TrimRight(line, "\r\n")) == 0 || err != nil {
			return out.Bytes()
		}
		out.Write(line)
	}
}

var enhancedCode = regexp.MustCompile(`\b([245])\.(\d{1,3})\.(\d{1,3})\b`)

// dsnStatus is the RFC 3463 status of a recipient for the notice.
func dsnStatus(r Rcpt) string {
	if m := enhancedCode.FindString(r.LastError); m != "" {
		return m
	}
	switch {
	case strings.HasPrefix(r.LastError, errExpired.Error()):
		return "4.4.7" // delivery time expired
	case r.Status == Deferred || r.LastCode/100 == 4:
		return "4.0.0"
	}
	return "5.0.0"
}

// dsn builds a multipart/report notice: a human part, the
// message/delivery-status part, and the original header.
func (q *Queue) dsn(it *Item, rcpts []Rcpt, want Status, header []byte) string {
	host := q.opts.Bounce.Hostname
	now := q.now()
	var b [8]byte
	rand.Read(b[:])
	boundary := "tlsrelay-" + hex.EncodeToString(b[:])
	subject, action, intro := "Undelivered Mail Returned to Sender", "failed",
		"Your message could not be delivered to the recipients below. It will not be retried."
	if want == Deferred {
		subject, action = "Delayed Mail (still being retried)", "delayed"
		intro = fmt.Sprintf("Your message has not been delivered yet to the recipients below. "+
			"It will be retried until %s.", it.since().Add(q.opts.MaxAge).UTC().Format(time.RFC1123Z))
	}
	var s strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&s, format+"\r\n", a...) }
	w("From: Mail Delivery System <MAILER-DAEMON@%s>", host)
	w("To: <%s>", q.opts.Bounce.target(it))
	w("Subject: %s", subject)
	w("Date: %s", now.Format(time.RFC1123Z))
	w("Message-ID: <%s.%s@%s>", it.ID, hex.EncodeToString(b[:4]), host)
	w("Auto-Submitted: auto-replied")
	w("MIME-Version: 1.0")
	w("Content-Type: multipart/report; report-type=delivery-status; boundary=\"%s\"", boundary)
	w("")
	w("--%s", boundary)
	w("Content-Type: text/plain; charset=utf-8")
	w("")
	w("This is the mail relay at %s (tlsrelay), queue ID %s.", host, it.ID)
	w("")
	w("%s", intro)
	w("")
	for _, r := range rcpts {
		w("<%s>: %s", r.Addr, truncate(oneLine(r.LastError), maxQuotedError))
	}
	w("")
	w("--%s", boundary)
	q.deliveryStatus(w, it, rcpts, action, want == Deferred)
	w("")
	w("--%s", boundary)
	w("Content-Type: text/rfc822-headers")
	w("")
	s.Write(header)
	w("")
	w("--%s--", boundary)
	return s.String()
}

// deliveryStatus writes the message/delivery-status part (RFC 3464).
func (q *Queue) deliveryStatus(w func(string, ...any), it *Item, rcpts []Rcpt, action string, retrying bool) {
	w("Content-Type: message/delivery-status")
	w("")
	w("Reporting-MTA: dns; %s", q.opts.Bounce.Hostname)
	w("X-Tlsrelay-Queue-ID: %s", it.ID)
	w("Arrival-Date: %s", it.Arrived.Format(time.RFC1123Z))
	for _, r := range rcpts {
		w("")
		w("Final-Recipient: rfc822; %s", r.Addr)
		w("Action: %s", action)
		w("Status: %s", dsnStatus(r))
		if r.LastCode != 0 {
			w("Diagnostic-Code: smtp; %s", oneLine(r.LastError))
		}
		if retrying {
			w("Will-Retry-Until: %s", it.since().Add(q.opts.MaxAge).Format(time.RFC1123Z))
		}
	}
}

// oneLine keeps a text on one header/body line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// truncate cuts s to at most n bytes, at a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + " [...]"
}
