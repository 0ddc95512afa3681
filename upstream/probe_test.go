package upstream

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/policy"
)

// runProbe probes p as provider "fake" of relay.yaml (or, with ConfigFile
// "-", with a policy from flags), checks that the report never holds the
// password, and logs it.
func runProbe(t *testing.T, p *policy.Provider, o ProbeOptions) *ProbeReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	switch o.ConfigFile {
	case "":
		o.ConfigFile = "relay.yaml"
	case "-":
		o.ConfigFile = ""
	}
	r := Probe(ctx, p, o)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), password) {
		t.Errorf("the report holds the password: %s", b)
	}
	t.Logf("report: %s", b)
	return r
}

// wantFailed checks a failed report: its reason and fix contain the texts.
func wantFailed(t *testing.T, r *ProbeReport, reason, fix []string) {
	t.Helper()
	if r.OK || r.Error == "" {
		t.Fatalf("probe OK, want a failure")
	}
	for _, w := range reason {
		if !strings.Contains(r.Error, w) {
			t.Errorf("reason lacks %q:\n%s", w, r.Error)
		}
	}
	for _, w := range fix {
		if !strings.Contains(r.Fix, w) {
			t.Errorf("fix lacks %q:\n%s", w, r.Fix)
		}
	}
	if len(fix) == 0 && r.Fix != "" {
		t.Errorf("fix = %q, want none", r.Fix)
	}
}

func wantOK(t *testing.T, r *ProbeReport) {
	t.Helper()
	if !r.OK || r.Error != "" {
		t.Fatalf("probe failed: %s (fix: %s)", r.Error, r.Fix)
	}
}

func TestProbeHealthyStartTLS(t *testing.T) {
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.StartTLS, Users: users, AuthRequired: true})
	p := fakeProvider(s, policy.TLSStartTLS, "plain")
	r := runProbe(t, p, ProbeOptions{HelloName: "probe.test"})
	wantOK(t, r)
	if r.TLS == nil || r.TLS.Version != "TLS 1.3" || r.TLS.Cipher == "" {
		t.Errorf("tls = %+v, want TLS 1.3 and a suite", r.TLS)
	}
	if !strings.HasPrefix(r.Greeting, "220 ") || !r.Connected {
		t.Errorf("greeting %q, connected %v", r.Greeting, r.Connected)
	}
	if r.StartTLSOffered == nil || !*r.StartTLSOffered || !strings.Contains(strings.Join(r.EHLOPreTLS, " "), "STARTTLS") {
		t.Errorf("pre-TLS EHLO %v, STARTTLS offered %v", r.EHLOPreTLS, r.StartTLSOffered)
	}
	if !r.Verified || r.VerifyError != "" || len(r.Chain) != 2 || r.Pin != s.PinSHA256() || r.Chain[0].PinSHA256 != r.Pin {
		t.Errorf("verified %v %q, chain %d, pin %q want %q", r.Verified, r.VerifyError, len(r.Chain), r.Pin, s.PinSHA256())
	}
	if c := r.Chain[0]; len(c.IPAddresses) == 0 || c.DaysLeft < 300 || !strings.Contains(c.Issuer, "mailsink CA") {
		t.Errorf("leaf = %+v", c)
	}
	if !strings.Contains(strings.Join(r.EHLO, " "), "AUTH PLAIN LOGIN") ||
		strings.Join(r.AuthMechanisms, " ") != "PLAIN LOGIN" || r.AuthMechanism != "PLAIN" {
		t.Errorf("ehlo %v, mechanisms %v, pick %q", r.EHLO, r.AuthMechanisms, r.AuthMechanism)
	}
	if r.Auth.Tried || s.AuthAttempts() != 0 {
		t.Errorf("without Auth: tried %v, server saw %d AUTH", r.Auth.Tried, s.AuthAttempts())
	}

	r = runProbe(t, p, ProbeOptions{Auth: true})
	wantOK(t, r)
	if !r.Auth.Tried || !r.Auth.OK || !strings.HasPrefix(r.Auth.Reply, "235") || s.AuthAttempts() != 1 {
		t.Errorf("auth %+v, server saw %d AUTH, want one, accepted", r.Auth, s.AuthAttempts())
	}
	if n := s.MailAttempts(); n != 0 {
		t.Errorf("the probe sent %d MAIL", n)
	}
}

func TestProbeAuthRefused(t *testing.T) {
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, Users: map[string]string{"alice": "other"}})
	r := runProbe(t, fakeProvider(s, policy.TLSImplicit, "login"), ProbeOptions{Auth: true})
	wantFailed(t, r, []string{"AUTH LOGIN refused: 535", "env FAKE_PASSWORD"}, nil)
	if !r.Auth.Tried || r.Auth.OK || !strings.HasPrefix(r.Auth.Reply, "535") {
		t.Errorf("auth = %+v", r.Auth)
	}
}

func TestProbeAuthMechanismMismatch(t *testing.T) {
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, Users: users, AuthMechanisms: []string{"LOGIN"}})
	r := runProbe(t, fakeProvider(s, policy.TLSImplicit, "plain"), ProbeOptions{})
	wantFailed(t, r, []string{"does not offer AUTH PLAIN"}, []string{"providers.fake.auth.mechanism: login"})
	if s.AuthAttempts() != 0 {
		t.Errorf("server saw %d AUTH", s.AuthAttempts())
	}
}

// The Tencent Cloud SES case: an RSA-only server and a default policy.
func TestProbeRSAOnly(t *testing.T) {
	s := rsaOnly(t)
	p := fakeProvider(s, policy.TLSImplicit, "plain")
	r := runProbe(t, p, ProbeOptions{})
	wantFailed(t, r, []string{"only RSA key exchange (TLS_RSA_WITH_AES_256_CBC_SHA)", "Go leaves it out by default"},
		[]string{"in relay.yaml, providers.fake.tls.ciphers: [default, TLS_RSA_WITH_AES_256_CBC_SHA]"})
	if sc := r.Scan; sc == nil || strings.Join(sc.Versions, ",") != "1.2" || sc.SuitesAt != "1.2" ||
		strings.Join(sc.Suites, ",") != "TLS_RSA_WITH_AES_256_CBC_SHA" || sc.Handshakes > maxScanHandshakes {
		t.Errorf("scan = %+v", sc)
	}
	if s.AuthAttempts()+s.MailAttempts() != 0 {
		t.Errorf("the diagnosis sent AUTH or MAIL")
	}

	p.TLS.Ciphers = []string{"default", "TLS_RSA_WITH_AES_256_CBC_SHA"}
	p.TLS.CipherSuites = policy.ExpandCiphers(p.TLS.Ciphers)
	r = runProbe(t, p, ProbeOptions{})
	wantOK(t, r)
	if r.TLS.Cipher != "TLS_RSA_WITH_AES_256_CBC_SHA" {
		t.Errorf("cipher %s", r.TLS.Cipher)
	}
}

// From flags, the fix names the key without the provider and the flags.
func TestProbeRSAOnlyFromFlags(t *testing.T) {
	s := rsaOnly(t)
	r := runProbe(t, fakeProvider(s, policy.TLSImplicit, ""), ProbeOptions{ConfigFile: "-"})
	wantFailed(t, r, nil, []string{"tls.ciphers: [default, TLS_RSA_WITH_AES_256_CBC_SHA]", "-ciphers default,TLS_RSA_WITH_AES_256_CBC_SHA"})
	if strings.Contains(r.Fix, "providers.") {
		t.Errorf("fix from flags names a provider key: %s", r.Fix)
	}
}

func TestProbeVersions(t *testing.T) {
	cases := []struct {
		name           string
		srvMin, srvMax uint16
		min, max       uint16
		reason, fix    string
	}{
		{"1.0 only", tls.VersionTLS10, tls.VersionTLS10, 0, 0,
			"the server speaks only TLS 1.0", `providers.fake.tls.min_version: "1.0" (weak; ask the provider to upgrade)`},
		{"1.3 only, max 1.2", tls.VersionTLS13, 0, 0, tls.VersionTLS12,
			`accepts TLS 1.3 only, but tls.max_version is "1.2"`, `remove providers.fake.tls.max_version or set it to "1.3"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, TLSMinVersion: tc.srvMin, TLSMaxVersion: tc.srvMax})
			p := fakeProvider(s, policy.TLSImplicit, "")
			p.TLS.MinVersion, p.TLS.MaxVersion = tc.min, tc.max
			wantFailed(t, runProbe(t, p, ProbeOptions{}), []string{tc.reason}, []string{tc.fix})
		})
	}
}

func TestProbeUntrusted(t *testing.T) {
	for _, o := range []smtptest.Options{{Untrusted: true}, {SelfSigned: true}} {
		o.Mode, o.Users = smtptest.StartTLS, users
		s := smtptest.Start(t, o)
		p := fakeProvider(s, policy.TLSStartTLS, "plain")
		r := runProbe(t, p, ProbeOptions{Auth: true})
		wantFailed(t, r, []string{"unknown authority", s.PinSHA256()},
			[]string{"providers.fake.tls.ca_file", `providers.fake.tls.pin_sha256: ["` + s.PinSHA256() + `"]`, "insecure_skip_verify: true"})
		if r.Pin != s.PinSHA256() || r.Verified || !strings.HasPrefix(r.VerifyError, "unknown authority") || len(r.Chain) == 0 {
			t.Errorf("pin %q, verified %v %q, chain %d", r.Pin, r.Verified, r.VerifyError, len(r.Chain))
		}
		if o.SelfSigned && !strings.Contains(r.Error, "self-signed") {
			t.Errorf("reason does not say self-signed: %s", r.Error)
		}
		if s.AuthAttempts() != 0 {
			t.Errorf("credentials sent to an unverified server")
		}
		// The fix: the pin, with the chain check off.
		p.TLS.PinSHA256 = [][32]byte{mustPin(t, r.Pin)}
		p.TLS.InsecureSkipVerify = true
		r = runProbe(t, p, ProbeOptions{})
		wantOK(t, r)
		if r.Verified || !strings.Contains(r.VerifyError, "the pin matched") {
			t.Errorf("verified %v %q", r.Verified, r.VerifyError)
		}
	}
}

func mustPin(t *testing.T, s string) [32]byte {
	t.Helper()
	pin, err := policy.ParsePin(s)
	if err != nil {
		t.Fatal(err)
	}
	return pin
}

func TestProbeWrongName(t *testing.T) {
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, CertNames: []string{"mail.example.com"}})
	p := fakeProvider(s, policy.TLSImplicit, "")
	r := runProbe(t, p, ProbeOptions{})
	wantFailed(t, r, []string{"name mismatch", "mail.example.com"}, []string{"providers.fake.tls.server_name: mail.example.com"})
	p.TLS.ServerName = "mail.example.com"
	wantOK(t, runProbe(t, p, ProbeOptions{}))

	// A name of another domain is not offered as a fix.
	p.Host, p.TLS.ServerName = "localhost", ""
	wantFailed(t, runProbe(t, p, ProbeOptions{}), []string{"none of these names belongs to the domain of localhost"}, nil)
}

func TestProbeExpired(t *testing.T) {
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, CertNotAfter: time.Now().Add(-48 * time.Hour)})
	r := runProbe(t, fakeProvider(s, policy.TLSImplicit, ""), ProbeOptions{})
	wantFailed(t, r, []string{"expired on", "nothing to fix on our side"}, nil)
	if !strings.HasPrefix(r.VerifyError, "expired on") {
		t.Errorf("verify_error = %q", r.VerifyError)
	}
}

func TestProbePinMismatch(t *testing.T) {
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS})
	p := fakeProvider(s, policy.TLSImplicit, "")
	p.TLS.PinSHA256 = [][32]byte{{1}}
	r := runProbe(t, p, ProbeOptions{})
	wantFailed(t, r, []string{"pin mismatch", s.PinSHA256()}, []string{`providers.fake.tls.pin_sha256: ["AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "` + s.PinSHA256() + `"]`})
	if len(r.Chain) != 2 {
		t.Errorf("chain %d certificates, want 2", len(r.Chain))
	}
}

func TestProbeClientCertRequired(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		s := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, RequireClientCert: true, TLSMaxVersion: v})
		r := runProbe(t, fakeProvider(s, policy.TLSImplicit, ""), ProbeOptions{})
		wantFailed(t, r, []string{"client certificate required"}, []string{"providers.fake.tls.cert_file and providers.fake.tls.key_file"})
	}
}

func TestProbeNoStartTLS(t *testing.T) {
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.StartTLS, NoStartTLS: true, Users: users})
	r := runProbe(t, fakeProvider(s, policy.TLSStartTLS, "plain"), ProbeOptions{Auth: true})
	wantFailed(t, r, []string{"does not offer STARTTLS on port", "never sends credentials or mail in plaintext", ":465"}, nil)
	if r.StartTLSOffered == nil || *r.StartTLSOffered || s.AuthAttempts() != 0 {
		t.Errorf("starttls offered %v, AUTH seen %d", r.StartTLSOffered, s.AuthAttempts())
	}
}

// Mode implicit against a server that greets in plaintext: use starttls.
func TestProbeImplicitAgainstPlaintext(t *testing.T) {
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.StartTLS})
	r := runProbe(t, fakeProvider(s, policy.TLSImplicit, ""), ProbeOptions{})
	wantFailed(t, r, []string{"greeted in plaintext", "speaks STARTTLS"}, []string{"providers.fake.tls.mode: starttls"})
	if !strings.HasPrefix(r.Greeting, "220 ") {
		t.Errorf("greeting %q", r.Greeting)
	}
}

// Mode starttls against an implicit TLS server: it sends no greeting until
// the session's timeout, then one handshake shows it speaks TLS at once.
func TestProbeStartTLSAgainstImplicit(t *testing.T) {
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS})
	r := runProbe(t, fakeProvider(s, policy.TLSStartTLS, ""), ProbeOptions{Timeout: time.Second})
	wantFailed(t, r, []string{"no greeting within 1s", "implicit TLS"}, []string{"providers.fake.tls.mode: implicit"})
}

func TestProbeDialFails(t *testing.T) {
	p := &policy.Provider{Name: "fake", Host: "127.0.0.1", Port: 1, TLS: policy.TLS{Mode: policy.TLSImplicit}}
	addr := smtptest.ClosedAddr(t)
	p.Port = mustPort(t, addr)
	wantFailed(t, runProbe(t, p, ProbeOptions{}), []string{"cannot connect to " + addr}, nil)
}

func mustPort(t *testing.T, addr string) int {
	t.Helper()
	port, err := strconv.Atoi(addr[strings.LastIndex(addr, ":")+1:])
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func TestCipherList(t *testing.T) {
	rsa := tls.TLS_RSA_WITH_AES_256_CBC_SHA
	ecdhe := tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
	cases := []struct {
		cur  []string
		best uint16
		want string
	}{
		{nil, rsa, "default TLS_RSA_WITH_AES_256_CBC_SHA"},
		{[]string{"default", "TLS_RSA_WITH_AES_128_CBC_SHA"}, rsa, "default TLS_RSA_WITH_AES_128_CBC_SHA TLS_RSA_WITH_AES_256_CBC_SHA"},
		{[]string{"TLS_RSA_WITH_AES_256_CBC_SHA"}, ecdhe, "default TLS_RSA_WITH_AES_256_CBC_SHA"},
	}
	for _, tc := range cases {
		if got := strings.Join(cipherList(tc.cur, tc.best), " "); got != tc.want {
			t.Errorf("cipherList(%v, %s) = %s, want %s", tc.cur, tls.CipherSuiteName(tc.best), got, tc.want)
		}
	}
	if n := len(suitesFor(tls.VersionTLS12)) + 4; n > maxScanHandshakes {
		t.Errorf("a full scan needs %d handshakes, more than %d", n, maxScanHandshakes)
	}
	if got := plausibleName("smtp.example.com.cn", []string{"*.example.com.cn", "mx.example.com.cn"}); got != "mx.example.com.cn" {
		t.Errorf("plausibleName = %q", got)
	}
	if got := plausibleName("smtp.a.com.cn", []string{"mx.b.com.cn"}); got != "" {
		t.Errorf("plausibleName across domains = %q", got)
	}
}
