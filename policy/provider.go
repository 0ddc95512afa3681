package policy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// TLS versions accepted by tls.min_version.
var tlsVersions = map[string]uint16{
	"1.0": tls.VersionTLS10,
	"1.1": tls.VersionTLS11,
	"1.2": tls.VersionTLS12,
	"1.3": tls.VersionTLS13,
}

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

// provider decodes one provider and fills its defaults.
func (d *decoder) provider(name string, s *section) *Provider {
	p := &Provider{Name: name, MaxConnections: 4}
	if !s.has("host") {
		d.errorf(s.line, s.sub("host"), "required: the provider's SMTP server name, e.g. host: smtp.example.com")
	} else if line, ok := s.str("host", &p.Host); ok && !validHost(p.Host) {
		hint := ""
		if _, _, err := net.SplitHostPort(p.Host); err == nil {
			hint = " (put the port in port)"
		}
		d.errorf(line, s.sub("host"), "want a host name or IP address, got %q%s", p.Host, hint)
	}
	s.integer("port", 1, 65535, &p.Port)
	s.integer("max_connections", 1, maxInt, &p.MaxConnections)
	p.TLS = d.providerTLS(d.child(s, "tls", schema["providers.*.tls"]...), p, s.has("port"))
	p.Auth = d.auth(d.child(s, "auth", schema["providers.*.auth"]...))
	return p
}

// providerTLS decodes a provider's tls section. The mode defaults from the
// port (465: implicit, else starttls), the port from the mode (465, 587, 25);
// with neither given, implicit TLS on 465.
func (d *decoder) providerTLS(s *section, p *Provider, portSet bool) TLS {
	t := TLS{MinVersion: tls.VersionTLS12}
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
	t.ServerName = p.Host
	if line, ok := s.str("server_name", &t.ServerName); ok && !validHost(t.ServerName) {
		d.errorf(line, s.sub("server_name"), "want the host name in the provider's certificate, got %q", t.ServerName)
	}
	if line, ok := s.str("ca_file", &t.CAFile); ok {
		t.RootCAs = d.loadCAs(line, s.sub("ca_file"), t.CAFile)
	}
	d.minVersion(s, &t.MinVersion)
	return t
}

// minVersion reads tls.min_version: "1.0", "1.1", "1.2" or "1.3" (quoted or not).
func (d *decoder) minVersion(s *section, dst *uint16) {
	want := quoteList([]string{"1.0", "1.1", "1.2", "1.3"}, "or")
	v, line, ok := s.scalar("min_version", want, "!!str", "!!float")
	if !ok {
		return
	}
	ver, ok := tlsVersions[v.Value]
	if !ok {
		d.errorf(line, s.sub("min_version"), "want %s, got %s", want, describe(v))
		return
	}
	*dst = ver
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

// auth decodes a provider's auth section. With no credential keys and no
// mechanism it is "no AUTH"; otherwise it needs one username source and one
// password source, and the mechanism defaults to plain.
func (d *decoder) auth(s *section) Auth {
	var a Auth
	s.oneOf("mechanism", &a.Mechanism, "plain", "login")
	user := d.username(s, &a)
	pass := d.password(s, &a)
	if !user && !pass && !s.has("mechanism") {
		return Auth{}
	}
	if !user {
		d.errorf(s.line, s.sub("username"), "required with AUTH: set username or username_env (or remove the auth section for no AUTH)")
	}
	if !pass {
		d.errorf(s.line, s.sub("password_env"), "required with AUTH: set password_env or password_file (or remove the auth section for no AUTH)")
	}
	if a.Mechanism == "" {
		a.Mechanism = "plain"
	}
	return a
}

// username reads username or username_env; it reports whether one was given.
func (d *decoder) username(s *section, a *Auth) bool {
	if !exclusive(s, "username", "username_env") {
		return true
	}
	if line, ok := s.str("username", &a.Username); ok {
		a.UsernameFrom = "username"
		if a.Username == "" || strings.ContainsAny(a.Username, "\r\n\x00") {
			d.errorf(line, s.sub("username"), "want a user name, got %q", a.Username)
		}
		return true
	}
	if name, line, ok := d.envName(s, "username_env"); ok {
		a.UsernameFrom = "env " + name
		if v, ok := d.lookupEnv(line, s.sub("username_env"), name); ok {
			a.Username = v
		}
		return true
	}
	return s.has("username") || s.has("username_env")
}

// password reads password_env or password_file; it reports whether one was given.
func (d *decoder) password(s *section, a *Auth) bool {
	if !exclusive(s, "password_env", "password_file") {
		return true
	}
	if name, line, ok := d.envName(s, "password_env"); ok {
		a.PasswordFrom = "env " + name
		if v, ok := d.lookupEnv(line, s.sub("password_env"), name); ok {
			a.Password = Secret(v)
		}
		return true
	}
	var file string
	if line, ok := s.str("password_file", &file); ok {
		a.PasswordFrom = "file " + file
		a.Password = d.readPasswordFile(line, s.sub("password_file"), file)
		return true
	}
	return s.has("password_env") || s.has("password_file")
}

// exclusive reports an error and returns false when both keys are set.
func exclusive(s *section, a, b string) bool {
	if s.has(a) && s.has(b) {
		s.d.errorf(s.m[b].key.Line, s.sub(b), "set %s or %s, not both", a, b)
		return false
	}
	return true
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// envName reads the name of an environment variable. A value that is not a
// valid name is never echoed: it may be a secret pasted in the wrong place.
func (d *decoder) envName(s *section, key string) (name string, line int, ok bool) {
	v, line, ok := s.value(key)
	if !ok {
		return "", 0, false
	}
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!str" || !envNameRE.MatchString(v.Value) {
		d.errorf(line, s.sub(key), "want the name of an environment variable (letters, digits and _, such as QQ_AUTH_CODE), "+
			"got a value that is not one (not shown, in case it is the secret itself)")
		return "", line, false
	}
	return v.Value, line, true
}

// lookupEnv returns a variable's value; unset or empty is an error naming it.
func (d *decoder) lookupEnv(line int, path, name string) (string, bool) {
	v, ok := d.env(name)
	switch {
	case !ok:
		d.errorf(line, path, "environment variable %s is not set: export it, or pass it to the container", name)
		return "", false
	case v == "":
		d.errorf(line, path, "environment variable %s is empty: want the credential", name)
		return "", false
	}
	return v, true
}

// readPasswordFile reads a secret file, trimming one trailing newline.
func (d *decoder) readPasswordFile(line int, path, file string) Secret {
	data, err := readSmallFile(file, maxPasswordFileBytes)
	if err != nil {
		d.errorf(line, path, "cannot read %q: %v", file, err)
		return ""
	}
	pw := string(data)
	if t, ok := strings.CutSuffix(pw, "\n"); ok {
		pw = strings.TrimSuffix(t, "\r")
	}
	if pw == "" {
		d.errorf(line, path, "file %q is empty: want the credential", file)
		return ""
	}
	return Secret(pw)
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
