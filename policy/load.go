package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// DefaultListenAddr is listen.addr when relay.yaml leaves it out; also the
// address `tlsrelay send` talks to by default.
const DefaultListenAddr = "127.0.0.1:2525"

// Defaults that `tlsrelay sendmail` needs too (LoadSubmission).
const (
	DefaultMaxMessageBytes = 35 << 20
	DefaultQueueDir        = "./spool"
)

// schema lists the keys each section accepts, in the order relay.yaml gives
// them; any other key is an error. Provider and route sections are keyed by
// their kind ("providers.*", "routes[]"), not by name or index.
var schema = map[string][]string{
	"":                     {"listen", "queue", "providers", "routes", "default", "admin", "log", "sendmail"},
	"listen":               {"addr", "hostname", "max_message_bytes", "max_recipients", "max_connections", "max_connections_per_ip", "read_timeout", "write_timeout", "session_timeout", "max_transactions", "transaction_wait", "max_line_bytes", "line_endings", "allowed_networks", "allowed_senders", "allowed_recipients", "users", "tls"},
	"listen.tls":           {"cert_file", "key_file", "min_version"},
	"listen.users[]":       {"username", "password_env", "password_file", "bcrypt_hash"},
	"queue":                {"dir", "retry", "max_age", "max_bytes", "max_items", "workers", "bounce_to", "bounce_rate", "delay_warning", "dead_max_age", "dead_max_bytes"},
	"queue.retry":          {"initial", "max", "factor", "jitter"},
	"providers.*":          {"preset", "region", "host", "port", "max_connections", "rate", "max_messages_per_connection", "idle_timeout", "timeouts", "rewrite_sender", "tls", "auth"},
	"providers.*.timeouts": {"connect", "greeting", "command", "data_end", "attempt"},
	"providers.*.tls":      {"mode", "min_version", "max_version", "ciphers", "server_name", "ca_file", "pin_sha256", "cert_file", "key_file", "insecure_skip_verify"},
	"providers.*.auth":     {"mechanism", "username", "username_env", "password_env", "password_file", "oauth2"},
	"routes[]":             {"sender", "sender_domain", "recipient_domain", "providers"},
	"log":                  {"format", "level"},
	"admin":                {"addr", "ready_max_queue", "token_env", "token_file"},
	"sendmail":             {"from"},

	// XOAUTH2 token source (policy/auth.go).
	"providers.*.auth.oauth2": {"flow", "token_url", "client_id", "client_id_env", "client_secret_env", "client_secret_file", "refresh_token_env", "refresh_token_file", "scopes"},
}

// Load reads the configuration file at path and returns it validated; see Parse.
func Load(path string, env func(string) (string, bool)) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data, env)
}

// Parse decodes and validates a relay.yaml held in data. name is the file
// name used in errors and kept as Config.File. env looks up environment
// variables for credentials (os.LookupEnv when nil); files named by the config
// (ca_file, password_file) are read here, relative to the working directory.
//
// Every key left out gets its default (see relay.yaml). Unknown keys,
// duplicate keys, wrong types and invalid values are errors. All errors found
// are returned at once, joined one per line and sorted by line, each reading
// "FILE:LINE: KEY.PATH: want WHAT, got VALUE". No error contains the value of
// a credential.
func Parse(name string, data []byte, env func(string) (string, bool)) (*Config, error) {
	if env == nil {
		env = os.LookupEnv
	}
	d := &decoder{file: name, env: env, lines: map[string]int{}}
	root, err := parseYAML(data)
	if err != nil {
		d.syntaxError(err)
		return nil, d.err()
	}
	c := d.config(root)
	if err := d.err(); err != nil {
		return nil, err
	}
	c.File = name
	c.warnings = d.warnings
	return c, nil
}

// parseYAML parses exactly one YAML document into a node tree. It never
// expands aliases (the tree keeps them as alias nodes, which the decoder
// refuses), so an alias bomb costs nothing.
func parseYAML(data []byte) (root *yaml.Node, err error) {
	defer func() {
		if r := recover(); r != nil { // yaml.v3 has panicked on hostile input before
			root, err = nil, fmt.Errorf("yaml: cannot parse: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && err != io.EOF {
		return nil, err
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, fmt.Errorf("yaml: line %d: a second YAML document (after ---) is not allowed: keep one document per file", extra.Line)
	case err != io.EOF:
		return nil, err
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return doc.Content[0], nil
	}
	return nil, nil // empty file or only comments
}

var yamlLineRE = regexp.MustCompile(`^yaml: line ([0-9]+): (.*)$`)

// yamlParserProblems are yaml.v3's parser (not scanner) errors. For these it
// reports a 0-based line, of the enclosing block's start when it knows one.
var yamlParserProblems = []string{
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected '-' indicator",
	"did not find expected <document start>",
	"did not find expected <stream-start>",
	"did not find expected key",
	"did not find expected node content",
	"found duplicate %TAG directive",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found undefined tag handle",
}

// syntaxError records a yaml.v3 parse error as FILE:LINE: message.
func (d *decoder) syntaxError(err error) {
	msg := err.Error()
	m := yamlLineRE.FindStringSubmatch(msg)
	if m == nil {
		d.errorf(0, "", "invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
		return
	}
	line, _ := strconv.Atoi(m[1])
	if slices.Contains(yamlParserProblems, m[2]) {
		d.errorf(line+1, "", "invalid YAML: %s (at or below this line: check the indentation and quoting)", m[2])
		return
	}
	d.errorf(line, "", "invalid YAML: %s", m[2])
}

// config decodes the document root and runs the checks that span sections.
func (d *decoder) config(root *yaml.Node) *Config {
	top := d.section(root, "", 1, schema[""]...)
	if root != nil && root.Kind != yaml.MappingNode && !isNull(root) {
		return nil // reported by section; the rest would only repeat it
	}
	c := &Config{}
	c.Listen = d.listen(d.child(top, "listen", schema["listen"]...))
	c.Queue = d.queue(d.child(top, "queue", schema["queue"]...))
	c.Providers = d.providers(top)
	if c.Queue.Workers == 0 {
		c.Queue.Workers = defaultWorkers(c.Providers)
	}
	c.Routes = d.routes(top, c.Providers)
	c.Default = d.defaultRoute(top, c.Providers)
	c.Admin = d.admin(d.child(top, "admin", schema["admin"]...))
	c.Log = d.log(d.child(top, "log", schema["log"]...))
	c.Sendmail = d.sendmail(d.child(top, "sendmail", schema["sendmail"]...))
	d.checkCross(c)
	return c
}

// defaultWorkers is queue.workers when the config leaves it out: the sum
// of the providers' max_connections, so that every provider can use all of
// its connections at once (a provider raised to max_connections: 8 gets 8
// deliveries at a time without a second key to change), at least 4.
func defaultWorkers(providers map[string]*Provider) int {
	n := 0
	for _, p := range providers {
		n += p.MaxConnections
	}
	return max(n, 4)
}

// child returns the section under key of parent (empty when absent).
func (d *decoder) child(parent *section, key string, known ...string) *section {
	path := parent.sub(key)
	v, _, ok := parent.value(key)
	if !ok {
		return d.section(nil, path, parent.line, known...)
	}
	return d.section(v, path, parent.m[key].key.Line, known...)
}

func (d *decoder) listen(s *section) Listen {
	l := Listen{
		Addr:            DefaultListenAddr,
		Hostname:        defaultHostname(),
		MaxMessageBytes: DefaultMaxMessageBytes,
		MaxRecipients:   100,
		MaxConnections:  100,
		ReadTimeout:     60 * time.Second,
		WriteTimeout:    60 * time.Second,
		AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
	}
	addrLine, _ := s.hostPort("addr", &l.Addr, true)
	if line, ok := s.str("hostname", &l.Hostname); ok && !validHostname(l.Hostname) {
		d.errorf(line, s.sub("hostname"), "want a host name (letters, digits, '-' and '.'), got %q", l.Hostname)
	}
	s.size("max_message_bytes", &l.MaxMessageBytes)
	s.integer("max_recipients", 1, maxInt, &l.MaxRecipients)
	s.integer("max_connections", 1, maxInt, &l.MaxConnections)
	s.duration("read_timeout", &l.ReadTimeout)
	s.duration("write_timeout", &l.WriteTimeout)
	if nets, ok := d.networks(s, "allowed_networks"); ok {
		l.AllowedNetworks = nets
	}
	d.listenAccess(s, &l)
	d.checkExposure(s, &l, addrLine)
	return l
}

func lineOrDefault(line, def int) int {
	if line > 0 {
		return line
	}
	return def
}

// hostPort reads a host:port address into dst. With required, an empty value
// is an error (it would mean all interfaces); without, "" is kept (= off).
func (s *section) hostPort(key string, dst *string, required bool) (line int, ok bool) {
	const want = "want host:port such as 127.0.0.1:2525"
	n, line, ok := s.value(key)
	if !ok {
		return 0, false
	}
	if isNull(n) || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" && n.Value == "") {
		if required {
			s.d.errorf(line, s.sub(key), "%s, got an empty value (empty would mean all interfaces; remove the key for the loopback default)", want)
			return line, false
		}
		*dst = ""
		return line, true
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		s.d.errorf(line, s.sub(key), "%s, got %s", want, describe(n))
		return line, false
	}
	v := n.Value
	if err := checkHostPort(v); err != nil {
		s.d.errorf(line, s.sub(key), "%s, got %q", want, v)
		return line, false
	}
	*dst = v
	return line, true
}

// checkHostPort accepts host:port with a numeric port 0-65535 (0 = any free port).
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return errors.New("bad port")
	}
	if host != "" && !validHost(host) {
		return errors.New("bad host")
	}
	return nil
}

// networks reads a list of CIDR prefixes or bare IP addresses.
func (d *decoder) networks(s *section, key string) ([]netip.Prefix, bool) {
	items, lines, ok := s.list(key, `networks such as "10.0.0.0/8" or "192.0.2.7"`)
	if !ok {
		return nil, false
	}
	if len(items) == 0 {
		d.errorf(d.lineOf(s.sub(key)), s.sub(key), "want at least one network: an empty list would refuse every client")
		return nil, false
	}
	var nets []netip.Prefix
	for i, it := range items {
		p, err := parseNetwork(it)
		if err != nil {
			d.errorf(lines[i], fmt.Sprintf("%s[%d]", s.sub(key), i), `want a network such as "10.0.0.0/8", "::1/128" or an IP address, got %q`, it)
			ok = false
			continue
		}
		nets = append(nets, p)
	}
	return nets, ok
}

// parseNetwork parses "10.0.0.0/8" (masked) or a bare address (a /32 or /128).
func parseNetwork(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, errors.New("bad address")
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (d *decoder) queue(s *section) Queue {
	q := Queue{
		Dir:      DefaultQueueDir,
		Retry:    Retry{Initial: 30 * time.Second, Max: 30 * time.Minute, Factor: 2, Jitter: 0.2},
		MaxAge:   120 * time.Hour,
		MaxBytes: 1 << 30,

		DeadMaxAge:   30 * 24 * time.Hour,
		DeadMaxBytes: 256 << 20,
		BounceRate:   Rate{N: 10, Per: time.Hour},
	}
	if line, ok := s.str("dir", &q.Dir); ok && q.Dir == "" {
		d.errorf(line, s.sub("dir"), `want a directory such as "./spool" or "/var/spool/tlsrelay", got ""`)
	}
	r := d.child(s, "retry", schema["queue.retry"]...)
	r.duration("initial", &q.Retry.Initial)
	r.duration("max", &q.Retry.Max)
	r.number("factor", 1, inf, &q.Retry.Factor)
	r.number("jitter", 0, 1, &q.Retry.Jitter)
	if q.Retry.Initial > q.Retry.Max {
		d.errorf(d.lineOf(r.sub("initial")), r.sub("initial"), "want at most queue.retry.max (%s), got %s", formatDuration(q.Retry.Max), formatDuration(q.Retry.Initial))
	}
	s.duration("max_age", &q.MaxAge)
	s.size("max_bytes", &q.MaxBytes)
	s.integer("max_items", 0, maxInt, &q.MaxItems)
	s.integer("workers", 1, maxInt, &q.Workers)
	s.duration("dead_max_age", &q.DeadMaxAge)
	s.size("dead_max_bytes", &q.DeadMaxBytes)
	d.bounce(s, &q)
	return q
}

// bounce reads the delivery status notification keys.
func (d *decoder) bounce(s *section, q *Queue) {
	if line, ok := s.str("bounce_to", &q.BounceTo); ok && q.BounceTo != "" && q.BounceTo != "sender" && !plainAddress(q.BounceTo) {
		d.errorf(line, s.sub("bounce_to"), `want "" (no notices), "sender" (the envelope sender) or an address such as postmaster@example.com, got %q`, q.BounceTo)
	}
	s.rate("bounce_rate", &q.BounceRate)
	s.duration("delay_warning", &q.DelayWarning)
	if q.DelayWarning >= q.MaxAge {
		d.errorf(d.lineOf(s.sub("delay_warning")), s.sub("delay_warning"),
			"want less than queue.max_age (%s): a warning after the message expired is never sent", formatDuration(q.MaxAge))
	}
}

// plainAddress reports whether a is local@domain without spaces, quotes,
// angle brackets or control characters.
func plainAddress(a string) bool {
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 || len(a) > 254 {
		return false
	}
	for _, r := range a {
		if r <= ' ' || r == 0x7f || strings.ContainsRune(`<>"(),;:\[]`, r) {
			return false
		}
	}
	return true
}

// admin reads the admin HTTP endpoint's keys. It is off unless addr is set.
func (d *decoder) log(s *section) Log {
	l := Log{Format: "text", Level: "info"}
	s.oneOf("format", &l.Format, "text", "json")
	s.oneOf("level", &l.Level, "debug", "info", "warn", "error")
	return l
}

// defaultHostname is os.Hostname, or "localhost" if that fails or is unusable.
func defaultHostname() string {
	h, err := os.Hostname()
	if err != nil || !validHostname(h) {
		return "localhost"
	}
	return h
}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?$`)

// validHostname accepts a DNS name; it goes into greetings and headers.
func validHostname(s string) bool { return len(s) <= 253 && hostnameRE.MatchString(s) }

// validHost accepts a DNS name or an IP address (no zone).
func validHost(s string) bool {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Zone() == ""
	}
	return validHostname(s)
}

// isLoopbackHost reports whether host is "localhost" or a loopback IP.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
