package upstream

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/policy"
)

// diagnose explains why the session failed and, where it can, finds the
// configuration change that works (Fix).
func (pr *prober) diagnose(err error) {
	if te := errWithOp(err, "tls"); te != nil {
		pr.diagnoseTLS(te)
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		pr.fail(err.Error())
		return
	}
	switch e.Op {
	case "config":
		pr.fail(e.Err.Error())
	case "dial":
		pr.fail(fmt.Sprintf("cannot connect to %s: %v", pr.p.Addr(), e.Err))
	case "greeting":
		pr.diagnoseGreeting(e)
	case "starttls":
		pr.diagnoseStartTLS(e)
	case "auth":
		pr.diagnoseAuth(e)
	default:
		pr.fail(e.Error())
	}
}

// errWithOp returns the first *Error with op in err's chain, or nil.
func errWithOp(err error, op string) *Error {
	for err != nil {
		if e, ok := err.(*Error); ok && e.Op == op {
			return e
		}
		err = errors.Unwrap(err)
	}
	return nil
}

// fail sets the reason, once.
func (pr *prober) fail(reason string) {
	if pr.r.Error == "" {
		pr.r.Error = probeText(reason)
	}
}

// key names a provider key in a fix: providers.NAME.KEY, or KEY alone when
// the policy came from the probe's flags.
func (pr *prober) key(k string) string {
	if pr.o.ConfigFile == "" {
		return k
	}
	return "providers." + pr.p.Name + "." + k
}

// setFix sets the one-line fix: change is written with key; flags, if not
// "", are the probe flags that try it (for a policy from flags).
func (pr *prober) setFix(change, flags string) {
	if pr.o.ConfigFile != "" {
		pr.r.Fix = probeText("in " + pr.o.ConfigFile + ", " + change)
		return
	}
	pr.r.Fix = "in the provider's section of relay.yaml, " + change
	if flags != "" {
		pr.r.Fix += " (try it here with " + flags + ")"
	}
	pr.r.Fix = probeText(pr.r.Fix)
}

// diagnoseGreeting explains a session that got no usable greeting. In mode
// starttls, a server that sends nothing may be waiting for a TLS handshake
// (implicit TLS): one handshake tells.
func (pr *prober) diagnoseGreeting(e *Error) {
	if e.Code != 0 {
		pr.fail("the server refused the session: " + e.reply())
		return
	}
	silent := pr.rec.received() == 0 && (probeTimedOut(e) || pr.d.ctx.Err() != nil)
	if !silent || pr.p.TLS.Mode != policy.TLSStartTLS {
		pr.fail("no greeting from the server: " + e.Err.Error())
		return
	}
	wait := pr.o.Timeout.String()
	if pr.newScanner().speaksTLS() {
		pr.fail(fmt.Sprintf("the server sent no greeting within %s but answers a TLS handshake at once: port %d speaks implicit TLS (port 465 style), not STARTTLS",
			wait, pr.p.Port))
		pr.setFix(pr.key("tls.mode")+": implicit", "-mode implicit")
		return
	}
	pr.fail(fmt.Sprintf("the server sent no greeting within %s, and no TLS handshake either: %v", wait, e.Err))
}

// probeTimedOut reports whether err is a network timeout or a deadline.
func probeTimedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, net.ErrClosed) ||
		errors.As(err, &ne) && ne.Timeout()
}

// diagnoseStartTLS explains a STARTTLS that was not offered or refused.
func (pr *prober) diagnoseStartTLS(e *Error) {
	if !errors.Is(e, errNoStartTLS) {
		pr.fail("STARTTLS failed: " + strings.TrimPrefix(e.Error(), "starttls: "))
		return
	}
	msg := fmt.Sprintf("the server does not offer STARTTLS on port %d (its EHLO: %s): the relay never sends credentials or mail in plaintext",
		pr.p.Port, strings.Join(pr.r.EHLOPreTLS, ", "))
	if pr.p.Port != 465 {
		msg += fmt.Sprintf("; if the provider has implicit TLS, it is usually on port 465: try `tlsrelay probe %s`",
			net.JoinHostPort(pr.p.Host, "465"))
	}
	pr.fail(msg)
}

// diagnoseAuth explains an AUTH failure: no mechanism in common (with the
// one that would work), or the server's refusal of the credentials.
func (pr *prober) diagnoseAuth(e *Error) {
	a := pr.p.Auth
	if !pr.r.Auth.Tried {
		pr.fail(e.Err.Error())
		var ok []string
		if a.OAuth2 != nil {
			ok = append(ok, mechXOAuth2)
		}
		if a.Password != "" {
			ok = append(ok, "PLAIN", "LOGIN")
		}
		for _, m := range ok {
			if slices.Contains(pr.r.AuthMechanisms, m) {
				pr.setFix(pr.key("auth.mechanism")+": "+strings.ToLower(m), "")
				return
			}
		}
		return
	}
	from := pr.r.Policy.CredentialsFrom
	if r := e.reply(); r != "" {
		pr.fail(fmt.Sprintf("AUTH %s refused: %s: check the credentials (username and the password from %s)",
			pr.r.AuthMechanism, r, from))
		return
	}
	pr.fail(fmt.Sprintf("AUTH %s failed: %v", pr.r.AuthMechanism, e.Err))
}

// diagnoseTLS explains a failed handshake: a plaintext server on an
// implicit TLS port, a certificate that does not verify, a client
// certificate the server wants, or else versions and suites (a scan).
func (pr *prober) diagnoseTLS(te *Error) {
	reason, _ := classify(te, pr.p)
	pr.r.TLSError = probeText(reason + " (" + rootCause(te).Error() + ")")
	var rhe tls.RecordHeaderError
	if errors.As(te, &rhe) && looksLikeSMTP(rhe.RecordHeader[:]) {
		pr.diagnosePlaintext(rhe)
		return
	}
	if pr.diagnoseCert(te) {
		return
	}
	code, alert := remoteAlert(te)
	hasCert := pr.p.TLS.ClientCert != nil
	switch {
	case alert && !hasCert && (pr.certAsked || code == alertCertificateRequired):
		pr.fail("client certificate required: the server asked for one and refused the handshake without it")
		pr.setFix(pr.key("tls.cert_file")+" and "+pr.key("tls.key_file")+
			": a client certificate (PEM) the provider accepts and its key", "")
		return
	case alert && hasCert && (code == alertCertificateRequired || code == alertBadCertificate ||
		code == alertUnknownCA || code == alertCertificateExpired):
		reason, fix := classify(te, pr.p)
		pr.fail(reason + ": " + fix)
		return
	}
	pr.diagnoseProtocol(te)
}

// rootCause returns the innermost error of err's chain.
func rootCause(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// looksLikeSMTP reports whether b starts like an SMTP reply: "220 ", "554-".
func looksLikeSMTP(b []byte) bool {
	return len(b) >= 4 && b[0] >= '2' && b[0] <= '5' && b[1] >= '0' && b[1] <= '9' &&
		b[2] >= '0' && b[2] <= '9' && (b[3] == ' ' || b[3] == '-')
}

// diagnosePlaintext explains an implicit-TLS handshake answered with a
// plaintext SMTP greeting: the port speaks STARTTLS (or no TLS at all).
func (pr *prober) diagnosePlaintext(rhe tls.RecordHeaderError) {
	greeting, offered, err := pr.newScanner().peekPlain()
	if greeting == "" {
		greeting = probeText(string(rhe.RecordHeader[:])) + "..."
	}
	pr.r.Greeting = greeting
	said := fmt.Sprintf("the server greeted in plaintext (%q) instead of starting TLS", greeting)
	switch {
	case err == nil && offered:
		pr.fail(fmt.Sprintf("%s: port %d speaks STARTTLS, not implicit TLS", said, pr.p.Port))
		pr.setFix(pr.key("tls.mode")+": starttls", "-mode starttls")
	case err == nil:
		pr.fail(fmt.Sprintf("%s, and offers no STARTTLS: port %d has no TLS at all; ask the provider for its TLS port", said, pr.p.Port))
	default:
		pr.fail(fmt.Sprintf("%s: port %d is not implicit TLS; it may speak STARTTLS (tls.mode: starttls), but a second look failed: %v",
			said, pr.p.Port, err))
	}
}

// diagnoseCert explains a certificate that did not verify; it reports
// false if te is not about the certificate.
func (pr *prober) diagnoseCert(te *Error) bool {
	var (
		pinErr  *PinError
		invalid x509.CertificateInvalidError
		name    x509.HostnameError
		unknown x509.UnknownAuthorityError
		cve     *tls.CertificateVerificationError
	)
	isPin, isInvalid := errors.As(te, &pinErr), errors.As(te, &invalid)
	isName, isUnknown := errors.As(te, &name), errors.As(te, &unknown)
	if !isPin && !isInvalid && !isName && !isUnknown {
		return false
	}
	var chain []*x509.Certificate
	if errors.As(te, &cve) {
		chain = cve.UnverifiedCertificates
	} else if pr.tc != nil {
		chain = pr.tc.ConnectionState().PeerCertificates
	}
	if len(chain) == 0 {
		chain = pr.newScanner().readChain()
	}
	pr.setChain(chain)
	switch {
	case isPin:
		pr.pinMismatch(pinErr)
	case isInvalid:
		pr.certInvalid(invalid)
	case isName:
		pr.nameMismatch(name)
	default:
		pr.unknownAuthority(unknown, chain)
	}
	return true
}

// readChain reads the server's chain with a handshake that does not verify
// it (the provider's versions and suites): only to show the certificates,
// nothing is sent over it.
func (s *scanner) readChain() []*x509.Certificate {
	t := s.pr.p.TLS
	cfg := s.config(cmp.Or(t.MinVersion, tls.VersionTLS12), cmp.Or(t.MaxVersion, tls.VersionTLS13), t.CipherSuites)
	st, err := s.handshake(cfg, s.pr.p.TLS.Mode)
	if err != nil {
		return nil
	}
	return st.PeerCertificates
}

// pinMismatch: the key is not pinned; the new pin is printed to add.
func (pr *prober) pinMismatch(e *PinError) {
	pr.r.VerifyError = "pin mismatch: the server's key has pin " + e.Pin
	pr.fail(fmt.Sprintf("certificate pin mismatch: the key of %q has pin %s, which is not in tls.pin_sha256", e.Subject, e.Pin))
	pins := []string{}
	for _, p := range pr.p.TLS.PinSHA256 {
		pins = append(pins, fmt.Sprintf("%q", pinText(p)))
	}
	pins = append(pins, fmt.Sprintf("%q", e.Pin))
	pr.setFix(pr.key("tls.pin_sha256")+": ["+strings.Join(pins, ", ")+
		"] (only if the provider changed its key: confirm the new pin with the provider first)", "")
}

// certInvalid: expired or not yet valid (nothing to fix here), or another
// defect of the certificate.
func (pr *prober) certInvalid(e x509.CertificateInvalidError) {
	c := e.Cert
	switch {
	case e.Reason == x509.Expired && c != nil && time.Now().After(c.NotAfter):
		day := c.NotAfter.UTC().Format("2006-01-02 15:04 MST")
		pr.r.VerifyError = "expired on " + day
		pr.fail(fmt.Sprintf("the certificate of %q expired on %s; nothing to fix on our side: the provider must renew it (check this machine's clock too)",
			c.Subject.String(), day))
	case e.Reason == x509.Expired && c != nil:
		day := c.NotBefore.UTC().Format("2006-01-02 15:04 MST")
		pr.r.VerifyError = "not valid before " + day
		pr.fail(fmt.Sprintf("the certificate of %q is not valid before %s: check this machine's clock", c.Subject.String(), day))
	default:
		pr.r.VerifyError = "invalid: " + e.Error()
		pr.fail("the certificate is invalid: " + e.Error())
	}
}
