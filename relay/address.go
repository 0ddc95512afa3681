package relay

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// RFC 5321 4.5.3.1 limits, and RFC 3696 errata 1690's 254 for a mailbox.
const (
	maxLocalBytes   = 64
	maxDomainBytes  = 255
	maxAddressBytes = 254
	maxLabelBytes   = 63
)

// address is a mailbox that passed the strict grammar (parseAddress).
type address struct {
	local  string // unquoted
	domain string // lowercase; a hostname, or an address literal in brackets
}

// String renders the address as it is spooled, logged and later sent by
// go-smtp's client, which writes it raw into MAIL FROM:<%s> and RCPT
// TO:<%s>. A local part that is not a dot-atom is quoted again here
// (Guard, G6): go-smtp's server unquotes it, and sending that form raw is
// what lets a quoted local part turn into extra parameters (security.md T13).
// The characters a quoted local part may hold need no backslash (parseLocal).
func (a address) String() string {
	if dotAtom(a.local) {
		return a.local + "@" + a.domain
	}
	return `"` + a.local + `"@` + a.domain
}

// literal reports whether the domain is an address literal ([192.0.2.1]).
func (a address) literal() bool { return strings.HasPrefix(a.domain, "[") }

// ambiguous reports whether the local part holds '%', '!' or '@': percent
// hack, bang path or a quoted '@'. Providers read them in different ways,
// so the relay cannot know where such mail would go (security.md T17).
func (a address) ambiguous() bool { return strings.ContainsAny(a.local, "%!@") }

// parseAddress checks an address as go-smtp's parser hands it over: source
// route stripped, angle brackets gone, a quoted local part unquoted.
//
// Guard (G6): go-smtp's parser takes CR, NUL, 8-bit bytes and anything but
// space and '>' in a domain, and unquotes local parts, so its output is
// checked again here against RFC 5321's Mailbox: a dot-atom or a (former)
// quoted string as local part, at most 64 bytes; a domain of LDH labels or
// an address literal, at most 255; at most 254 in all. Quoted local parts may
// hold printable ASCII but space, '"', '\', '<' and '>': nothing that could
// split a command line or need escaping once quoted again. Non-ASCII is
// errNonASCII (SMTPUTF8 is not offered).
//
// The domain is split off at the last '@' (a domain never holds one), so a
// local part may hold '@' only if it was quoted; ambiguous reports that.
func parseAddress(s string) (address, error) {
	if len(s) > maxAddressBytes {
		return address{}, fmt.Errorf("longer than %d bytes", maxAddressBytes)
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return address{}, errNonASCII
		}
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return address{}, errors.New("no @domain")
	}
	local, domain := s[:at], s[at+1:]
	if err := checkLocal(local); err != nil {
		return address{}, err
	}
	d, err := checkDomain(domain)
	if err != nil {
		return address{}, err
	}
	return address{local: local, domain: d}, nil
}

// checkLocal checks an unquoted local part.
func checkLocal(l string) error {
	switch {
	case l == "":
		return errors.New("empty local part")
	case len(l) > maxLocalBytes:
		return fmt.Errorf("local part longer than %d bytes", maxLocalBytes)
	case dotAtom(l):
		return nil
	}
	for i := 0; i < len(l); i++ {
		if c := l[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`"\<>`, c) >= 0 {
			return fmt.Errorf("local part has character %q", c)
		}
	}
	return nil
}

// atext is RFC 5322's atext without letters and digits.
const atextSpecials = "!#$%&'*+-/=?^_`{|}~"

// dotAtom reports whether l is an RFC 5321 Dot-string: atoms of atext
// joined by single dots.
func dotAtom(l string) bool {
	if l == "" || l[0] == '.' || l[len(l)-1] == '.' || strings.Contains(l, "..") {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' ||
			strings.IndexByte(atextSpecials, c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

// checkDomain checks a domain or address literal and returns it lowercase.
func checkDomain(d string) (string, error) {
	switch {
	case d == "":
		return "", errors.New("empty domain")
	case len(d) > maxDomainBytes:
		return "", fmt.Errorf("domain longer than %d bytes", maxDomainBytes)
	case strings.HasPrefix(d, "["):
		return checkLiteral(d)
	}
	for _, label := range strings.Split(d, ".") {
		if !ldhLabel(label) {
			return "", fmt.Errorf("bad domain label %q", label)
		}
	}
	return strings.ToLower(d), nil
}

// ldhLabel reports whether s is an RFC 5321 sub-domain: letters, digits and
// '-', neither first nor last a '-', 1 to 63 bytes.
func ldhLabel(s string) bool {
	if s == "" || len(s) > maxLabelBytes || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// checkLiteral checks [IPv4] or [IPv6:addr] (RFC 5321 4.1.3).
func checkLiteral(d string) (string, error) {
	inner, ok := strings.CutSuffix(d[1:], "]")
	if !ok {
		return "", errors.New("unterminated address literal")
	}
	if v6, ok := cutPrefixFold(inner, "IPv6:"); ok {
		a, err := netip.ParseAddr(v6)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", fmt.Errorf("bad IPv6 address literal %q", d)
		}
		return "[IPv6:" + a.String() + "]", nil
	}
	a, err := netip.ParseAddr(inner)
	if err != nil || !a.Is4() {
		return "", fmt.Errorf("bad address literal %q", d)
	}
	return "[" + a.String() + "]", nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// matchPattern reports whether the address a (as String renders it) or the
// null sender ("") matches an allow-list pattern of policy (lowercase): "*",
// "<>", "*@domain" or "local@domain". Case is ignored.
func matchPattern(pattern, a string) bool {
	switch {
	case a == "":
		return pattern == "<>"
	case pattern == "*":
		return true
	}
	if dom, ok := strings.CutPrefix(pattern, "*@"); ok {
		i := strings.LastIndexByte(a, '@')
		return i >= 0 && strings.EqualFold(a[i+1:], dom)
	}
	return strings.EqualFold(pattern, a)
}

// allowedBy reports whether a matches one of patterns; nil allows all.
func allowedBy(patterns []string, a string) bool {
	if patterns == nil {
		return true
	}
	for _, p := range patterns {
		if matchPattern(p, a) {
			return true
		}
	}
	return false
}
