package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/smtptest"
)

// probeConfig writes a relay.yaml whose provider "up" is s, with its CA in
// a ca_file, server name localhost, AUTH PLAIN as user with testPassword
// from a password_file, and extra keys (YAML flow entries) in its tls section.
func probeConfig(t *testing.T, s *smtptest.Server, mode, extraTLS string) string {
	t.Helper()
	dir := t.TempDir()
	ca, pw := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "password")
	if err := os.WriteFile(ca, s.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pw, []byte(testPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if extraTLS != "" {
		extraTLS = ", " + extraTLS
	}
	src := fmt.Sprintf(`listen: {addr: "127.0.0.1:0", hostname: relay.test}
queue: {dir: %q}
providers:
  up:
    host: 127.0.0.1
    port: %d
    tls: {mode: %s, server_name: localhost, ca_file: %q%s}
    auth: {mechanism: plain, username: user, password_file: %q}
default: [up]
`, filepath.Join(dir, "spool"), s.Port(), mode, ca, extraTLS, pw)
	path := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// probeCmd runs `tlsrelay probe args...` and checks that the password
// appears in neither output.
func probeCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	err = run(ctx, append([]string{"probe"}, args...), &out, &errb)
	if strings.Contains(out.String()+errb.String(), testPassword) {
		t.Errorf("probe printed the password:\n%s\n%s", out.String(), errb.String())
	}
	t.Logf("tlsrelay probe %s\n%s%s(err %v)", strings.Join(args, " "), out.String(), errb.String(), err)
	return out.String(), errb.String(), err
}

func wantLines(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func TestProbeCommandHealthy(t *testing.T) {
	s := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	cfg := probeConfig(t, s, "starttls", "")
	out, _, err := probeCmd(t, "-config", cfg, "up")
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	wantLines(t, out, "starttls:       offered", "tls:            TLS 1.3, TLS_AES_", "verified:       ok",
		"pin_sha256:   "+s.PinSHA256(), "auth offered:   PLAIN LOGIN", "PLAIN (auth.mechanism plain); not tried", "\nprobe: OK\n")
	if n := s.AuthAttempts(); n != 0 {
		t.Errorf("without -auth the server saw %d AUTH", n)
	}

	out, _, err = probeCmd(t, "-config", cfg, "-auth", "up")
	if err != nil {
		t.Fatalf("probe -auth: %v", err)
	}
	wantLines(t, out, "auth:           ok, PLAIN: 235", "\nprobe: OK\n")
	if n := s.AuthAttempts(); n != 1 {
		t.Errorf("with -auth the server saw %d AUTH, want 1", n)
	}

	out, _, err = probeCmd(t, "-config", cfg, "-json", "up")
	var r struct {
		OK             bool
		Verified       bool
		Pin            string `json:"pin_sha256"`
		TLS            struct{ Version, Cipher string }
		Chain          []struct{ Subject string }
		AuthMechanisms []string `json:"auth_mechanisms"`
		EHLO           []string
	}
	if jerr := json.Unmarshal([]byte(out), &r); err != nil || jerr != nil {
		t.Fatalf("probe -json: %v, %v", err, jerr)
	}
	if !r.OK || !r.Verified || r.Pin != s.PinSHA256() || r.TLS.Version != "TLS 1.3" || len(r.Chain) != 2 || len(r.AuthMechanisms) != 2 || len(r.EHLO) == 0 {
		t.Errorf("json report = %+v", r)
	}
}

// The Tencent Cloud SES case, end to end: the fix names tls.ciphers, and
// the config with it probes OK.
func TestProbeCommandRSAOnly(t *testing.T) {
	s := rsaOnlyUpstream(t)
	cfg := probeConfig(t, s, "implicit", "")
	out, _, err := probeCmd(t, "-config", cfg, "up")
	if err == nil {
		t.Fatal("probe of an RSA-only server with Go's defaults succeeded")
	}
	wantLines(t, out, "scan:           accepts TLS 1.2; refuses TLS 1.0, 1.1, 1.3",
		"suites:       at TLS 1.2: TLS_RSA_WITH_AES_256_CBC_SHA",
		"\nprobe: FAILED: the server offers only RSA key exchange (TLS_RSA_WITH_AES_256_CBC_SHA); Go leaves it out by default\n",
		"\nfix: in "+cfg+", providers.up.tls.ciphers: [default, TLS_RSA_WITH_AES_256_CBC_SHA]\n")

	out, _, err = probeCmd(t, "-config", cfg, "-json", "up")
	var r struct {
		OK         bool
		Error, Fix string
	}
	if jerr := json.Unmarshal([]byte(out), &r); err == nil || jerr != nil {
		t.Fatalf("probe -json: err %v, json %v", err, jerr)
	}
	if r.OK || !strings.Contains(r.Fix, "providers.up.tls.ciphers: [default, TLS_RSA_WITH_AES_256_CBC_SHA]") {
		t.Errorf("json: ok %v, fix %q", r.OK, r.Fix)
	}

	fixed := probeConfig(t, s, "implicit", "ciphers: [default, TLS_RSA_WITH_AES_256_CBC_SHA]")
	out, _, err = probeCmd(t, "-config", fixed, "-auth", "up")
	if err != nil {
		t.Fatalf("probe with the fix: %v", err)
	}
	wantLines(t, out, "TLS 1.2, TLS_RSA_WITH_AES_256_CBC_SHA", "auth:           ok", "WARNING:        provider up: tls.ciphers enables legacy suites", "\nprobe: OK\n")
}

// HOST:PORT with policy flags: the fix names the flags; with them, OK.
func TestProbeCommandFlags(t *testing.T) {
	s := rsaOnlyUpstream(t)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, s.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := probeCmd(t, "-timeout", "2s", "-ca-file", ca, "-server-name", "localhost", s.Addr())
	if err == nil {
		t.Fatal("probe succeeded")
	}
	wantLines(t, out, "tls.mode starttls", "the server sent no greeting within 2s", "fix: in the provider's section of relay.yaml, tls.mode: implicit (try it here with -mode implicit)")

	out, _, err = probeCmd(t, "-ca-file", ca, "-server-name", "localhost", "-mode", "implicit", s.Addr())
	if err == nil {
		t.Fatal("probe succeeded")
	}
	wantLines(t, out, "fix: in the provider's section of relay.yaml, tls.ciphers: [default, TLS_RSA_WITH_AES_256_CBC_SHA] (try it here with -ciphers default,TLS_RSA_WITH_AES_256_CBC_SHA)")

	out, _, err = probeCmd(t, "-ca-file", ca, "-server-name", "localhost", "-mode", "implicit", "-ciphers", "default,TLS_RSA_WITH_AES_256_CBC_SHA", s.Addr())
	if err != nil {
		t.Fatalf("probe with the fix: %v", err)
	}
	wantLines(t, out, "TLS_RSA_WITH_AES_256_CBC_SHA", "auth:           none configured", "\nprobe: OK\n")

	_, _, err = probeCmd(t, "-ciphers", "AES256-SHA", s.Addr())
	if err == nil || !strings.Contains(err.Error(), "OpenSSL calls AES256-SHA what Go calls TLS_RSA_WITH_AES_256_CBC_SHA") {
		t.Errorf("bad -ciphers: err %v", err)
	}
	cfg := probeConfig(t, s, "implicit", "")
	if _, _, err = probeCmd(t, "-config", cfg, "-mode", "implicit", "up"); err == nil || !strings.Contains(err.Error(), "-mode set the policy of a HOST:PORT") {
		t.Errorf("policy flag with PROVIDER: err %v", err)
	}
	if _, errOut, err := probeCmd(t, "-config", cfg, "up", "-json"); err == nil || !strings.Contains(errOut, "flags go before") {
		t.Errorf("flag after the argument: err %v", err)
	}
}

// Mode implicit on a server that greets in plaintext: the fix is starttls.
func TestProbeCommandModeMismatch(t *testing.T) {
	s := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	cfg := probeConfig(t, s, "implicit", "")
	out, _, err := probeCmd(t, "-config", cfg, "-auth", "up")
	if err == nil {
		t.Fatal("probe succeeded")
	}
	wantLines(t, out, "greeting:       220 ", "probe: FAILED: the server greeted in plaintext", "fix: in "+cfg+", providers.up.tls.mode: starttls")
	if s.AuthAttempts() != 0 {
		t.Error("AUTH sent")
	}
}

func TestProbeCommandUntrustedAndWarnings(t *testing.T) {
	s := startUpstream(t, smtptest.Options{Mode: smtptest.ImplicitTLS, Untrusted: true})
	cfg := probeConfig(t, s, "implicit", "")
	out, _, err := probeCmd(t, "-config", cfg, "-auth", "up")
	if err == nil {
		t.Fatal("probe of an untrusted server succeeded")
	}
	wantLines(t, out, "verified:       NO: unknown authority", "pin_sha256:   "+s.PinSHA256(),
		"fix: in "+cfg+", providers.up.tls.ca_file: <the provider's CA certificates, PEM>, or pin the server's key instead of the CA chain: providers.up.tls.pin_sha256: [\""+s.PinSHA256()+"\"]")
	if s.AuthAttempts() != 0 {
		t.Error("credentials sent to an unverified server")
	}

	pinned := probeConfig(t, s, "implicit", fmt.Sprintf("pin_sha256: [%q], insecure_skip_verify: true", s.PinSHA256()))
	out, _, err = probeCmd(t, "-config", pinned, "-auth", "up")
	if err != nil {
		t.Fatalf("probe with the pin: %v", err)
	}
	wantLines(t, out, "WARNING:        provider up: tls.insecure_skip_verify is on", "verified:       NO: not verified", "auth:           ok", "\nprobe: OK\n")

	out, _, err = probeCmd(t, "-insecure-skip-verify", "-mode", "implicit", s.Addr())
	if err != nil {
		t.Fatalf("probe -insecure-skip-verify: %v", err)
	}
	wantLines(t, out, "INSECURE_SKIP_VERIFY", "WARNING:        provider 127.0.0.1: tls.insecure_skip_verify is on: the certificate is not verified", "\nprobe: OK\n")
}

// A refused password: the server's reply is shown, the password never.
func TestProbeCommandAuthRefused(t *testing.T) {
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, Users: map[string]string{"user": "another"},
		TLSMaxVersion: tls.VersionTLS12})
	cfg := probeConfig(t, s, "implicit", "")
	out, _, err := probeCmd(t, "-config", cfg, "-auth", "up")
	if err == nil {
		t.Fatal("probe succeeded")
	}
	wantLines(t, out, "auth:           FAILED, PLAIN: 535", "probe: FAILED: AUTH PLAIN refused: 535 5.7.8", "password from file ")
}
