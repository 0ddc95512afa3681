package policy

import (
	"cmp"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"time"
)

// TLS versions accepted by tls.min_version and tls.max_version.
var tlsVersions = map[string]uint16{
	"1.0": tls.VersionTLS10,
	"1.1": tls.VersionTLS11,
	"1.2": tls.VersionTLS12,
	"1.3": tls.VersionTLS13,
}

// defaultCiphers is the word in tls.ciphers that stands for Go's defaults.
const defaultCiphers = "default"

// maxCertFileBytes limits cert_file and key_file (ca_file has maxCAFileBytes).
const maxCertFileBytes = 1 << 20

// providerTLS decodes a provider's tls section. The mode defaults from the
// port (465: implicit, else starttls), the port from the mode (465, 587, 25);
// with neither given, implicit TLS on 465.
func (d *decoder) providerTLS(s *section, p *Provider, portSet bool) TLS {
	t := TLS{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13}
	var mode string
	modeLine, modeOK := s.oneOf("mode", &mode, string(TLSImplicit), string(TLSStartTLS), string(TLSNone))
	t.Mode = TLSMode(mode)
	if !modeOK {
		t.Mode = TLSStartTLS
		if p.Port == 465 || !portSet {
			t.Mode = TLSImplicit
		}
	}
	if !portSet {
		p.Port = map[TLSMode]int{TLSImplicit: 465, TLSStartTLS: 587, TLSNone: 25}[t.Mode]
	}
	if modeOK && t.Mode == TLSNone && p.Host != "" && !isLoopbackHost(p.Host) {
		d.errorf(modeLine, s.sub("mode"), `want "implicit" or "starttls" for %s: "none" would send credentials and mail across the network in clear, so it is allowed only for a loopback host (localhost, 127.0.0.1, ::1)`, p.Host)
	}
	d.versions(s, &t)
	d.ciphers(s, &t)
	t.ServerName = p.Host
	if line, ok := s.str("server_name", &t.ServerName); ok && !validHost(t.ServerName) {
		d.errorf(line, s.sub("server_name"), "want the host name in the provider's certificate, got %q", t.ServerName)
	}
	if line, ok := s.str("ca_file", &t.CAFile); ok {
		t.RootCAs = d.loadCAs(line, s.sub("ca_file"), t.CAFile)
	}
	d.pins(s, &t)
	d.clientCert(s, &t)
	d.insecure(s, &t)
	return t
}

// versions reads tls.min_version and tls.max_version; max must not be below min.
func (d *decoder) versions(s *section, t *TLS) {
	d.version(s, "min_version", &t.MinVersion)
	line, ok := d.version(s, "max_version", &t.MaxVersion)
	if ok && t.MaxVersion < t.MinVersion {
		d.errorf(line, s.sub("max_version"), "want at least min_version (%q), got %q: max_version cannot be below min_version",
			versionName(t.MinVersion), versionName(t.MaxVersion))
		t.MaxVersion = tls.VersionTLS13 // reported once: the cipher checks go on with a valid range
	}
}

// version reads a TLS version: "1.0", "1.1", "1.2" or "1.3" (quoted or not).
func (d *decoder) version(s *section, key string, dst *uint16) (line int, ok bool) {
	want := quoteList([]string{"1.0", "1.1", "1.2", "1.3"}, "or")
	v, line, ok := s.scalar(key, want, "!!str", "!!float")
	if !ok {
		return 0, false
	}
	ver, ok := tlsVersions[v.Value]
	if !ok {
		d.errorf(line, s.sub(key), "want %s, got %s", want, describe(v))
		return 0, false
	}
	*dst = ver
	return line, true
}

// ciphers reads tls.ciphers: Go suite names and the word default, checked
// against the TLS versions allowed. It needs t's versions decoded already.
func (d *decoder) ciphers(s *section, t *TLS) {
	const want = "cipher suite names (Go's, such as TLS_RSA_WITH_AES_256_CBC_SHA) or default"
	names, lines, ok := s.list("ciphers", want)
	if !ok {
		return
	}
	path := s.sub("ciphers")
	if len(names) == 0 {
		d.errorf(d.lineOf(path), path, "want at least one suite name or default; leave tls.ciphers out for Go's defaults")
		return
	}
	if len(names) == 1 && names[0] == defaultCiphers {
		return // the same as leaving the key out
	}
	if t.MinVersion >= tls.VersionTLS13 {
		d.errorf(d.lineOf(path), path, "cipher suites apply only to TLS 1.0 to 1.2, and min_version is \"1.3\": "+
			"remove tls.ciphers (Go picks the TLS 1.3 suites) or lower min_version")
		return
	}
	seen := map[string]int{}
	for i, name := range names {
		at := fmt.Sprintf("%s[%d]", path, i)
		if j, dup := seen[name]; dup {
			d.errorf(lines[i], at, "%s is listed twice (also at %s[%d]): remove one", name, path, j)
			ok = false
			continue
		}
		seen[name] = i
		if name == defaultCiphers {
			continue
		}
		if msg := checkSuite(name, t.MinVersion, t.MaxVersion); msg != "" {
			d.errorf(lines[i], at, "%s", msg)
			ok = false
		}
	}
	if ok {
		t.Ciphers = names
		t.CipherSuites = ExpandCiphers(names)
	}
}

// checkSuite returns why name cannot be used with TLS versions lo to hi,
// or "" if it can.
func checkSuite(name string, lo, hi uint16) string {
	cs := suiteByName(name)
	switch {
	case cs == nil:
		hint := ""
		if goName, ok := openSSLNames[name]; ok {
			hint = fmt.Sprintf(" (OpenSSL calls %s what Go calls %s)", name, goName)
		}
		return fmt.Sprintf("unknown cipher suite %q%s: want default or one of Go's names: %s", name, hint, strings.Join(suiteNames(), ", "))
	case slices.Equal(cs.SupportedVersions, []uint16{tls.VersionTLS13}):
		return fmt.Sprintf("%s is a TLS 1.3 suite: TLS 1.3 suites are not configurable (Go picks them); remove it", name)
	}
	for _, v := range cs.SupportedVersions {
		if v >= lo && v <= min(hi, tls.VersionTLS12) {
			return ""
		}
	}
	return fmt.Sprintf("%s works only with TLS %s, but the versions allowed are %s to %s (min_version, max_version): "+
		"it could never be used; remove it or change the versions",
		name, versionList(cs.SupportedVersions), versionName(lo), versionName(hi))
}

// versionList renders suite versions as "1.2" or "1.0 to 1.2".
func versionList(vs []uint16) string {
	if len(vs) == 1 {
		return versionName(vs[0])
	}
	return versionName(slices.Min(vs)) + " to " + versionName(slices.Max(vs))
}

// ExpandCiphers turns a valid tls.ciphers list into tls.Config.CipherSuites.
// [default] alone is nil (Go's defaults, chosen by crypto/tls at run time).
// Otherwise default stands for Go's secure TLS 1.0-1.2 suites
// (tls.CipherSuites, which Go 1.22+ enables by default: no RSA key exchange,
// no 3DES), AEADs first, and each named suite follows once. crypto/tls uses
// its own preference order whatever the order here: ECDHE and AEAD suites
// before legacy ones. Unknown names are skipped (Parse rejects them).
func ExpandCiphers(names []string) []uint16 {
	if len(names) == 1 && names[0] == defaultCiphers {
		return nil
	}
	ids := []uint16{}
	for _, name := range names {
		if name == defaultCiphers {
			for _, id := range DefaultCipherSuites() {
				if !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
		} else if cs := suiteByName(name); cs != nil && !slices.Contains(ids, cs.ID) {
			ids = append(ids, cs.ID)
		}
	}
	return ids
}

// DefaultCipherSuites returns what default stands for in tls.ciphers: the
// secure TLS 1.0-1.2 suites of crypto/tls, AEADs (GCM, ChaCha20) first.
func DefaultCipherSuites() []uint16 {
	var aead, cbc []uint16
	for _, cs := range tls.CipherSuites() {
		switch {
		case slices.Equal(cs.SupportedVersions, []uint16{tls.VersionTLS13}):
		case strings.Contains(cs.Name, "_GCM_") || strings.Contains(cs.Name, "_CHACHA20_"):
			aead = append(aead, cs.ID)
		default:
			cbc = append(cbc, cs.ID)
		}
	}
	return append(aead, cbc...)
}

// suiteByName finds a TLS suite that crypto/tls implements, secure or not.
func suiteByName(name string) *tls.CipherSuite {
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if cs.Name == name {
			return cs
		}
	}
	return nil
}

// suiteNames lists the configurable names: default, then the secure TLS
// 1.0-1.2 suites, then the insecure (legacy) ones.
func suiteNames() []string {
	names := []string{defaultCiphers}
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if !slices.Equal(cs.SupportedVersions, []uint16{tls.VersionTLS13}) {
			names = append(names, cs.Name)
		}
	}
	return names
}

// openSSLNames maps OpenSSL's names of common suites to Go's, for hints.
var openSSLNames = map[string]string{
	"AES256-SHA":                  "TLS_RSA_WITH_AES_256_CBC_SHA",
	"AES128-SHA":                  "TLS_RSA_WITH_AES_128_CBC_SHA",
	"AES128-GCM-SHA256":           "TLS_RSA_WITH_AES_128_GCM_SHA256",
	"AES256-GCM-SHA384":           "TLS_RSA_WITH_AES_256_GCM_SHA384",
	"AES128-SHA256":               "TLS_RSA_WITH_AES_128_CBC_SHA256",
	"DES-CBC3-SHA":                "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
	"ECDHE-RSA-AES128-GCM-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	"ECDHE-RSA-AES256-GCM-SHA384": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	"ECDHE-RSA-AES128-SHA":        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
	"ECDHE-RSA-AES256-SHA":        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
}

// pins reads tls.pin_sha256: base64 SHA-256 hashes of a SubjectPublicKeyInfo,
// optionally written as curl's "sha256//BASE64".
func (d *decoder) pins(s *section, t *TLS) {
	const want = `base64 SHA-256 public key hashes (44 characters, as in curl's --pinnedpubkey sha256//...)`
	items, lines, ok := s.list("pin_sha256", want)
	if !ok {
		return
	}
	path := s.sub("pin_sha256")
	if len(items) == 0 {
		d.errorf(d.lineOf(path), path, "want at least one pin; leave pin_sha256 out for no pinning")
		return
	}
	for i, it := range items {
		pin, err := ParsePin(it)
		if err != nil {
			d.errorf(lines[i], fmt.Sprintf("%s[%d]", path, i), "%v", err)
			continue
		}
		t.PinSHA256 = append(t.PinSHA256, pin)
	}
}

// ParsePin decodes one pin_sha256 value: the standard base64 of a 32-byte
// SHA-256 hash, optionally prefixed "sha256//".
func ParsePin(s string) ([32]byte, error) {
	var pin [32]byte
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "sha256//"))
	if err != nil || len(b) != len(pin) {
		shown := s
		if len(shown) > 64 {
			shown = shown[:64] + "..."
		}
		got := "not base64"
		if err == nil {
			got = fmt.Sprintf("%d bytes", len(b))
		}
		return pin, fmt.Errorf("want the base64 of a SHA-256 hash (32 bytes: 44 characters ending in =), got %q (%s); "+
			"`tlsrelay probe` prints the pin of a provider's key", shown, got)
	}
	copy(pin[:], b)
	return pin, nil
}

// PinOf returns the pin_sha256 value of a certificate's public key.
func PinOf(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// clientCert reads tls.cert_file and tls.key_file (both or neither) and
// loads the pair now, so that a bad pair fails at start, not at delivery.
func (d *decoder) clientCert(s *section, t *TLS) {
	var certFile, keyFile string
	certLine, certOK := s.str("cert_file", &certFile)
	keyLine, keyOK := s.str("key_file", &keyFile)
	switch {
	case s.has("cert_file") && !s.has("key_file"):
		d.errorf(certLine, s.sub("cert_file"), "set key_file too: a client certificate needs its private key (cert_file and key_file go together)")
		return
	case s.has("key_file") && !s.has("cert_file"):
		d.errorf(keyLine, s.sub("key_file"), "set cert_file too: a private key needs its client certificate (cert_file and key_file go together)")
		return
	case !certOK || !keyOK:
		return
	}
	cc, err := LoadClientCert(certFile, keyFile)
	if err == nil {
		t.ClientCert = cc
		return
	}
	line, path := certLine, s.sub("cert_file")
	if fe, ok := err.(*fileError); ok && fe.file == keyFile && fe.file != certFile {
		line, path = keyLine, s.sub("key_file")
	}
	d.errorf(line, path, "%v", err)
}

// insecure reads tls.insecure_skip_verify, a boolean.
func (d *decoder) insecure(s *section, t *TLS) {
	v, line, ok := s.scalar("insecure_skip_verify", "true or false", "!!bool")
	if !ok {
		return
	}
	if err := v.Decode(&t.InsecureSkipVerify); err != nil {
		d.errorf(line, s.sub("insecure_skip_verify"), "want true or false, got %s", describe(v))
	}
}

// loadCAs reads a PEM bundle into a pool; nil (and an error) if unusable.
func (d *decoder) loadCAs(line int, path, file string) *x509.CertPool {
	data, err := readSmallFile(file, maxCAFileBytes)
	if err != nil {
		d.errorf(line, path, "cannot read %q: %v", file, err)
		return nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		d.errorf(line, path, "want a PEM file of CA certificates (-----BEGIN CERTIFICATE-----), got none in %q", file)
		return nil
	}
	return pool
}

// certWarnDays is how close to expiry a client certificate gets a warning.
const certWarnDays = 14

// Warnings returns what an operator should know about a valid configuration,
// one sentence per line, for the caller to log at start (Load never logs):
// certificate verification turned off, TLS versions below 1.2, legacy cipher
// suites, and client certificates that expire within 14 days.
func (c *Config) Warnings() []string {
	out := append([]string(nil), c.warnings...)
	out = append(out, c.Admin.exposure()...)
	for _, name := range sortedNames(c.Providers) {
		out = append(out, c.Providers[name].tlsWarnings(time.Now())...)
	}
	return out
}

// tlsWarnings returns p's TLS warnings as of now.
func (p *Provider) tlsWarnings(now time.Time) []string {
	t := p.TLS
	if t.Mode == TLSNone {
		return nil
	}
	var out []string
	warn := func(format string, args ...any) {
		out = append(out, "provider "+p.Name+": "+fmt.Sprintf(format, args...))
	}
	switch {
	case t.InsecureSkipVerify && len(t.PinSHA256) == 0:
		warn("tls.insecure_skip_verify is on: the certificate is not verified; anyone on the path can read the mail and the password")
	case t.InsecureSkipVerify:
		warn("tls.insecure_skip_verify is on: the certificate chain and name are not verified, only the key pinned in tls.pin_sha256")
	}
	if t.MinVersion < tls.VersionTLS12 {
		warn("tls.min_version %q allows TLS versions below 1.2, which are deprecated (RFC 8996) and weak: keep it only if the provider needs it",
			versionName(t.MinVersion))
	}
	var legacy []string
	for _, name := range t.Ciphers {
		if cs := suiteByName(name); cs != nil && cs.Insecure {
			legacy = append(legacy, name)
		}
	}
	if len(legacy) > 0 {
		warn("tls.ciphers enables legacy suites for this provider only: %s (weak; RSA key exchange has no forward secrecy)", strings.Join(legacy, ", "))
	}
	if t.ClientCert != nil {
		if na := t.ClientCert.NotAfter(); !na.IsZero() && na.Sub(now) < certWarnDays*24*time.Hour {
			warn("the client certificate in tls.cert_file %q expires %s (%d days left): renew it; the relay reloads it without a restart",
				t.ClientCert.CertFile(), na.UTC().Format(time.RFC3339), int(na.Sub(now).Hours()/24))
		}
	}
	return out
}

// sortedNames returns the provider names in order.
func sortedNames(ps map[string]*Provider) []string {
	names := make([]string, 0, len(ps))
	for name := range ps {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// effectiveTLSOf renders a tls section for Effective: ciphers as written
// (so [default, ...] stays readable), pins in standard base64.
func effectiveTLSOf(t TLS) effectiveTLS {
	e := effectiveTLS{
		Mode:               string(t.Mode),
		MinVersion:         versionName(t.MinVersion),
		MaxVersion:         versionName(cmp.Or(t.MaxVersion, tls.VersionTLS13)),
		Ciphers:            t.Ciphers,
		ServerName:         t.ServerName,
		CAFile:             t.CAFile,
		InsecureSkipVerify: t.InsecureSkipVerify,
	}
	if e.Ciphers == nil {
		e.Ciphers = []string{defaultCiphers}
	}
	for _, pin := range t.PinSHA256 {
		e.PinSHA256 = append(e.PinSHA256, base64.StdEncoding.EncodeToString(pin[:]))
	}
	if t.ClientCert != nil {
		e.CertFile, e.KeyFile = t.ClientCert.CertFile(), t.ClientCert.KeyFile()
	}
	return e
}
