package policy

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Route returns the providers, in failover order, for mail from the envelope
// sender from to the recipient rcpt: those of the first route whose non-empty
// match fields all match, else Default. It returns nil when nothing matches,
// and the relay then refuses the recipient (550 5.7.1). Addresses compare
// case-insensitively; a trailing dot on a domain is ignored. The result is a
// copy the caller may keep or change.
func (c *Config) Route(from, rcpt string) []string {
	for _, r := range c.Routes {
		if r.matches(from, rcpt) {
			return slices.Clone(r.Providers)
		}
	}
	return slices.Clone(c.Default)
}

// matches reports whether all of the route's non-empty fields match.
func (r *Route) matches(from, rcpt string) bool {
	if r.Sender != "" && !strings.EqualFold(r.Sender, from) {
		return false
	}
	if r.SenderDomain != "" && !sameDomain(r.SenderDomain, domainOf(from)) {
		return false
	}
	if r.RecipientDomain != "" && !sameDomain(r.RecipientDomain, domainOf(rcpt)) {
		return false
	}
	return true
}

// domainOf returns the part of addr after its last '@', or "" if there is none.
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return addr[i+1:]
}

// sameDomain compares domains case-insensitively, ignoring a trailing dot.
func sameDomain(a, b string) bool {
	b = strings.TrimSuffix(b, ".")
	return b != "" && strings.EqualFold(strings.TrimSuffix(a, "."), b)
}

// routes decodes the routes list; every provider it names must exist.
func (d *decoder) routes(top *section, ps map[string]*Provider) []Route {
	v, line, ok := top.value("routes")
	if !ok || isNull(v) {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		d.errorf(line, "routes", "want a list of routes such as - {sender_domain: example.com, providers: [qq]}, got %s", describe(v))
		return nil
	}
	var rs []Route
	for i, it := range v.Content {
		path := fmt.Sprintf("routes[%d]", i)
		itLine := lineOr(it, line)
		d.lines[path] = itLine
		s := d.section(it, path, itLine, schema["routes[]"]...)
		var r Route
		if l, ok := s.str("sender", &r.Sender); ok && !validAddress(r.Sender) {
			d.errorf(l, s.sub("sender"), "want an address such as app@example.com, got %q", r.Sender)
		}
		d.domain(s, "sender_domain", &r.SenderDomain)
		d.domain(s, "recipient_domain", &r.RecipientDomain)
		if !s.has("sender") && !s.has("sender_domain") && !s.has("recipient_domain") {
			d.errorf(itLine, path, "want at least one of sender, sender_domain or recipient_domain (for all other mail, use default)")
		}
		if !s.has("providers") {
			d.errorf(itLine, s.sub("providers"), "required: the providers to try, in order, e.g. providers: [qq]")
		}
		r.Providers = d.providerList(s, "providers", ps, true)
		rs = append(rs, r)
	}
	return rs
}

// domain reads a domain key (stored lowercase, without a trailing dot).
func (d *decoder) domain(s *section, key string, dst *string) {
	var v string
	line, ok := s.str(key, &v)
	if !ok {
		return
	}
	v = strings.ToLower(strings.TrimSuffix(v, "."))
	// An empty label ("a..b", ".a", "a..") is no domain; rejecting it also
	// keeps the trailing-dot trim idempotent (Effective re-parses the same).
	if v == "" || strings.ContainsAny(v, "@ \t\r\n<>[]\x00") || slices.Contains(strings.Split(v, "."), "") {
		d.errorf(line, s.sub(key), "want a domain such as example.com (no @), got %q", s.m[key].val.Value)
		return
	}
	*dst = v
}

// validAddress accepts local@domain without spaces or brackets.
func validAddress(a string) bool {
	i := strings.LastIndexByte(a, '@')
	return i > 0 && i < len(a)-1 && !strings.ContainsAny(a, " \t\r\n<>\x00")
}

// defaultRoute decodes default: the providers for mail no route matches.
func (d *decoder) defaultRoute(top *section, ps map[string]*Provider) []string {
	return d.providerList(top, "default", ps, false)
}

// providerList reads a list of provider names that must all exist, each once.
func (d *decoder) providerList(s *section, key string, ps map[string]*Provider, nonEmpty bool) []string {
	if !s.has(key) {
		return nil
	}
	names, lines, ok := s.list(key, "provider names")
	path := s.sub(key)
	if ok && len(names) == 0 && nonEmpty {
		d.errorf(d.lineOf(path), path, "want at least one provider name, got an empty list")
	}
	known := make([]string, 0, len(ps))
	for n := range ps {
		known = append(known, n)
	}
	sort.Strings(known)
	for i, n := range names {
		p := fmt.Sprintf("%s[%d]", path, i)
		if _, ok := ps[n]; !ok {
			d.errorf(lines[i], p, "want a provider defined under providers (%s), got %q", strings.Join(known, ", "), n)
		} else if j := slices.Index(names[:i], n); j >= 0 {
			d.errorf(lines[i], p, "provider %q is already listed at %s[%d]: list each provider once", n, path, j)
		}
	}
	return names
}

// checkCross runs the checks that span sections, once each section is decoded.
func (d *decoder) checkCross(c *Config) {
	if c.Listen.MaxMessageBytes > c.Queue.MaxBytes {
		d.errorf(d.lineOf("listen.max_message_bytes"), "listen.max_message_bytes",
			"want at most queue.max_bytes (%s), got %s: no message that large could be spooled",
			formatSize(c.Queue.MaxBytes), formatSize(c.Listen.MaxMessageBytes))
	}
	lhost, lport, err := net.SplitHostPort(c.Listen.Addr)
	if err != nil || lport == "0" {
		return
	}
	names := make([]string, 0, len(c.Providers))
	for n := range c.Providers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := c.Providers[n]
		if p.Host == "" || strconv.Itoa(p.Port) != lport || !sameHost(lhost, p.Host) {
			continue
		}
		path := "providers." + n
		d.errorf(d.lineOf(path), path, "%s is this relay's own listen.addr (%s): mail would loop; want the provider's host and port", p.Addr(), c.Listen.Addr)
	}
}

// sameHost reports whether a provider host is the listener's own host: the
// same name or address ("localhost" being 127.0.0.1 and ::1), or any loopback
// host when the listener takes all addresses.
func sameHost(listen, host string) bool {
	if strings.EqualFold(listen, host) {
		return true
	}
	if a, err := netip.ParseAddr(listen); listen == "" || (err == nil && a.IsUnspecified()) {
		return isLoopbackHost(host)
	}
	for _, a := range hostAddrs(listen) {
		if slices.Contains(hostAddrs(host), a) {
			return true
		}
	}
	return false
}

// hostAddrs returns the addresses a literal host stands for; nil for DNS names.
func hostAddrs(host string) []netip.Addr {
	if strings.EqualFold(host, "localhost") {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}
	}
	return nil
}
