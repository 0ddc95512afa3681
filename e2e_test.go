package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/queue"
)

// queuedID returns the ID from a "2.0.0 queued as <id>" reply.
func queuedID(t *testing.T, reply string) string {
	t.Helper()
	m := regexp.MustCompile(`^2\.0\.0 queued as ([0-9a-f-]+)$`).FindStringSubmatch(reply)
	if m == nil {
		t.Fatalf("relay replied %q, want \"2.0.0 queued as <id>\"", reply)
	}
	return m[1]
}

func sendRaw(addr, from string, to []string, body string) (string, error) {
	return sendMessage(context.Background(), sendOptions{server: addr, from: from, to: to, helo: "app.test",
		timeout: 10 * time.Second}, body)
}

// A body with the cases that break naive relays: a leading dot (must be
// dot-stuffed upstream and unstuffed there), a lone dot line, trailing
// spaces, an empty line, 8-bit text and a long line.
var trickyBody = "From: <app@example.com>\r\nTo: <a@example.org>\r\nSubject: tricky\r\n\r\n" +
	".leading dot\r\n.\r\n..two dots\r\ntrailing spaces   \r\n\r\nna\xc3\xafve caf\xc3\xa9\r\n" +
	strings.Repeat("x", 990) + "\r\nlast line\r\n"

func TestE2EDeliversOverTLS(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode smtptest.Mode
		yaml string
	}{
		{"starttls", smtptest.StartTLS, "starttls"},
		{"implicit", smtptest.ImplicitTLS, "implicit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := startUpstream(t, smtptest.Options{Mode: tc.mode})
			r := startRelay(t, relayConfig(t, up, tc.yaml, t.TempDir()))
			reply := r.send(t, trickyBody, "a@example.org", "b@example.net")
			if queuedID(t, reply) == "" {
				t.Fatal("no queue ID")
			}
			m := waitMessages(t, up, 1)[0]
			if got := stripReceived(t, m.Data); !bytes.Equal(got, []byte(trickyBody)) {
				t.Fatalf("body changed in transit:\n got %q\nwant %q", got, trickyBody)
			}
			if m.From != "app@example.com" || strings.Join(m.To, ",") != "a@example.org,b@example.net" {
				t.Fatalf("envelope: from %q to %v", m.From, m.To)
			}
			if m.AuthUser != "user" {
				t.Fatalf("upstream saw AUTH user %q, want \"user\"", m.AuthUser)
			}
			if m.TLS == nil || m.TLS.Version < tls.VersionTLS12 {
				t.Fatalf("message did not arrive over TLS 1.2+: %+v", m.TLS)
			}
			r.waitQueue(t, "the queue to empty", queueEmpty)
			if !strings.Contains(r.logs.String(), "msg=delivered") {
				t.Fatalf("no delivered event in the log:\n%s", r.logs)
			}
		})
	}
}

// TestE2EUpstreamDownThenUp: the upstream stops listening, the message is
// deferred after a refused connection; the upstream comes back on the same
// port and the retry delivers it.
func TestE2EUpstreamDownThenUp(t *testing.T) {
	up := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	r := startRelay(t, relayConfig(t, up, "starttls", t.TempDir()))
	if err := up.Down(); err != nil {
		t.Fatal(err)
	}
	r.send(t, trickyBody, "a@example.org")
	r.waitQueue(t, "a deferral", deferredOnce)
	if e := r.app.Queue().List()[0].Rcpts[0].LastError; !strings.Contains(e, "connection refused") {
		t.Fatalf("last error %q, want a refused connection", e)
	}
	if err := up.Up(); err != nil {
		t.Fatal(err)
	}
	waitMessages(t, up, 1)
	r.waitQueue(t, "the queue to empty", queueEmpty)
}

// TestE2ERestartDeliversOnce: mail is pending when the relay stops; a new
// relay on the same spool delivers it, once.
func TestE2ERestartDeliversOnce(t *testing.T) {
	up := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	up.SetMailErr(func(string) error {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	})
	spool := t.TempDir()
	r1 := startRelay(t, relayConfig(t, up, "starttls", spool))
	r1.send(t, trickyBody, "a@example.org")
	r1.waitQueue(t, "a deferral", deferredOnce)
	r1.stop()

	up.SetMailErr(nil)
	r2 := startRelay(t, relayConfig(t, up, "starttls", spool))
	r2.waitQueue(t, "the queue to empty", queueEmpty)
	r2.stop()
	if n := len(up.Messages()); n != 1 {
		t.Fatalf("upstream got %d copies, want exactly 1", n)
	}
}

// TestE2ETLSPolicyFailuresKeepMail: no STARTTLS offered, an untrusted
// certificate, a certificate for another name: nothing is sent (not even
// AUTH or MAIL), the message stays queued, and the log says why.
func TestE2ETLSPolicyFailuresKeepMail(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    smtptest.Options
		wantLog string
	}{
		{"no-starttls", smtptest.Options{Mode: smtptest.StartTLS, NoStartTLS: true}, "STARTTLS"},
		{"untrusted", smtptest.Options{Mode: smtptest.StartTLS, Untrusted: true}, "certificate"},
		{"wrong-name", smtptest.Options{Mode: smtptest.ImplicitTLS, CertNames: []string{"other.example"}}, "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := startUpstream(t, tc.opts)
			mode := "starttls"
			if tc.opts.Mode == smtptest.ImplicitTLS {
				mode = "implicit"
			}
			r := startRelay(t, relayConfig(t, up, mode, t.TempDir()))
			r.send(t, trickyBody, "a@example.org")
			r.waitQueue(t, "a deferral", deferredOnce)
			if up.AuthAttempts() != 0 || up.MailAttempts() != 0 || len(up.Messages()) != 0 {
				t.Fatalf("upstream saw auth=%d mail=%d messages=%d, want none",
					up.AuthAttempts(), up.MailAttempts(), len(up.Messages()))
			}
			logs := r.logs.String()
			if !strings.Contains(logs, "msg=deferred") || !strings.Contains(logs, tc.wantLog) {
				t.Fatalf("log does not give the reason (%q):\n%s", tc.wantLog, logs)
			}
		})
	}
}

// TestE2EPermanentFailureDeadLetters: one recipient refused with 550, the
// other accepted; the item moves to dead/ with both outcomes recorded.
func TestE2EPermanentFailureDeadLetters(t *testing.T) {
	up := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	up.SetRcptErr(func(to string) error {
		if strings.HasPrefix(to, "bad@") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	})
	spool := t.TempDir()
	r := startRelay(t, relayConfig(t, up, "starttls", spool))
	reply := r.send(t, trickyBody, "good@example.org", "bad@example.org")
	r.waitQueue(t, "the queue to empty", queueEmpty)
	id := queuedID(t, reply)
	b, err := os.ReadFile(filepath.Join(spool, "dead", id+".json"))
	if err != nil {
		t.Fatalf("dead letter: %v", err)
	}
	var it queue.Item
	if err := json.Unmarshal(b, &it); err != nil {
		t.Fatal(err)
	}
	good, bad := it.Rcpts[0], it.Rcpts[1]
	if good.Status != queue.Delivered || bad.Status != queue.Failed || bad.LastCode != 550 {
		t.Fatalf("recipients: %+v / %+v", good, bad)
	}
	if m := waitMessages(t, up, 1)[0]; strings.Join(m.To, ",") != "good@example.org" {
		t.Fatalf("upstream delivered to %v", m.To)
	}
}
