package upstream

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/policy"
)

// serverName is the name the certificate must carry: tls.server_name, or the
// host we dial.
func serverName(p *policy.Provider) string {
	if p.TLS.ServerName != "" {
		return p.TLS.ServerName
	}
	return p.Host
}

func (d *attempt) serverName() string { return serverName(d.p) }

// TLSConfig is a provider's TLS policy as a crypto/tls client config: the
// one builder for delivery and for `tlsrelay probe`. It sets the server
// name, the roots (nil = system), the versions (TLS 1.2 to 1.3 unless the
// policy says otherwise), the TLS 1.0-1.2 suites (nil = Go's defaults; a
// legacy suite is used only because this config lists it, never through
// GODEBUG), the SPKI pins (checked in VerifyConnection, after the chain
// check, or alone with insecure_skip_verify) and the client certificate,
// reloaded when its files change. InsecureSkipVerify is set only when the
// provider's tls.insecure_skip_verify is, which policy.Config.Warnings reports.
func TLSConfig(p *policy.Provider) *tls.Config { return tlsConfig(p, nil) }

// tlsConfig is TLSConfig; log, if not nil, gets a warning when a changed
// client certificate cannot be loaded (the previous one stays in use).
func tlsConfig(p *policy.Provider, log *slog.Logger) *tls.Config {
	t := p.TLS
	cfg := &tls.Config{
		ServerName:         serverName(p),
		RootCAs:            t.RootCAs, // nil = the system roots
		MinVersion:         t.MinVersion,
		MaxVersion:         t.MaxVersion,
		CipherSuites:       slices.Clone(t.CipherSuites),
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // opt-in per provider, warned at start and by probe
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if len(t.PinSHA256) > 0 {
		pins := slices.Clone(t.PinSHA256)
		cfg.VerifyConnection = func(cs tls.ConnectionState) error { return checkPin(cs, pins) }
	}
	if cc := t.ClientCert; cc != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, err := cc.Certificate()
			if err != nil && log != nil {
				log.Warn("client certificate reload failed", "provider", p.Name, "cert_file", cc.CertFile(), "error", err)
			}
			if cert == nil {
				cert = &tls.Certificate{} // send none; the server decides
			}
			return cert, nil
		}
	}
	return cfg
}

// PinError says that the server's key matches none of tls.pin_sha256.
type PinError struct {
	Pin     string // the server's pin, base64 (not a secret: its public key's hash)
	Subject string // the leaf's subject
}

func (e *PinError) Error() string {
	return fmt.Sprintf("certificate pin mismatch: the key of %q has pin %s, which is not in tls.pin_sha256", e.Subject, e.Pin)
}

// checkPin checks that the leaf's SubjectPublicKeyInfo hashes to one of pins.
// Only the leaf counts (as curl's --pinnedpubkey): with insecure_skip_verify
// the rest of the chain is unverified, so anyone could send a pinned CA there.
func checkPin(cs tls.ConnectionState, pins [][32]byte) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("certificate pin mismatch: the server sent no certificate")
	}
	leaf := cs.PeerCertificates[0]
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	if slices.Contains(pins, sum) {
		return nil
	}
	return &PinError{Pin: base64.StdEncoding.EncodeToString(sum[:]), Subject: leaf.Subject.String()}
}

// checkState re-checks a completed handshake against the policy (defense in
// depth: crypto/tls enforces all of it already).
func checkState(p *policy.Provider, st tls.ConnectionState) error {
	t := p.TLS
	minV, maxV := t.MinVersion, t.MaxVersion
	if minV == 0 {
		minV = tls.VersionTLS12
	}
	switch {
	case !st.HandshakeComplete:
		return errors.New("handshake incomplete")
	case st.Version < minV || (maxV != 0 && st.Version > maxV):
		return fmt.Errorf("TLS version not allowed: %s was negotiated", tls.VersionName(st.Version))
	case st.Version < tls.VersionTLS13 && t.CipherSuites != nil && !slices.Contains(t.CipherSuites, st.CipherSuite):
		return fmt.Errorf("cipher suite not allowed: %s was negotiated", tls.CipherSuiteName(st.CipherSuite))
	case len(st.PeerCertificates) == 0:
		return errors.New("the server sent no certificate")
	case !t.InsecureSkipVerify && len(st.VerifiedChains) == 0:
		return errors.New("certificate not verified")
	}
	return nil
}

// tlsErr is a TLS policy failure: temporary, with the exact reason and where
// to look next. It never leads to a plaintext attempt.
func (d *attempt) tlsErr(err error) *Error {
	return &Error{Op: "tls", Err: fmt.Errorf(
		"provider %s at %s (server name %q): %w; run `tlsrelay probe %s` to see what the server offers",
		d.name, d.p.Addr(), d.serverName(), err, d.name)}
}

// implicitTLS runs the handshake on the fresh connection, then the SMTP
// session inside it.
func (d *attempt) implicitTLS() error {
	tc := tls.Client(d.conn, tlsConfig(d.p, d.log))
	if err := d.handshake(tc); err != nil {
		return err
	}
	return d.hello(newSMTPConn(&alertConn{Conn: tc, d: d}))
}

// startTLS says EHLO in plaintext, requires STARTTLS, upgrades and says EHLO
// again inside TLS (RFC 3207 4.2). go-smtp v0.25.1 exports no StartTLS on an
// existing client, and its NewClientStartTLS would say EHLO as "localhost"
// and handshake lazily (security.md a2), so the STARTTLS command and the
// handshake are done here.
func (d *attempt) startTLS() error {
	pre := newSMTPConn(d.conn)
	if err := d.hello(pre); err != nil {
		return err
	}
	if ok, _ := d.sc.Extension("STARTTLS"); !ok {
		return &Error{Op: "starttls", Err: fmt.Errorf(
			"provider %s did not offer STARTTLS; refusing to send in plaintext (run `tlsrelay probe %s` to see what the server offers)",
			d.name, d.name)}
	}
	d.conn.expect("reply to STARTTLS", d.t.Command)
	if err := startTLS(pre); err != nil {
		e := setupErr("starttls", err)
		if e.Code == 0 {
			d.sc = nil // out of step: no QUIT
		}
		return e
	}
	d.sc = nil // the plaintext client is done; its buffer is dropped
	tc := tls.Client(d.conn, tlsConfig(d.p, d.log))
	if err := d.handshake(tc); err != nil {
		return err
	}
	return d.hello(afterStartTLS(&alertConn{Conn: tc, d: d}))
}

// handshake completes and checks the TLS handshake before anything else is
// sent. go-smtp's own handshake is lazy, and its TLSConnectionState reports
// ok before it (G13), so it is done here, bounded by ctx and, whole, by the
// connect timeout.
func (d *attempt) handshake(tc *tls.Conn) error {
	d.conn.await("TLS handshake", d.t.Connect)
	if err := tc.HandshakeContext(d.ctx); err != nil {
		return d.tlsErr(explain(err, d.p))
	}
	st := tc.ConnectionState()
	if err := checkState(d.p, st); err != nil {
		return d.tlsErr(err)
	}
	d.secure = true
	d.tlsInfo = tls.VersionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite)
	d.log.Debug("upstream tls", "tls", d.tlsInfo, "server_name", d.serverName())
	d.c.expiry.observe(d.name, st.PeerCertificates[0], d.log)
	return nil
}

// alertConn turns a TLS alert that arrives after the handshake into the
// reason it stands for. In TLS 1.3 the client's handshake ends before the
// server has checked the client certificate, so a refusal (certificate
// required, bad or unknown) arrives with the first read: the greeting.
type alertConn struct {
	*tls.Conn
	d *attempt
}

func (c *alertConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if _, ok := remoteAlert(err); ok {
		err = c.d.tlsErr(explain(err, c.d.p))
	}
	return n, err
}

var _ net.Conn = (*alertConn)(nil)

// TLS alert codes (RFC 8446 6, RFC 5246 7.2) that explain names.
const (
	alertHandshakeFailure     = 40
	alertBadCertificate       = 42
	alertCertificateExpired   = 45
	alertUnknownCA            = 48
	alertProtocolVersion      = 70
	alertInsufficientSecurity = 71
	alertCertificateRequired  = 116
)

// remoteAlert returns the code of a TLS alert the server sent. crypto/tls
// reports one as a *net.OpError "remote error" around its unexported alert
// type, a uint8.
func remoteAlert(err error) (uint8, bool) {
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "remote error" || oe.Err == nil {
		return 0, false
	}
	if v := reflect.ValueOf(oe.Err); v.Kind() == reflect.Uint8 {
		return uint8(v.Uint()), true
	}
	return 0, true
}

// explain names what failed in a handshake error, with the fix where there
// is one. The error stays wrapped, so errors.As still finds its type.
func explain(err error, p *policy.Provider) error {
	reason, fix := classify(err, p)
	switch {
	case reason == "":
		return fmt.Errorf("%w; %s", err, fix)
	case fix == "":
		return fmt.Errorf("%s: %w", reason, err)
	}
	return fmt.Errorf("%s: %w; %s", reason, err, fix)
}

// classify returns the reason for a handshake failure and its fix.
func classify(err error, p *policy.Provider) (reason, fix string) {
	var (
		pinErr  *PinError
		invalid x509.CertificateInvalidError
		name    x509.HostnameError
		unknown x509.UnknownAuthorityError
	)
	switch {
	case errors.As(err, &pinErr):
		return "", "if the provider changed its key, add the new pin to tls.pin_sha256 (`tlsrelay probe` prints it)"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired && invalid.Cert != nil:
		if time.Now().After(invalid.Cert.NotAfter) {
			return "certificate expired on " + invalid.Cert.NotAfter.UTC().Format(time.RFC3339),
				"the provider must renew it (check this machine's clock too)"
		}
		return "certificate not yet valid (from " + invalid.Cert.NotBefore.UTC().Format(time.RFC3339) + ")", "check this machine's clock"
	case errors.As(err, &invalid):
		return "certificate invalid", ""
	case errors.As(err, &name):
		return fmt.Sprintf("certificate name mismatch: it is not valid for %q", name.Host),
			"set tls.server_name to a name the certificate carries (`tlsrelay probe` lists them), or correct host"
	case errors.As(err, &unknown):
		return "certificate signed by an unknown authority",
			"set tls.ca_file to the provider's CA certificates, or pin its key with tls.pin_sha256"
	}
	if code, ok := remoteAlert(err); ok {
		return alertReason(code, p)
	}
	versions := versionRange(p.TLS)
	switch msg := err.Error(); {
	case strings.Contains(msg, "unsupported protocol version"):
		return "TLS version not allowed: the server chose a version outside " + versions + " (tls.min_version, tls.max_version)", ""
	case strings.Contains(msg, "unconfigured cipher suite"):
		return "no shared cipher suite: the server chose a suite that tls.ciphers does not allow", ""
	}
	return "TLS handshake failed", ""
}

// alertReason explains an alert the server sent during the handshake.
func alertReason(code uint8, p *policy.Provider) (reason, fix string) {
	t := p.TLS
	hasCert := t.ClientCert != nil
	switch {
	case code == alertProtocolVersion:
		return "TLS version not allowed: the server accepts none of " + versionRange(t),
			"set tls.min_version or tls.max_version to what the provider supports (below 1.2 is weak)"
	case code == alertHandshakeFailure || code == alertInsufficientSecurity:
		offered := "Go's defaults, which leave out RSA key exchange"
		if t.Ciphers != nil {
			offered = "tls.ciphers " + strings.Join(t.Ciphers, ", ")
		}
		return "no shared cipher suite: the server accepts none of the suites offered (" + offered + ")",
			"if the server speaks only RSA key exchange, add its suite to tls.ciphers, e.g. [default, TLS_RSA_WITH_AES_256_CBC_SHA]"
	case (code == alertCertificateRequired || code == alertBadCertificate) && !hasCert:
		return "client certificate required", "set tls.cert_file and tls.key_file to a client certificate the provider accepts"
	case code == alertCertificateRequired || code == alertBadCertificate || code == alertUnknownCA || code == alertCertificateExpired:
		return "client certificate refused", "check that the provider trusts the certificate in tls.cert_file (its CA, its expiry)"
	}
	return "the server refused the TLS handshake", ""
}

// versionRange renders the versions t allows: "TLS 1.2 to 1.3", "TLS 1.2".
func versionRange(t policy.TLS) string {
	lo, hi := versionName(t.MinVersion, tls.VersionTLS12), versionName(t.MaxVersion, tls.VersionTLS13)
	if lo == hi {
		return "TLS " + lo
	}
	return "TLS " + lo + " to " + hi
}

// versionName renders a TLS version as policy writes it ("1.2"); 0 is def.
func versionName(v, def uint16) string {
	if v == 0 {
		v = def
	}
	switch v {
	case tls.VersionTLS10:
		return "1.0"
	case tls.VersionTLS11:
		return "1.1"
	case tls.VersionTLS12:
		return "1.2"
	case tls.VersionTLS13:
		return "1.3"
	}
	return tls.VersionName(v)
}
