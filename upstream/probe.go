package upstream

// Probe: what `tlsrelay probe` runs against one provider.
//
// The session is delivery's own: the same dial (Client.dial), the same
// policy checks (delivery.configure), the same TLS config (tlsConfig), the
// same handshake and its checks (delivery.handshake: checkState, pins,
// expiry watch), STARTTLS required in mode starttls, the same EHLO
// (delivery.hello), the same mechanism choice (delivery.mechanism) and AUTH
// (delivery.auth, only after verified TLS). What the probe adds sits beside
// that path, never in it: a recorder under go-smtp's client that keeps the
// server's replies (never what we send, so no credential can reach a
// report), timings, and, when something fails, a diagnosis with extra
// connections that send nothing but EHLO, STARTTLS and TLS handshakes
// (probe_diag.go, probe_scan.go).

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/delivery"
	"github.com/tlsrelay/tlsrelay/policy"
)

// Probe defaults.
const (
	DefaultProbeTimeout     = 10 * time.Second // the whole session
	DefaultProbeScanTimeout = 2 * time.Second  // each diagnostic handshake
)

// ProbeOptions configure Probe.
type ProbeOptions struct {
	// Auth tries AUTH with the provider's credentials (then QUIT). Without
	// it no credential is sent at all.
	Auth      bool
	HelloName string        // EHLO name; "" = "localhost"
	Timeout   time.Duration // the whole session, and each read and write; 0 = 10s
	// ScanTimeout bounds each handshake of the diagnosis that runs after a
	// failure (at most maxScanHandshakes of them); 0 = 2s.
	ScanTimeout time.Duration
	// ConfigFile is the file the provider comes from, named in the fix
	// ("in relay.yaml, providers.NAME.tls.ciphers: ..."); "" means the
	// policy came from the probe's flags, and the fix names those too.
	ConfigFile string
	// Warnings are the configuration's warnings about this provider
	// (policy.Config.Warnings); the report carries them as they are.
	Warnings []string
	// Dial opens TCP connections; nil = a net.Dialer. A seam for tests.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// ProbeReport is what Probe found. Error is "" when the provider works as
// its policy says; otherwise it is the reason, and Fix, when one is known,
// the configuration change that would work. No field ever holds a secret.
type ProbeReport struct {
	Provider        string      `json:"provider"`
	Addr            string      `json:"addr"`
	Policy          ProbePolicy `json:"policy"`
	OK              bool        `json:"ok"`
	Connected       bool        `json:"connected"` // the TCP connection was made
	ConnectMS       float64     `json:"connect_ms"`
	Greeting        string      `json:"greeting"`
	EHLOPreTLS      []string    `json:"ehlo_pre_tls,omitempty"`     // mode starttls: the plaintext EHLO
	StartTLSOffered *bool       `json:"starttls_offered,omitempty"` // mode starttls
	TLS             *ProbeTLS   `json:"tls"`
	TLSError        string      `json:"tls_error,omitempty"` // why the session's handshake failed
	Chain           []ProbeCert `json:"chain"`
	Pin             string      `json:"pin_sha256,omitempty"` // the leaf's, for tls.pin_sha256
	Verified        bool        `json:"verified"`
	VerifyError     string      `json:"verify_error,omitempty"`
	EHLO            []string    `json:"ehlo"` // after TLS: extensions with their parameters
	AuthMechanisms  []string    `json:"auth_mechanisms"`
	AuthMechanism   string      `json:"auth_mechanism,omitempty"` // what the policy picks among them
	Auth            ProbeAuth   `json:"auth"`
	Scan            *ProbeScan  `json:"scan,omitempty"` // what the server accepts, after a handshake failure
	Warnings        []string    `json:"warnings"`
	Error           string      `json:"error,omitempty"`
	Fix             string      `json:"fix,omitempty"`
}

// ProbePolicy is the provider's policy as the probe used it.
type ProbePolicy struct {
	Mode               string   `json:"mode"`
	MinVersion         string   `json:"min_version"`
	MaxVersion         string   `json:"max_version"`
	Ciphers            []string `json:"ciphers"`
	ServerName         string   `json:"server_name"`
	CAFile             string   `json:"ca_file,omitempty"` // "" = system roots
	Pins               int      `json:"pins"`
	ClientCert         bool     `json:"client_cert"`
	InsecureSkipVerify bool     `json:"insecure_skip_verify"`
	AuthMechanism      string   `json:"auth_mechanism,omitempty"` // "" = no AUTH
	CredentialsFrom    string   `json:"credentials_from,omitempty"`
}

// ProbeTLS is the negotiated TLS session.
type ProbeTLS struct {
	Version     string  `json:"version"`
	Cipher      string  `json:"cipher"`
	HandshakeMS float64 `json:"handshake_ms"`
}

// ProbeCert is one certificate of the chain the server sent.
type ProbeCert struct {
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	DNSNames    []string  `json:"dns_names,omitempty"`
	IPAddresses []string  `json:"ip_addresses,omitempty"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	DaysLeft    int       `json:"days_left"`
	PinSHA256   string    `json:"pin_sha256,omitempty"` // the leaf's only: pins match the leaf
}

// ProbeAuth is the AUTH attempt (ProbeOptions.Auth).
type ProbeAuth struct {
	Tried bool   `json:"tried"`
	OK    bool   `json:"ok"`
	Reply string `json:"reply,omitempty"` // the server's final reply to AUTH
}

// ProbeScan is what the diagnostic handshakes found the server accepts.
type ProbeScan struct {
	Versions   []string `json:"versions"`            // accepted with every suite Go knows
	Refused    []string `json:"refused"`             // refused likewise
	SuitesAt   string   `json:"suites_at,omitempty"` // the version scanned suite by suite
	Suites     []string `json:"suites,omitempty"`    // accepted at SuitesAt
	Handshakes int      `json:"handshakes"`
}

// prober is the state of one Probe call.
type prober struct {
	o      ProbeOptions
	p      *policy.Provider
	parent context.Context // the caller's: the diagnosis outlives the session's deadline
	d      *attempt
	r      *ProbeReport
	tc     *tls.Conn // the session's TLS connection, once made
	// certAsked: the server asked for a client certificate in a handshake
	// of the session or of the diagnosis.
	certAsked bool
	rec       *replyRecorder // the recorder of the current phase
}

// Probe connects to p exactly as delivery would, reports what it sees, and
// on failure diagnoses what the server accepts and which change of p's
// policy would work. It never returns nil; report.Error says whether it failed.
func Probe(ctx context.Context, p *policy.Provider, o ProbeOptions) *ProbeReport {
	if o.Timeout <= 0 {
		o.Timeout = DefaultProbeTimeout
	}
	if o.ScanTimeout <= 0 {
		o.ScanTimeout = DefaultProbeScanTimeout
	}
	r := &ProbeReport{Provider: p.Name, Addr: p.Addr(), Policy: probePolicy(p),
		Warnings: append([]string{}, o.Warnings...), EHLO: []string{}, AuthMechanisms: []string{}, Chain: []ProbeCert{}}
	c := &Client{Providers: map[string]*policy.Provider{p.Name: p}, HelloName: o.HelloName,
		Timeout: o.Timeout, Dial: o.Dial, Log: slog.New(slog.DiscardHandler)}
	pr := &prober{o: o, p: p, parent: ctx, r: r, d: &attempt{
		c: c, ctx: ctx, name: p.Name, log: c.Log,
		// A placeholder that configure wants; the probe never sends a message.
		msg: &delivery.Message{Body: strings.NewReader("")},
	}}
	defer pr.d.bound("probe session", o.Timeout)() // the session's context and deadline
	if err := pr.session(); err != nil {
		pr.diagnose(err)
	}
	pr.finish()
	return r
}

// session runs delivery's steps up to AUTH, recording what it sees.
func (pr *prober) session() (err error) {
	d := pr.d
	if err := d.configure(); err != nil {
		return err
	}
	start := time.Now()
	if err := d.connect(); err != nil {
		return err
	}
	pr.r.Connected, pr.r.ConnectMS = true, probeMillis(time.Since(start))
	defer func() {
		var e *Error
		if errors.As(err, &e) && e.Op == "auth" && !pr.r.Auth.Tried && d.sc != nil {
			d.close(nil) // no mechanism in common, nothing sent: in step, say QUIT
			return
		}
		d.close(err)
	}()
	switch d.p.TLS.Mode {
	case policy.TLSImplicit:
		err = pr.implicitTLS()
	case policy.TLSStartTLS:
		err = pr.startTLS()
	default:
		err = pr.plaintext()
	}
	if err != nil {
		return err
	}
	return pr.auth()
}

// implicitTLS is delivery.implicitTLS with the replies recorded.
func (pr *prober) implicitTLS() error {
	if err := pr.handshake(); err != nil {
		return err
	}
	pr.rec = &replyRecorder{Conn: &alertConn{Conn: pr.tc, d: pr.d}}
	err := pr.d.hello(newSMTPConn(pr.rec))
	pr.r.Greeting = pr.rec.text(0)
	pr.r.EHLO = ehloExtensions(pr.rec.lines(1))
	return err
}

// startTLS is delivery.startTLS with the replies recorded: plaintext EHLO,
// STARTTLS required, handshake, EHLO inside TLS.
func (pr *prober) startTLS() error {
	d := pr.d
	pre := &replyRecorder{Conn: d.conn}
	pr.rec = pre
	conn := newSMTPConn(pre)
	err := d.hello(conn)
	pr.r.Greeting = pre.text(0)
	if err != nil {
		return err
	}
	pr.r.EHLOPreTLS = ehloExtensions(pre.lines(1))
	offered, _ := d.sc.Extension("STARTTLS")
	pr.r.StartTLSOffered = &offered
	if !offered {
		return &Error{Op: "starttls", Err: errNoStartTLS}
	}
	d.conn.expect("reply to STARTTLS", d.t.Command)
	if err := startTLS(conn); err != nil {
		e := setupErr("starttls", err)
		if e.Code == 0 {
			d.sc = nil // out of step: no QUIT
		}
		return e
	}
	d.sc = nil // the plaintext client is done
	if err := pr.handshake(); err != nil {
		return err
	}
	pr.rec = &replyRecorder{Conn: &alertConn{Conn: pr.tc, d: d}}
	err = d.hello(afterStartTLS(pr.rec))
	pr.r.EHLO = ehloExtensions(pr.rec.lines(1))
	return err
}

var errNoStartTLS = errors.New("the server did not offer STARTTLS")

// plaintext is mode none (a loopback host only; policy and configure check).
func (pr *prober) plaintext() error {
	pr.rec = &replyRecorder{Conn: pr.d.conn}
	err := pr.d.hello(newSMTPConn(pr.rec))
	pr.r.Greeting = pr.rec.text(0)
	pr.r.EHLO = ehloExtensions(pr.rec.lines(1))
	return err
}

// handshake runs delivery's handshake on a TLS client with the provider's
// config and records the session, the chain and the verification.
func (pr *prober) handshake() error {
	cfg := tlsConfig(pr.p, pr.d.log)
	watchCertRequest(cfg, &pr.certAsked)
	pr.tc = tls.Client(pr.d.conn, cfg)
	start := time.Now()
	err := pr.d.handshake(pr.tc)
	if err != nil {
		return err
	}
	st := pr.tc.ConnectionState()
	pr.r.TLS = &ProbeTLS{Version: tls.VersionName(st.Version), Cipher: tls.CipherSuiteName(st.CipherSuite),
		HandshakeMS: probeMillis(time.Since(start))}
	pr.setChain(st.PeerCertificates)
	pr.r.Verified = len(st.VerifiedChains) > 0
	if !pr.r.Verified {
		pr.r.VerifyError = "not verified: tls.insecure_skip_verify is on (chain and name not checked)"
		if len(pr.p.TLS.PinSHA256) > 0 {
			pr.r.VerifyError += "; the pin matched"
		}
	}
	return nil
}

// watchCertRequest makes cfg set *asked when the server asks for a client
// certificate; what is sent stays the same (the policy's certificate, or
// none).
func watchCertRequest(cfg *tls.Config, asked *bool) {
	get := cfg.GetClientCertificate
	cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		*asked = true
		if get == nil {
			return &tls.Certificate{}, nil
		}
		return get(cri)
	}
}

// auth reports the mechanisms offered and the one the policy picks, and
// with ProbeOptions.Auth runs delivery's AUTH.
func (pr *prober) auth() error {
	d := pr.d
	if ok, list := d.sc.Extension("AUTH"); ok {
		pr.r.AuthMechanisms = strings.Fields(strings.ToUpper(list))
	}
	if d.p.Auth.Mechanism == "" {
		return nil
	}
	mech, err := d.mechanism()
	if err != nil {
		return err
	}
	pr.r.AuthMechanism = mech
	if !pr.o.Auth {
		return nil
	}
	pr.r.Auth.Tried = true
	err = d.auth()
	var e *Error
	switch {
	case err == nil:
		pr.r.Auth.OK = true
		pr.r.Auth.Reply = pr.rec.text(-1)
	case errors.As(err, &e) && e.reply() != "":
		pr.r.Auth.Reply = probeText(e.reply())
	}
	return err
}

// setChain records the certificates the server sent, leaf first.
func (pr *prober) setChain(certs []*x509.Certificate) {
	pr.r.Chain = []ProbeCert{}
	now := time.Now()
	for i, c := range certs {
		pc := ProbeCert{Subject: probeText(c.Subject.String()), Issuer: probeText(c.Issuer.String()),
			NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), DaysLeft: int(c.NotAfter.Sub(now).Hours() / 24)}
		for _, n := range c.DNSNames {
			pc.DNSNames = append(pc.DNSNames, probeText(n))
		}
		for _, ip := range c.IPAddresses {
			pc.IPAddresses = append(pc.IPAddresses, ip.String())
		}
		if i == 0 {
			pc.PinSHA256 = policy.PinOf(c)
			pr.r.Pin = pc.PinSHA256
		}
		pr.r.Chain = append(pr.r.Chain, pc)
	}
}

// finish sets OK and adds the warnings the session itself found.
func (pr *prober) finish() {
	r := pr.r
	r.OK = r.Error == ""
	if len(r.Chain) > 0 && r.Verified && r.Chain[0].DaysLeft < int(expiryWarnWithin.Hours()/24) {
		r.Warnings = append(r.Warnings, "the server's certificate expires "+
			r.Chain[0].NotAfter.Format(time.RFC3339)+": the provider must renew it soon")
	}
}

// probePolicy summarizes p's policy for the report (no secrets).
func probePolicy(p *policy.Provider) ProbePolicy {
	t := p.TLS
	pp := ProbePolicy{Mode: string(t.Mode), MinVersion: versionName(t.MinVersion, tls.VersionTLS12),
		MaxVersion: versionName(t.MaxVersion, tls.VersionTLS13), Ciphers: t.Ciphers, ServerName: serverName(p),
		CAFile: t.CAFile, Pins: len(t.PinSHA256), ClientCert: t.ClientCert != nil,
		InsecureSkipVerify: t.InsecureSkipVerify, AuthMechanism: p.Auth.Mechanism, CredentialsFrom: p.Auth.PasswordFrom}
	if pp.Ciphers == nil {
		pp.Ciphers = []string{"default"}
	}
	if o := p.Auth.OAuth2; o != nil && pp.CredentialsFrom == "" {
		pp.CredentialsFrom = "oauth2 token from " + tokenHost(o)
	}
	return pp
}

// probeMillis renders a duration in milliseconds, to 0.1 ms.
func probeMillis(d time.Duration) float64 {
	return float64(d.Round(100*time.Microsecond).Microseconds()) / 1000
}
