package policy

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"regexp"
	"sort"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// Limits on files read by the config.
const (
	maxCAFileBytes       = 4 << 20
	maxPasswordFileBytes = 64 << 10
)

var providerNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// providers decodes the providers mapping: name -> provider. A provider whose
// body has errors is still returned, so routes naming it give no extra errors.
func (d *decoder) providers(top *section) map[string]*Provider {
	ps := map[string]*Provider{}
	const example = "e.g. providers: {qq: {host: smtp.qq.com, port: 587, auth: {username_env: QQ_USER, password_env: QQ_AUTH_CODE}}}"
	v, _, ok := top.value("providers")
	if !ok {
		if !top.has("providers") {
			d.errorf(1, "providers", "want at least one provider, got none: add a providers section, %s", example)
		}
		return ps
	}
	all := d.section(v, "providers", top.m["providers"].key.Line)
	if len(all.m) == 0 && (v.Kind == yaml.MappingNode || isNull(v)) {
		d.errorf(all.line, "providers", "want at least one provider, got none: %s", example)
	}
	names := make([]string, 0, len(all.m))
	for name := range all.m {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		e := all.m[name]
		if !providerNameRE.MatchString(name) {
			d.errorf(e.key.Line, "providers", "want a provider name of letters, digits, '.', '_' and '-' (at most 64), got %q", name)
		}
		if e.val.Kind == yaml.AliasNode {
			all.value(name) // reports it
			ps[name] = &Provider{Name: name}
			continue
		}
		ps[name] = d.provider(name, d.child(all, name, schema["providers.*"]...))
	}
	return ps
}

// provider decodes one provider and fills its defaults: first the preset's
// values for the keys the file leaves out (policy/preset.go), then the rest.
func (d *decoder) provider(name string, s *section) *Provider {
	p := &Provider{Name: name, MaxConnections: 4, MaxMessagesPerConnection: 100, IdleTimeout: 30 * time.Second}
	var noHost bool
	p.Preset, p.Region, noHost = d.applyPreset(s)
	if !s.has("host") {
		if !noHost {
			d.errorf(s.line, s.sub("host"), "required: the provider's SMTP server name, e.g. host: smtp.example.com, or a preset (%s)",
				quoteList(PresetNames(), "or"))
		}
	} else if line, ok := s.str("host", &p.Host); ok && !validHost(p.Host) {
		hint := ""
		if _, _, err := net.SplitHostPort(p.Host); err == nil {
			hint = " (put the port in port)"
		}
		d.errorf(line, s.sub("host"), "want a host name or IP address, got %q%s", p.Host, hint)
	}
	s.integer("port", 1, 65535, &p.Port)
	s.integer("max_connections", 1, maxInt, &p.MaxConnections)
	s.rate("rate", &p.Rate)
	s.integer("max_messages_per_connection", 1, maxInt, &p.MaxMessagesPerConnection)
	s.duration("idle_timeout", &p.IdleTimeout)
	p.Timeouts = d.timeouts(d.child(s, "timeouts", schema["providers.*.timeouts"]...))
	d.rewriteSender(s, p)
	p.TLS = d.providerTLS(d.child(s, "tls", schema["providers.*.tls"]...), p, s.has("port"))
	p.Auth = d.auth(d.child(s, "auth", schema["providers.*.auth"]...))
	return p
}

// rateUnits are the units a rate may be given in, as relay.yaml writes them.
var rateUnits = []struct {
	name string
	per  time.Duration
}{{"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}}

var rateRE = regexp.MustCompile(`^([0-9]+)/([smh])$`)

// rate reads a sending limit, "N/s", "N/m" or "N/h" with N a whole number
// >= 1, into dst.
func (s *section) rate(key string, dst *Rate) {
	const want = `a rate: a whole number >= 1 per second, minute or hour, such as "20/s", "30/m" or "1000/h"`
	v, line, ok := s.scalar(key, want, "!!str")
	if !ok {
		return
	}
	m := rateRE.FindStringSubmatch(v.Value)
	if m == nil {
		s.d.errorf(line, s.sub(key), "want %s, got %s", want, describe(v))
		return
	}
	n, err := strconv.Atoi(m[1])
	if err != nil || n < 1 || n > maxInt {
		s.d.errorf(line, s.sub(key), "want %s, got %s", want, describe(v))
		return
	}
	for _, u := range rateUnits {
		if u.name == m[2] {
			*dst = Rate{N: n, Per: u.per}
		}
	}
}

// rewriteSender reads rewrite_sender: the address that replaces the envelope
// sender and the From: address on the way to this provider.
func (d *decoder) rewriteSender(s *section, p *Provider) {
	if line, ok := s.str("rewrite_sender", &p.RewriteSender); ok && !plainAddress(p.RewriteSender) {
		d.errorf(line, s.sub("rewrite_sender"), "want the address the provider lets you send from, such as noreply@example.com, got %q", p.RewriteSender)
	}
}

// exclusive reports an error and returns false when both keys are set.
func exclusive(s *section, a, b string) bool {
	if s.has(a) && s.has(b) {
		s.d.errorf(s.m[b].key.Line, s.sub(b), "set %s or %s, not both", a, b)
		return false
	}
	return true
}

// readSmallFile reads a regular file of at most limit bytes. Errors name the
// problem, not the path (the caller names it), and never the contents.
func readSmallFile(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, pathless(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, pathless(err)
	}
	if !st.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, pathless(err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes: is it the right file?", limit)
	}
	return data, nil
}

// pathless strips the *fs.PathError wrapper, whose path the caller already names.
func pathless(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// joinHostPort formats host and port as an address.
func joinHostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}
