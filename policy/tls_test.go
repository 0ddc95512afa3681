package policy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeClientPair writes a self-signed client certificate for cn, valid
// until notAfter, and its key into dir (replacing them atomically).
func writeClientPair(t *testing.T, dir, cn string, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	replace(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	replace(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return certFile, keyFile
}

func replace(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name+".tmp", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(name+".tmp", name); err != nil {
		t.Fatal(err)
	}
}

func pinOf(s string) [32]byte {
	sum := sha256.Sum256([]byte(s))
	return sum
}

func b64(p [32]byte) string { return base64.StdEncoding.EncodeToString(p[:]) }

func TestTLSDefaultsShown(t *testing.T) {
	c := mustParse(t, minimal)
	p := c.Providers["up"]
	if p.TLS.Ciphers != nil || p.TLS.CipherSuites != nil || p.TLS.PinSHA256 != nil || p.TLS.ClientCert != nil ||
		p.TLS.InsecureSkipVerify || p.TLS.MaxVersion != tls.VersionTLS13 {
		t.Errorf("TLS defaults = %+v", p.TLS)
	}
	out := string(c.Effective())
	for _, want := range []string{"min_version: \"1.2\"\n", "max_version: \"1.3\"\n", "ciphers: [default]\n", "insecure_skip_verify: false\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("Effective lacks %q:\n%s", want, out)
		}
	}
	for _, absent := range []string{"pin_sha256", "cert_file", "key_file"} {
		if strings.Contains(out, absent) {
			t.Errorf("Effective shows unset %s:\n%s", absent, out)
		}
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("Warnings() for defaults = %q", w)
	}
	// [default] written out is the same as leaving ciphers out.
	c2 := mustParse(t, minimal+"    tls: {ciphers: [default]}\n")
	if !reflect.DeepEqual(c2.Providers["up"], p) {
		t.Errorf("[default] = %+v, want %+v", c2.Providers["up"].TLS, p.TLS)
	}
}

func TestTLSAllKeys(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeClientPair(t, dir, "client", time.Now().Add(90*24*time.Hour))
	pinA, pinB := pinOf("a"), pinOf("b")
	c := mustParse(t, minimal+fmt.Sprintf(`    tls:
      mode: starttls
      min_version: "1.0"
      max_version: 1.2
      ciphers: [default, TLS_RSA_WITH_AES_256_CBC_SHA]
      pin_sha256: [%s, "sha256//%s"]
      cert_file: %s
      key_file: %s
      insecure_skip_verify: true
`, b64(pinA), b64(pinB), certFile, keyFile))
	tt := c.Providers["up"].TLS
	want := append(DefaultCipherSuites(), tls.TLS_RSA_WITH_AES_256_CBC_SHA)
	if tt.MinVersion != tls.VersionTLS10 || tt.MaxVersion != tls.VersionTLS12 || !slices.Equal(tt.CipherSuites, want) ||
		!slices.Equal(tt.Ciphers, []string{"default", "TLS_RSA_WITH_AES_256_CBC_SHA"}) ||
		!slices.Equal(tt.PinSHA256, [][32]byte{pinA, pinB}) || !tt.InsecureSkipVerify || tt.ClientCert == nil ||
		tt.ClientCert.CertFile() != certFile || tt.ClientCert.KeyFile() != keyFile {
		t.Fatalf("TLS = %+v", tt)
	}
	if cert, err := tt.ClientCert.Certificate(); err != nil || cert.Leaf.Subject.CommonName != "client" {
		t.Errorf("client certificate = %v, %v", cert, err)
	}

	out := c.Effective()
	for _, w := range []string{
		"min_version: \"1.0\"\n", "max_version: \"1.2\"\n", "ciphers: [default, TLS_RSA_WITH_AES_256_CBC_SHA]\n",
		"pin_sha256: [" + b64(pinA) + ", " + b64(pinB) + "]\n", "cert_file: " + certFile + "\n",
		"key_file: " + keyFile + "\n", "insecure_skip_verify: true\n",
	} {
		if !strings.Contains(string(out), w) {
			t.Errorf("Effective lacks %q:\n%s", w, out)
		}
	}
	c2, err := Parse("effective.yaml", out, testEnv)
	if err != nil {
		t.Fatalf("Parse(Effective()):\n%v\n%s", err, out)
	}
	t2 := c2.Providers["up"].TLS
	t2.ClientCert, tt.ClientCert = nil, nil
	if !reflect.DeepEqual(t2, tt) {
		t.Errorf("Parse(Effective()) TLS differs:\n%+v\n%+v", t2, tt)
	}

	warnings := strings.Join(c.Warnings(), "\n")
	for _, w := range []string{
		"provider up: tls.insecure_skip_verify is on: the certificate chain and name are not verified, only the key pinned",
		`provider up: tls.min_version "1.0" allows TLS versions below 1.2`,
		"provider up: tls.ciphers enables legacy suites for this provider only: TLS_RSA_WITH_AES_256_CBC_SHA",
	} {
		if !strings.Contains(warnings, w) {
			t.Errorf("Warnings() lacks %q:\n%s", w, warnings)
		}
	}
}

func TestCipherExpansion(t *testing.T) {
	defaults := DefaultCipherSuites()
	var secure []uint16
	for _, cs := range tls.CipherSuites() {
		if !slices.Contains(cs.SupportedVersions, tls.VersionTLS13) {
			secure = append(secure, cs.ID)
		}
	}
	if !reflect.DeepEqual(slices.Sorted(slices.Values(defaults)), slices.Sorted(slices.Values(secure))) {
		t.Errorf("DefaultCipherSuites = %v, want the TLS 1.0-1.2 suites of tls.CipherSuites %v", defaults, secure)
	}
	for _, id := range defaults {
		if name := tls.CipherSuiteName(id); strings.HasPrefix(name, "TLS_RSA_") || strings.Contains(name, "3DES") {
			t.Errorf("default includes %s", name)
		}
	}
	if !strings.Contains(tls.CipherSuiteName(defaults[0]), "_GCM_") {
		t.Errorf("default does not start with an AEAD suite: %s", tls.CipherSuiteName(defaults[0]))
	}
	if got := ExpandCiphers([]string{"default"}); got != nil {
		t.Errorf("[default] = %v, want nil (Go's defaults)", got)
	}
	got := ExpandCiphers([]string{"TLS_RSA_WITH_AES_128_CBC_SHA", "default", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"})
	want := append([]uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}, defaults...)
	if !slices.Equal(got, want) {
		t.Errorf("expansion = %v, want %v (each suite once)", got, want)
	}
}

func TestCipherVersionsAccepted(t *testing.T) {
	for _, tlsSection := range []string{
		`{min_version: "1.0", max_version: "1.1", ciphers: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA]}`,
		`{min_version: "1.0", max_version: "1.0", ciphers: [TLS_RSA_WITH_AES_256_CBC_SHA]}`,
		`{min_version: "1.1", max_version: "1.1", ciphers: [default]}`,
		`{min_version: "1.3", ciphers: [default]}`,
		`{ciphers: [TLS_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256]}`,
	} {
		mustParse(t, minimal+"    tls: "+tlsSection+"\n")
	}
}

func TestUnknownCipherListsValidNames(t *testing.T) {
	_, err := Parse("x.yaml", []byte(minimal+"    tls: {ciphers: [TLS_NOPE]}\n"), testEnv)
	if err == nil {
		t.Fatal("accepted TLS_NOPE")
	}
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		tls13 := slices.Equal(cs.SupportedVersions, []uint16{tls.VersionTLS13})
		if strings.Contains(err.Error(), cs.Name) == tls13 {
			t.Errorf("error lists %s: %v (TLS 1.3 suites must not be listed, the others must)", cs.Name, !tls13)
		}
	}
}

func TestClientCertErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeClientPair(t, dir, "one", time.Now().Add(time.Hour))
	other := t.TempDir()
	_, otherKey := writeClientPair(t, other, "two", time.Now().Add(time.Hour))
	cases := []struct{ tlsSection, want string }{
		{"{cert_file: " + certFile + ", key_file: " + otherKey + "}", "x.yaml:4: providers.up.tls.cert_file: cert_file"},
		{"{cert_file: " + certFile + ", key_file: " + certFile + "}", "are not a usable pair"},
		{"{cert_file: " + certFile + ", key_file: " + filepath.Join(dir, "nope") + "}", "x.yaml:4: providers.up.tls.key_file: cannot read"},
	}
	for _, tc := range cases {
		_, err := Parse("x.yaml", []byte(minimal+"    tls: "+tc.tlsSection+"\n"), testEnv)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.tlsSection, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("error shows key material: %v", err)
		}
	}
	c := mustParse(t, minimal+"    tls: {cert_file: "+certFile+", key_file: "+keyFile+"}\n")
	warnings := strings.Join(c.Warnings(), "\n")
	if !strings.Contains(warnings, "the client certificate in tls.cert_file") || !strings.Contains(warnings, "(0 days left)") {
		t.Errorf("Warnings() = %q, want the client certificate's expiry", warnings)
	}
}

// TestClientCertReload rotates the files under a loaded ClientCert.
func TestClientCertReload(t *testing.T) {
	dir := t.TempDir()
	cc, err := LoadClientCert(writeClientPair(t, dir, "one", time.Now().Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	cn := func(wantErr bool) string {
		t.Helper()
		cert, err := cc.Certificate()
		if (err != nil) != wantErr {
			t.Errorf("reload error = %v, want an error: %v", err, wantErr)
		}
		return cert.Leaf.Subject.CommonName
	}
	if got := cn(false); got != "one" {
		t.Errorf("first = %q", got)
	}
	writeClientPair(t, dir, "two", time.Now().Add(time.Hour))
	if got := cn(false); got != "two" {
		t.Errorf("after rotation = %q, want two", got)
	}
	replace(t, filepath.Join(dir, "client.key"), []byte("garbage\n"))
	if got := cn(true); got != "two" {
		t.Errorf("after a bad key = %q, want the last good pair", got)
	}
	if got := cn(false); got != "two" { // reported once, still the last good pair
		t.Errorf("again = %q", got)
	}
	os.Remove(filepath.Join(dir, "client.crt"))
	if got := cn(true); got != "two" {
		t.Errorf("after the certificate file went away = %q", got)
	}
	writeClientPair(t, dir, "three", time.Now().Add(time.Hour))
	if got := cn(false); got != "three" {
		t.Errorf("after repair = %q, want three", got)
	}
}

// TestClientCertNeverPrinted formats a provider with a client certificate
// every way a log line or error could, and finds no key material.
func TestClientCertNeverPrinted(t *testing.T) {
	certFile, keyFile := writeClientPair(t, t.TempDir(), "client", time.Now().Add(time.Hour))
	c := mustParse(t, minimal+"    tls: {cert_file: "+certFile+", key_file: "+keyFile+"}\n")
	keyPEM, _ := os.ReadFile(keyFile)
	block, _ := pem.Decode(keyPEM)
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	p := c.Providers["up"]
	for _, s := range []string{string(js), string(c.Effective()), fmt.Sprintf("%v %+v %#v", *p, p.TLS, p.TLS)} {
		if strings.Contains(s, "PRIVATE KEY") || strings.Contains(s, base64.StdEncoding.EncodeToString(block.Bytes)[:40]) {
			t.Errorf("key material shown:\n%s", s)
		}
	}
}

func TestParsePin(t *testing.T) {
	p := pinOf("x")
	for _, in := range []string{b64(p), "sha256//" + b64(p)} {
		if got, err := ParsePin(in); err != nil || got != p {
			t.Errorf("ParsePin(%q) = %x, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "sha256//", base64.RawStdEncoding.EncodeToString(p[:]) + "!", b64(p)[:40]} {
		if _, err := ParsePin(in); err == nil {
			t.Errorf("ParsePin(%q) accepted", in)
		}
	}
}

// offered returns the TLS 1.0-1.2 suites a crypto/tls client with
// CipherSuites suites (nil: Go's defaults) puts in its ClientHello.
func offered(t *testing.T, suites []uint16) []uint16 {
	t.Helper()
	got := make(chan []uint16, 1)
	srv := &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		got <- h.CipherSuites
		return nil, errors.New("enough")
	}}
	c1, c2 := net.Pipe()
	go func() {
		tls.Server(c2, srv).Handshake()
		c2.Close()
	}()
	tls.Client(c1, &tls.Config{ServerName: "x", MaxVersion: tls.VersionTLS12, CipherSuites: suites}).Handshake() // fails
	c1.Close()
	select {
	case s := <-got:
		return slices.Sorted(slices.Values(s))
	case <-time.After(10 * time.Second):
		t.Fatal("no ClientHello within 10s")
		return nil
	}
}

// TestDefaultIsWhatGoOffers checks, against the running Go, that default
// expands to the suites crypto/tls offers by default, and that the opt-in
// adds exactly the legacy suite.
func TestDefaultIsWhatGoOffers(t *testing.T) {
	goDefault := offered(t, nil)
	if want := slices.Sorted(slices.Values(DefaultCipherSuites())); !slices.Equal(goDefault, want) {
		t.Errorf("Go offers %v by default; default expands to %v", goDefault, want)
	}
	withRSA := offered(t, ExpandCiphers([]string{"default", "TLS_RSA_WITH_AES_256_CBC_SHA"}))
	want := slices.Sorted(slices.Values(append(DefaultCipherSuites(), tls.TLS_RSA_WITH_AES_256_CBC_SHA)))
	if !slices.Equal(withRSA, want) {
		t.Errorf("[default, TLS_RSA_WITH_AES_256_CBC_SHA] offers %v, want %v", withRSA, want)
	}
}
