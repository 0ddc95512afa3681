package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/delivery"
	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/policy"
)

// deliverVia sends body to rcpt through the named provider of c, bounded by 30s.
func deliverVia(t *testing.T, c *Client, provider, rcpt string) delivery.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msg := &delivery.Message{ID: "m-" + provider, From: "app@example.com", Size: int64(len(body)), Body: strings.NewReader(body)}
	return c.Deliver(ctx, provider, msg, []string{rcpt})[0]
}

// wantTLSErr checks that r failed in the TLS layer with every text in want,
// the probe hint, and that the server saw neither AUTH nor MAIL.
func wantTLSErr(t *testing.T, r delivery.Result, s *smtptest.Server, want ...string) {
	t.Helper()
	if r.Err == nil {
		t.Fatalf("delivered (TLS %s), want a TLS error", r.TLS)
	}
	msg := r.Err.Error()
	t.Logf("error: %s", msg)
	if !delivery.Temporary(r.Err) {
		t.Errorf("TLS error is permanent: %v", msg)
	}
	for _, w := range append(want, "tlsrelay probe") {
		if !strings.Contains(msg, w) {
			t.Errorf("error lacks %q:\n%v", w, msg)
		}
	}
	if a, m := s.AuthAttempts(), s.MailAttempts(); a+m != 0 {
		t.Errorf("sent %d AUTH and %d MAIL after a TLS failure", a, m)
	}
}

func wantDelivered(t *testing.T, r delivery.Result, tlsPrefix string) {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("delivery failed: %v", r.Err)
	}
	if !strings.HasPrefix(r.TLS, tlsPrefix) {
		t.Errorf("TLS = %q, want prefix %q", r.TLS, tlsPrefix)
	}
}

// rsaOnly is a fake upstream that speaks only TLS_RSA_WITH_AES_256_CBC_SHA,
// as smtp.qcloudmail.com:465 does.
func rsaOnly(t *testing.T) *smtptest.Server {
	return smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, Users: users, AuthRequired: true,
		CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_256_CBC_SHA}, TLSMaxVersion: tls.VersionTLS12})
}

// TestLegacySuiteIsPerProvider shows, in one process and without GODEBUG,
// that a provider listing the RSA key-exchange suite reaches an RSA-only
// server while a provider without the opt-in is refused, before and after.
func TestLegacySuiteIsPerProvider(t *testing.T) {
	if strings.Contains(os.Getenv("GODEBUG"), "tlsrsakex") {
		t.Fatal("GODEBUG tlsrsakex is set: this test must show the opt-in works without it")
	}
	s := rsaOnly(t)
	modern := fakeProvider(s, policy.TLSImplicit, "plain")
	legacy := fakeProvider(s, policy.TLSImplicit, "plain")
	legacy.Name = "legacy"
	legacy.TLS.Ciphers = []string{"default", "TLS_RSA_WITH_AES_256_CBC_SHA"}
	legacy.TLS.CipherSuites = policy.ExpandCiphers(legacy.TLS.Ciphers)
	c, _ := newClient(t, modern)
	c.Providers["legacy"] = legacy

	wantTLSErr(t, deliverVia(t, c, "fake", "b@example.net"), s,
		"no shared cipher suite", "Go's defaults, which leave out RSA key exchange", "[default, TLS_RSA_WITH_AES_256_CBC_SHA]")
	wantDelivered(t, deliverVia(t, c, "legacy", "b@example.net"), "TLS 1.2 TLS_RSA_WITH_AES_256_CBC_SHA")
	if m := waitOne(t, s); m.AuthUser != "alice" || m.TLS.CipherSuite != tls.TLS_RSA_WITH_AES_256_CBC_SHA {
		t.Errorf("server saw user %q, suite %s", m.AuthUser, tls.CipherSuiteName(m.TLS.CipherSuite))
	}
	r := deliverVia(t, c, "fake", "b@example.net")
	if r.Err == nil || !strings.Contains(r.Err.Error(), "no shared cipher suite") {
		t.Errorf("after the legacy delivery, the provider without the opt-in got %v, want a cipher failure", r.Err)
	}

	// Against a modern server the opt-in changes nothing: Go prefers ECDHE.
	m := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, RSAKey: true, TLSMaxVersion: tls.VersionTLS12})
	legacy.Port = m.Port()
	legacy.TLS.RootCAs = m.RootCAs()
	legacy.Auth = policy.Auth{}
	wantDelivered(t, deliverVia(t, c, "legacy", "b@example.net"), "TLS 1.2 TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
}

func TestTLSVersions(t *testing.T) {
	cases := []struct {
		name       string
		srvMin     uint16
		srvMax     uint16
		minVersion uint16
		maxVersion uint16
		want       string // TLS prefix on success, or an error text
		ok         bool
	}{
		{"1.3-only server, max 1.2", tls.VersionTLS13, 0, 0, tls.VersionTLS12, "TLS version not allowed", false},
		{"1.3-only server, default", tls.VersionTLS13, 0, 0, 0, "TLS 1.3 ", true},
		{"1.0-only server, default", tls.VersionTLS10, tls.VersionTLS10, 0, 0, "TLS version not allowed", false},
		{"1.0-only server, min 1.0", tls.VersionTLS10, tls.VersionTLS10, tls.VersionTLS10, 0, "TLS 1.0 ", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, TLSMinVersion: tc.srvMin, TLSMaxVersion: tc.srvMax})
			p := fakeProvider(s, policy.TLSImplicit, "")
			p.TLS.MinVersion, p.TLS.MaxVersion = tc.minVersion, tc.maxVersion
			c, _ := newClient(t, p)
			r := deliverVia(t, c, "fake", "b@example.net")
			if tc.ok {
				wantDelivered(t, r, tc.want)
			} else {
				wantTLSErr(t, r, s, tc.want)
			}
		})
	}
}

func TestCertificateFailures(t *testing.T) {
	cases := []struct {
		name string
		opts smtptest.Options
		want []string
	}{
		{"expired", smtptest.Options{CertNotAfter: time.Now().Add(-time.Hour)}, []string{"certificate expired on", "renew"}},
		{"self-signed", smtptest.Options{SelfSigned: true}, []string{"unknown authority", "tls.ca_file"}},
		{"wrong name", smtptest.Options{CertNames: []string{"other.example"}}, []string{"name mismatch", `"127.0.0.1"`, "tls.server_name"}},
	}
	for _, tc := range cases {
		for _, mode := range []policy.TLSMode{policy.TLSImplicit, policy.TLSStartTLS} {
			t.Run(tc.name+"/"+string(mode), func(t *testing.T) {
				t.Parallel()
				o := tc.opts
				o.Users, o.Mode = users, smtptest.ImplicitTLS
				if mode == policy.TLSStartTLS {
					o.Mode = smtptest.StartTLS
				}
				s := smtptest.Start(t, o)
				c, _ := newClient(t, fakeProvider(s, mode, "plain"))
				wantTLSErr(t, deliverVia(t, c, "fake", "b@example.net"), s, tc.want...)
			})
		}
	}
}

func TestPins(t *testing.T) {
	other := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS}) // never dialled: its key is the wrong pin
	cases := []struct {
		name       string
		selfSigned bool
		pins       []string // "right" (the server's key) or "wrong"
		insecure   bool
		wantErr    []string // nil: delivered
	}{
		{"right pin", false, []string{"wrong", "right"}, false, nil},
		{"wrong pin", false, []string{"wrong"}, false, []string{"pin mismatch", "tls.pin_sha256"}},
		{"pin does not replace the CA check", true, []string{"right"}, false, []string{"unknown authority"}},
		{"insecure and right pin, self-signed", true, []string{"right"}, true, nil},
		{"insecure and wrong pin, self-signed", true, []string{"wrong"}, true, []string{"pin mismatch"}},
		{"insecure alone, self-signed", true, nil, true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, SelfSigned: tc.selfSigned})
			p := fakeProvider(s, policy.TLSImplicit, "")
			p.TLS.InsecureSkipVerify = tc.insecure
			for _, which := range tc.pins {
				pin := map[string]string{"right": s.PinSHA256(), "wrong": other.PinSHA256()}[which]
				parsed, err := policy.ParsePin(pin)
				if err != nil {
					t.Fatal(err)
				}
				p.TLS.PinSHA256 = append(p.TLS.PinSHA256, parsed)
			}
			c, _ := newClient(t, p)
			r := deliverVia(t, c, "fake", "b@example.net")
			if tc.wantErr == nil {
				wantDelivered(t, r, "TLS 1.3 ")
			} else {
				wantTLSErr(t, r, s, tc.wantErr...)
			}
			if tc.wantErr != nil && tc.wantErr[0] == "pin mismatch" && !strings.Contains(r.Err.Error(), s.PinSHA256()) {
				t.Errorf("pin error does not show the server's pin %s: %v", s.PinSHA256(), r.Err)
			}
			warnings := strings.Join((&policy.Config{Providers: map[string]*policy.Provider{"fake": p}}).Warnings(), "\n")
			if got := strings.Contains(warnings, "tls.insecure_skip_verify is on"); got != tc.insecure {
				t.Errorf("Warnings() = %q; want insecure_skip_verify mentioned: %v", warnings, tc.insecure)
			}
			if tc.insecure && tc.pins == nil && !strings.Contains(warnings, "anyone on the path can read the mail and the password") {
				t.Errorf("Warnings() = %q, want the risk spelled out", warnings)
			}
		})
	}
}

// writePair writes a client certificate and key for cn into dir, replacing
// the files atomically (as a Kubernetes secret update does).
func writePair(t *testing.T, s *smtptest.Server, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := s.ClientCertPEM(cn)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	replaceFile(t, certFile, certPEM)
	replaceFile(t, keyFile, keyPEM)
	return certFile, keyFile
}

func replaceFile(t *testing.T, name string, data []byte) {
	t.Helper()
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}

func TestClientCertificate(t *testing.T) {
	for _, mode := range []policy.TLSMode{policy.TLSImplicit, policy.TLSStartTLS} {
		t.Run(string(mode), func(t *testing.T) {
			srvMode := map[policy.TLSMode]smtptest.Mode{policy.TLSImplicit: smtptest.ImplicitTLS, policy.TLSStartTLS: smtptest.StartTLS}[mode]
			s := smtptest.Start(t, smtptest.Options{Mode: srvMode, RequireClientCert: true, Users: users, AuthRequired: true})
			p := fakeProvider(s, mode, "plain")
			c, logs := newClient(t, p)
			if r := deliverVia(t, c, "fake", "b@example.net"); r.Err == nil || !strings.Contains(r.Err.Error(), "client certificate required") ||
				!strings.Contains(r.Err.Error(), "tls.cert_file") {
				t.Fatalf("without a client certificate: %v, want it named as the reason", r.Err)
			}

			dir := t.TempDir()
			cc, err := policy.LoadClientCert(writePair(t, s, dir, "client-one"))
			if err != nil {
				t.Fatal(err)
			}
			p.TLS.ClientCert = cc
			sent := func() string {
				t.Helper()
				wantDelivered(t, deliverVia(t, c, "fake", "b@example.net"), "TLS 1.3 ")
				msgs := s.Messages()
				return msgs[len(msgs)-1].TLS.PeerCertificates[0].Subject.CommonName
			}
			if cn := sent(); cn != "client-one" {
				t.Errorf("client certificate %q, want client-one", cn)
			}
			writePair(t, s, dir, "client-two")
			if cn := sent(); cn != "client-two" {
				t.Errorf("after the files changed: client certificate %q, want client-two", cn)
			}
			replaceFile(t, filepath.Join(dir, "client.key"), []byte("not a key\n"))
			for range 2 {
				if cn := sent(); cn != "client-two" {
					t.Errorf("after a bad key file: client certificate %q, want the last good one", cn)
				}
			}
			if n := strings.Count(logs.String(), "client certificate reload failed"); n != 1 {
				t.Errorf("%d reload warnings, want 1:\n%s", n, logs)
			}
			if strings.Contains(logs.String(), "PRIVATE KEY") {
				t.Errorf("key material in the log:\n%s", logs)
			}
		})
	}
}

func TestCertExpiryWarning(t *testing.T) {
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, CertNotAfter: time.Now().Add(5*24*time.Hour + time.Hour)})
	c, logs := newClient(t, fakeProvider(s, policy.TLSImplicit, ""))
	if _, ok := c.CertExpiry("fake"); ok {
		t.Error("CertExpiry known before any handshake")
	}
	for range 3 {
		wantDelivered(t, deliverVia(t, c, "fake", "b@example.net"), "TLS 1.3 ")
	}
	if n := strings.Count(logs.String(), "upstream certificate expires soon"); n != 1 {
		t.Errorf("%d expiry warnings, want 1:\n%s", n, logs)
	}
	for _, want := range []string{"provider=fake", "days_left=5", "not_after=", "subject="} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("expiry warning lacks %q:\n%s", want, logs)
		}
	}
	if na, ok := c.CertExpiry("fake"); !ok || !na.Equal(s.Leaf().NotAfter) {
		t.Errorf("CertExpiry = %v, %v; want %v", na, ok, s.Leaf().NotAfter)
	}
}

// TestCertWatchOncePerDay drives the watch's clock: a certificate that stays
// close to expiry is warned about again after a day, not before; one far
// from expiry never.
func TestCertWatchOncePerDay(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	w := &certWatch{now: func() time.Time { return now }}
	logs := &smtptest.LogBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	soon := &x509.Certificate{Subject: pkix.Name{CommonName: "soon"}, NotAfter: now.Add(10 * 24 * time.Hour)}
	far := &x509.Certificate{Subject: pkix.Name{CommonName: "far"}, NotAfter: now.Add(90 * 24 * time.Hour)}
	for _, step := range []time.Duration{0, time.Hour, 22 * time.Hour, time.Hour} {
		now = now.Add(step)
		w.observe("a", soon, log)
		w.observe("b", far, log)
	}
	if n := strings.Count(logs.String(), "expires soon"); n != 2 {
		t.Errorf("%d warnings over 24h, want 2:\n%s", n, logs)
	}
	if strings.Contains(logs.String(), "provider=b") {
		t.Errorf("warned about a certificate 90 days from expiry:\n%s", logs)
	}
}

func TestTLSConfigBuilder(t *testing.T) {
	p := &policy.Provider{Name: "x", Host: "smtp.example.com", Port: 465, TLS: policy.TLS{Mode: policy.TLSImplicit}}
	cfg := TLSConfig(p)
	if cfg.ServerName != "smtp.example.com" || cfg.MinVersion != tls.VersionTLS12 || cfg.CipherSuites != nil ||
		cfg.InsecureSkipVerify || cfg.VerifyConnection != nil || cfg.GetClientCertificate != nil {
		t.Errorf("default TLSConfig = %+v", cfg)
	}
	p.TLS.Ciphers = []string{"default", "TLS_RSA_WITH_AES_256_CBC_SHA"}
	p.TLS.CipherSuites = policy.ExpandCiphers(p.TLS.Ciphers)
	p.TLS.ServerName, p.TLS.MaxVersion = "mx.example.com", tls.VersionTLS12
	cfg = TLSConfig(p)
	if cfg.ServerName != "mx.example.com" || cfg.MaxVersion != tls.VersionTLS12 ||
		cfg.CipherSuites[len(cfg.CipherSuites)-1] != tls.TLS_RSA_WITH_AES_256_CBC_SHA {
		t.Errorf("TLSConfig = %+v", cfg)
	}
	cfg.CipherSuites[0] = 0 // the config is a copy: changing it cannot change the policy
	if p.TLS.CipherSuites[0] == 0 {
		t.Error("TLSConfig shares the policy's CipherSuites")
	}
}
