package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/policy"
	"github.com/tlsrelay/tlsrelay/queue"
)

// rsaOnlyUpstream is a fake provider that speaks only RSA key exchange
// (TLS_RSA_WITH_AES_256_CBC_SHA, TLS 1.2 at most), as smtp.qcloudmail.com:465.
func rsaOnlyUpstream(t *testing.T) *smtptest.Server {
	t.Helper()
	return startUpstream(t, smtptest.Options{Mode: smtptest.ImplicitTLS,
		CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_256_CBC_SHA}, TLSMaxVersion: tls.VersionTLS12})
}

// legacyRelayConfig is a config with two providers on RSA-only fakes:
// "legacy" lists the RSA suite and gets recipients at legacy.example;
// "modern" keeps Go's defaults and gets everything else.
func legacyRelayConfig(t *testing.T, legacy, modern *smtptest.Server) *policy.Config {
	t.Helper()
	dir := t.TempDir()
	caFile := func(name string, s *smtptest.Server) string {
		f := filepath.Join(dir, name+".pem")
		if err := os.WriteFile(f, s.CACertPEM(), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	src := fmt.Sprintf(`listen: {addr: "127.0.0.1:0", hostname: relay.test}
queue:
  dir: %q
  retry: {initial: 20ms, max: 100ms, factor: 2, jitter: 0}
providers:
  legacy:
    host: 127.0.0.1
    port: %d
    tls: {mode: implicit, server_name: localhost, ca_file: %q, ciphers: [default, TLS_RSA_WITH_AES_256_CBC_SHA]}
    auth: {mechanism: plain, username: user, password_env: UP_PASSWORD}
  modern:
    host: 127.0.0.1
    port: %d
    tls: {mode: implicit, server_name: localhost, ca_file: %q}
    auth: {mechanism: plain, username: user, password_env: UP_PASSWORD}
routes:
  - {recipient_domain: legacy.example, providers: [legacy]}
default: [modern]
`, t.TempDir(), legacy.Port(), caFile("legacy", legacy), modern.Port(), caFile("modern", modern))
	env := func(k string) (string, bool) { return testPassword, k == "UP_PASSWORD" }
	cfg, err := policy.Parse("tls-e2e.yaml", []byte(src), env)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// TestE2ELegacySuiteIsPerProvider runs one relay with two providers whose
// servers both speak only RSA key exchange: mail routed to the provider that
// opts in is delivered; mail for the other stays deferred with a TLS error
// that names the fix. One process, no GODEBUG.
func TestE2ELegacySuiteIsPerProvider(t *testing.T) {
	if strings.Contains(os.Getenv("GODEBUG"), "tlsrsakex") {
		t.Fatal("GODEBUG tlsrsakex is set: this test must show the opt-in works without it")
	}
	legacy, modern := rsaOnlyUpstream(t), rsaOnlyUpstream(t)
	cfg := legacyRelayConfig(t, legacy, modern)
	if w := strings.Join(cfg.Warnings(), "\n"); !strings.Contains(w, "provider legacy: tls.ciphers enables legacy suites for this provider only") ||
		strings.Contains(w, "provider modern") {
		t.Errorf("Warnings() = %q", w)
	}
	r := startRelay(t, cfg)
	queuedID(t, r.send(t, "Subject: legacy\r\n\r\nhi\r\n", "a@legacy.example"))
	queuedID(t, r.send(t, "Subject: modern\r\n\r\nhi\r\n", "b@other.example"))

	m := waitMessages(t, legacy, 1)[0]
	if m.TLS == nil || m.TLS.CipherSuite != tls.TLS_RSA_WITH_AES_256_CBC_SHA || strings.Join(m.To, ",") != "a@legacy.example" {
		t.Fatalf("legacy upstream got %v over %+v", m.To, m.TLS)
	}
	r.waitQueue(t, "the modern route to be deferred twice and the legacy one delivered", func(items []queue.Item) bool {
		return len(items) == 1 && items[0].Rcpts[0].Addr == "b@other.example" &&
			items[0].Rcpts[0].Status == queue.Deferred && items[0].Rcpts[0].Attempts >= 2
	})
	if n := len(modern.Messages()); n != 0 || modern.AuthAttempts() != 0 {
		t.Errorf("modern upstream got %d messages, %d AUTH; want none", n, modern.AuthAttempts())
	}
	logs := r.logs.String()
	for _, want := range []string{"msg=delivered", "msg=deferred", "provider=modern", "no shared cipher suite", "TLS_RSA_WITH_AES_256_CBC_SHA", "tlsrelay probe modern"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	delivered := false
	for _, line := range strings.Split(logs, "\n") {
		delivered = delivered || strings.Contains(line, "msg=delivered") && strings.Contains(line, "provider=legacy") &&
			strings.Contains(line, "TLS_RSA_WITH_AES_256_CBC_SHA")
	}
	if !delivered {
		t.Errorf("no delivered line for provider legacy with its suite:\n%s", logs)
	}
	if strings.Count(logs, "no shared cipher suite") < 2 {
		t.Errorf("want the TLS error on each attempt:\n%s", logs)
	}
}
