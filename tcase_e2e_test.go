package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/policy"
)

// security.md (b), end to end: the cases whose proof is the whole relay
// (listener, spool, queue, upstream client). The others are in the package
// that owns the behaviour (relay, upstream, queue, policy: tcase_*_test.go).

// inPassword is the inbound AUTH password of these tests.
const inPassword = "in-Pw-3hq7-never-logged"

// securityConfig is testConfig (STARTTLS upstream with AUTH PLAIN) with
// listen keys added, e.g. "line_endings: fix", and debug logging.
func securityConfig(t *testing.T, up *smtptest.Server, listen ...string) *policy.Config {
	t.Helper()
	return testConfig(t, up, cfgOpts{listen: listen, extra: "log: {level: debug}\n",
		env: map[string]string{"IN_PASSWORD": inPassword}})
}

// TestT61SecretsNeverLogged: a full delivery with inbound AUTH (and a failed
// login, and an upstream AUTH failure) at debug level: neither password, nor
// its base64, nor the AUTH PLAIN blob appears in the logs (G14).
func TestT61SecretsNeverLogged(t *testing.T) {
	up := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	r := startRelay(t, securityConfig(t, up, "users: [{username: app, password_env: IN_PASSWORD}]"))

	c, err := smtp.Dial(r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("app.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "app", inPassword+"x")); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	if err := c.Mail("app@example.com", nil); err == nil || !strings.Contains(err.Error(), "530") {
		t.Fatalf("MAIL before AUTH: %v, want 530", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "app", inPassword)); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("app@example.com", []string{"a@example.org"}, strings.NewReader("Subject: x\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	if m := waitMessages(t, up, 1); m[0].AuthUser != "user" {
		t.Errorf("upstream AUTH user %q", m[0].AuthUser)
	}
	r.stop()
	logs := r.logs.String()
	for _, secret := range []string{
		inPassword, testPassword,
		base64.StdEncoding.EncodeToString([]byte(inPassword)),
		base64.StdEncoding.EncodeToString([]byte("\x00app\x00" + inPassword)),
		base64.StdEncoding.EncodeToString([]byte("\x00user\x00" + testPassword)),
		base64.StdEncoding.EncodeToString([]byte(testPassword)),
	} {
		if strings.Contains(logs, secret) || strings.Contains(logs, secret[:len(secret)-2]) {
			t.Errorf("the log contains %q:\n%s", secret, logs)
		}
	}
	if !strings.Contains(logs, "msg=auth user=app") || !strings.Contains(logs, "code=535") {
		t.Errorf("the log should tell the login and the failure:\n%s", logs)
	}
}

// TestT01OutboundReencoded: with line_endings fix, a smuggling payload is
// one message upstream, its fake end-of-data line dot-stuffed on the wire
// (else the upstream would have ended the message there) and CRLF only.
func TestT01OutboundReencoded(t *testing.T) {
	up := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	r := startRelay(t, securityConfig(t, up, "line_endings: fix"))
	body := "Subject: x\r\n\r\nbody\n.\nMAIL FROM:<ceo@bank.example>\r\nRCPT TO:<x@example.net>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n"
	queuedID(t, r.send(t, body, "a@example.org"))
	m := waitMessages(t, up, 1)
	want := "Subject: x\r\n\r\nbody\r\n.\r\nMAIL FROM:<ceo@bank.example>\r\nRCPT TO:<x@example.net>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n"
	if got := stripReceived(t, m[0].Data); string(got) != want {
		t.Errorf("upstream got %q, want %q", got, want)
	}
	if bytes.Contains(bytes.ReplaceAll(m[0].Data, []byte("\r\n"), nil), []byte("\n")) {
		t.Errorf("a bare LF reached the upstream")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if msgs, _ := up.WaitMessages(ctx, 2); len(msgs) != 1 {
		t.Errorf("upstream got %d messages, want 1", len(msgs))
	}
}

// TestT13QuotedLocalPartUpstream: a quoted local part is sent upstream
// quoted, so the upstream reads the same mailbox and no parameter.
func TestT13QuotedLocalPartUpstream(t *testing.T) {
	up := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	r := startRelay(t, securityConfig(t, up))
	reply, err := sendRaw(r.addr, "app@example.com", []string{`"a,b"@example.org`}, "Subject: q\r\n\r\nx\r\n")
	if err != nil || !strings.Contains(reply, "queued") {
		t.Fatalf("send: %q, %v", reply, err)
	}
	if m := waitMessages(t, up, 1); len(m[0].To) != 1 || m[0].To[0] != "a,b@example.org" {
		t.Errorf("upstream recipients %q, want a,b@example.org (sent quoted: unquoted, the comma would be a syntax error)", m[0].To)
	}
}

// The cases below are proved by tests that existed before the catalogue was
// numbered; these run them under the case's ID.

func TestT07DotStuffingRoundTrip(t *testing.T) { TestE2EDeliversOverTLS(t) }
func TestT42Kill9LosesNothing(t *testing.T)    { TestCrashKill9LosesNothing(t) }
func TestT43RestartDuplicateWindow(t *testing.T) {
	// At least once: a message whose outcome was not recorded is sent
	// again after a restart, never lost.
	TestE2ERestartDeliversOnce(t)
}
func TestT49STARTTLSStrippingKeepsMail(t *testing.T) { TestE2ETLSPolicyFailuresKeepMail(t) }
func TestT53LegacySuitePerProvider(t *testing.T)     { TestE2ELegacySuiteIsPerProvider(t) }
func TestT56UpstreamDownThenUp(t *testing.T)         { TestE2EUpstreamDownThenUp(t) }
func TestT60PermanentFailureDeadLetters(t *testing.T) {
	TestE2EPermanentFailureDeadLetters(t)
}
