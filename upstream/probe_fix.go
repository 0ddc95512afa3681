package upstream

import (
	"bytes"
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/tlsrelay/tlsrelay/policy"
)

// nameMismatch: the certificate is for other names. tls.server_name is
// suggested only for a name that plausibly belongs to the host (its domain,
// or any name when the host is an IP address): otherwise it might be
// someone in the middle, and the fix would hide it.
func (pr *prober) nameMismatch(e x509.HostnameError) {
	names := certNames(e.Certificate)
	valid := strings.Join(names, ", ")
	pr.r.VerifyError = fmt.Sprintf("name mismatch: valid for %s, not for %q", valid, e.Host)
	reason := fmt.Sprintf("certificate name mismatch: it is valid for %s, not for %q", valid, e.Host)
	if name := plausibleName(pr.p.Host, names); name != "" {
		pr.fail(reason)
		pr.setFix(pr.key("tls.server_name")+": "+name, "-server-name "+name)
		return
	}
	pr.fail(reason + fmt.Sprintf("; none of these names belongs to the domain of %s: check host (a wrong host, or someone in the middle) before setting tls.server_name", pr.p.Host))
}

// certNames returns a certificate's DNS and IP names (its subject's common
// name if it has none).
func certNames(c *x509.Certificate) []string {
	if c == nil {
		return nil
	}
	names := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = append(names, c.Subject.CommonName)
	}
	return names
}

// plausibleName returns a name of the certificate that could be set as
// tls.server_name for host, or "".
func plausibleName(host string, names []string) string {
	isIP := net.ParseIP(host) != nil
	for _, n := range names {
		if strings.Contains(n, "*") || net.ParseIP(n) != nil || strings.EqualFold(n, host) {
			continue
		}
		if isIP || domainOf(n) == domainOf(host) {
			return n
		}
	}
	return ""
}

// domainOf approximates a name's registered domain: its last two labels,
// or three under a generic second level (example.com.cn, example.co.uk).
func domainOf(name string) string {
	labels := strings.Split(strings.ToLower(strings.TrimSuffix(name, ".")), ".")
	n := 2
	if len(labels) >= 3 && slices.Contains([]string{"com", "net", "org", "co", "ac", "edu", "gov"}, labels[len(labels)-2]) {
		n = 3
	}
	if len(labels) <= n {
		return strings.Join(labels, ".")
	}
	return strings.Join(labels[len(labels)-n:], ".")
}

// unknownAuthority: the chain does not lead to a trusted root. The fix is
// the provider's CA in tls.ca_file, or the leaf's pin with the chain check
// off (pins replace the chain only with insecure_skip_verify).
func (pr *prober) unknownAuthority(e x509.UnknownAuthorityError, chain []*x509.Certificate) {
	what := "the chain leads to no authority this machine trusts"
	if len(chain) > 0 {
		leaf, top := chain[0], chain[len(chain)-1]
		what = fmt.Sprintf("the chain ends at %q, which this machine does not trust", top.Issuer.String())
		if len(chain) == 1 && bytes.Equal(leaf.RawIssuer, leaf.RawSubject) {
			what = fmt.Sprintf("the certificate %q is self-signed", leaf.Subject.String())
		}
	}
	pr.r.VerifyError = "unknown authority: " + what
	caFix := pr.key("tls.ca_file") + ": <the provider's CA certificates, PEM>"
	if pr.r.Pin == "" {
		pr.fail("certificate signed by an unknown authority: " + what)
		pr.setFix(caFix, "-ca-file FILE")
		return
	}
	pr.fail(fmt.Sprintf("certificate signed by an unknown authority: %s; the server's key has pin %s", what, pr.r.Pin))
	pr.setFix(fmt.Sprintf("%s, or pin the server's key instead of the CA chain: %s: [%q] with %s: true",
		caFix, pr.key("tls.pin_sha256"), pr.r.Pin, pr.key("tls.insecure_skip_verify")), "-ca-file FILE")
}

// diagnoseProtocol scans what the server accepts after a handshake that
// failed for versions or suites: each version with every suite Go knows,
// then, at the version to use, each suite alone; and maps it to the change
// of tls.min_version, tls.max_version or tls.ciphers that works.
func (pr *prober) diagnoseProtocol(te *Error) {
	s := pr.newScanner()
	mode := pr.p.TLS.Mode
	acc, ref := s.versions(mode)
	scan := &ProbeScan{Versions: versionNames(acc), Refused: versionNames(ref)}
	pr.r.Scan = scan
	defer func() { scan.Handshakes = s.n }()
	reason, _ := classify(te, pr.p)
	if len(acc) == 0 {
		pr.fail(fmt.Sprintf("%s, and the server completed no TLS handshake with any version (1.0 to 1.3) and any suite Go knows (last: %v)",
			reason, s.last))
		return
	}
	t := pr.p.TLS
	lo, hi := cmp.Or(t.MinVersion, tls.VersionTLS12), cmp.Or(t.MaxVersion, tls.VersionTLS13)
	target, inRange := pickVersion(acc, lo, hi)
	var whys, changes, flags []string
	if !inRange {
		why, change, flag := pr.versionFix(acc, target, lo, hi)
		whys, changes, flags = append(whys, why), append(changes, change), append(flags, flag)
	}
	if target <= tls.VersionTLS12 {
		suites := s.suites(target, mode)
		scan.SuitesAt, scan.Suites = versionName(target, 0), suiteNames(suites)
		if why, change, flag := pr.cipherFix(suites); change != "" {
			whys, changes, flags = append(whys, why), append(changes, change), append(flags, flag)
		}
	}
	if len(changes) == 0 {
		pr.fail(fmt.Sprintf("%s, yet the server accepts %s with suites the policy allows: %v", reason, versionsText(acc), te.Err))
		return
	}
	pr.fail(strings.Join(whys, "; and "))
	fix := strings.Join(changes, " and ")
	if target < tls.VersionTLS12 {
		fix += " (weak; ask the provider to upgrade)"
	}
	pr.setFix(fix, strings.Join(flags, " "))
}

// pickVersion returns the highest accepted version within lo..hi, or else
// the highest accepted one, and whether it is within.
func pickVersion(acc []uint16, lo, hi uint16) (uint16, bool) {
	for _, v := range acc { // highest first
		if v >= lo && v <= hi {
			return v, true
		}
	}
	return acc[0], false
}

// versionFix is the change of tls.min_version or tls.max_version that
// allows target.
func (pr *prober) versionFix(acc []uint16, target, lo, hi uint16) (why, change, flag string) {
	v := versionName(target, 0)
	if target > hi {
		return fmt.Sprintf("the server accepts %s only, but tls.max_version is %q", versionsText(acc), versionName(hi, 0)),
			fmt.Sprintf("remove %s or set it to %q", pr.key("tls.max_version"), v), "-max-version " + v
	}
	return fmt.Sprintf("the server speaks only %s, below tls.min_version %q", versionsText(acc), versionName(lo, 0)),
		fmt.Sprintf("%s: %q", pr.key("tls.min_version"), v), "-min-version " + v
}

// cipherFix is the change of tls.ciphers that adds the best suite the
// server accepts, or "" if the policy allows one of them already.
func (pr *prober) cipherFix(suites []uint16) (why, change, flag string) {
	allowed := pr.p.TLS.CipherSuites
	if allowed == nil {
		allowed = policy.DefaultCipherSuites()
	}
	if len(suites) == 0 || slices.ContainsFunc(suites, func(id uint16) bool { return slices.Contains(allowed, id) }) {
		return "", "", ""
	}
	list := cipherList(pr.p.TLS.Ciphers, suites[0])
	names := suiteNames(suites)
	left := "tls.ciphers does not list "
	if pr.p.TLS.Ciphers == nil {
		left = "Go leaves "
	}
	it := "it"
	if len(names) > 1 {
		it = "them"
	}
	left += it
	if pr.p.TLS.Ciphers == nil {
		left += " out by default"
	}
	switch {
	case !slices.ContainsFunc(names, func(n string) bool { return !strings.HasPrefix(n, "TLS_RSA_") }):
		why = fmt.Sprintf("the server offers only RSA key exchange (%s); %s", strings.Join(names, ", "), left)
	case !slices.ContainsFunc(suites, func(id uint16) bool { return !insecureSuite(id) }):
		why = fmt.Sprintf("the server accepts only legacy cipher suites (%s); %s", strings.Join(names, ", "), left)
	default:
		why = fmt.Sprintf("the server accepts none of the suites tls.ciphers allows; it accepts %s", strings.Join(names, ", "))
	}
	return why, pr.key("tls.ciphers") + ": [" + strings.Join(list, ", ") + "]", "-ciphers " + strings.Join(list, ",")
}

// cipherList is tls.ciphers with best added: behind the current list (or
// [default]), or, for one of Go's secure defaults, as the word default.
func cipherList(cur []string, best uint16) []string {
	if cur == nil {
		cur = []string{"default"}
	}
	if slices.Contains(policy.DefaultCipherSuites(), best) {
		if slices.Contains(cur, "default") {
			return cur
		}
		return append([]string{"default"}, cur...)
	}
	return append(slices.Clone(cur), tls.CipherSuiteName(best))
}

// insecureSuite reports whether crypto/tls lists id among its insecure suites.
func insecureSuite(id uint16) bool {
	return slices.ContainsFunc(tls.InsecureCipherSuites(), func(cs *tls.CipherSuite) bool { return cs.ID == id })
}

// suiteNames returns Go's names of ids.
func suiteNames(ids []uint16) []string {
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = tls.CipherSuiteName(id)
	}
	return names
}

// versionNames renders versions as "1.0" ... lowest first.
func versionNames(vs []uint16) []string {
	names := []string{}
	for _, v := range slices.Sorted(slices.Values(vs)) {
		names = append(names, versionName(v, 0))
	}
	return names
}

// versionsText renders versions as "TLS 1.0", "TLS 1.0 and 1.1", "TLS 1.0, 1.1 and 1.2".
func versionsText(vs []uint16) string {
	names := versionNames(vs)
	if len(names) == 1 {
		return "TLS " + names[0]
	}
	return "TLS " + strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// pinText renders a pin as tls.pin_sha256 takes it.
func pinText(pin [32]byte) string { return base64.StdEncoding.EncodeToString(pin[:]) }
