package policy

import (
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/smtptest"
)

// mustParse parses src with testEnv and fails the test on error.
func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse("test.yaml", []byte(src), testEnv)
	if err != nil {
		t.Fatalf("Parse:\n%v\nconfig:\n%s", err, src)
	}
	return c
}

const minimal = `providers:
  up:
    host: smtp.example.com
`

func TestDefaults(t *testing.T) {
	c := mustParse(t, minimal)
	host, _ := os.Hostname()
	if !validHostname(host) {
		host = "localhost"
	}
	want := Listen{
		Addr:            "127.0.0.1:2525",
		Hostname:        host,
		MaxMessageBytes: 35 << 20,
		MaxRecipients:   100,
		MaxConnections:  100,
		ReadTimeout:     60 * time.Second,
		WriteTimeout:    60 * time.Second,
		AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		// issue 6 (policy/listen.go)
		MaxConnectionsPerIP: 100,
		SessionTimeout:      30 * time.Minute,
		MaxLineBytes:        2000,
		LineEndings:         LineEndingsReject,
		TLS:                 ListenTLS{MinVersion: tls.VersionTLS12},
		// issue 17 (relay/txn.go)
		MaxTransactions: 32,
		TransactionWait: 2 * time.Second,
	}
	if !reflect.DeepEqual(c.Listen, want) {
		t.Errorf("Listen = %+v\nwant %+v", c.Listen, want)
	}
	wantQ := Queue{
		Dir:      "./spool",
		Retry:    Retry{Initial: 30 * time.Second, Max: 30 * time.Minute, Factor: 2, Jitter: 0.2},
		MaxAge:   120 * time.Hour,
		MaxBytes: 1 << 30,
		MaxItems: 0,
		Workers:  4,

		BounceRate:   Rate{N: 10, Per: time.Hour},
		DeadMaxAge:   30 * 24 * time.Hour,
		DeadMaxBytes: 256 << 20,
	}
	if c.Queue != wantQ {
		t.Errorf("Queue = %+v\nwant %+v", c.Queue, wantQ)
	}
	wantP := &Provider{
		Name: "up", Host: "smtp.example.com", Port: 465, MaxConnections: 4,
		MaxMessagesPerConnection: 100, IdleTimeout: 30 * time.Second, Timeouts: DefaultTimeouts,
		TLS: TLS{Mode: TLSImplicit, ServerName: "smtp.example.com", MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13},
	}
	if !reflect.DeepEqual(c.Providers["up"], wantP) {
		t.Errorf("provider = %+v\nwant %+v", c.Providers["up"], wantP)
	}
	if c.Log != (Log{Format: "text", Level: "info"}) {
		t.Errorf("Log = %+v", c.Log)
	}
	if c.Routes != nil || c.Default != nil || c.File != "test.yaml" {
		t.Errorf("Routes = %v, Default = %v, File = %q", c.Routes, c.Default, c.File)
	}
}

func TestExplicitValues(t *testing.T) {
	c := mustParse(t, `listen:
  addr: 0.0.0.0:2525
  hostname: relay.example
  max_message_bytes: 1048576
  max_recipients: 5
  max_connections: 7
  read_timeout: 2m
  write_timeout: 1s
  allowed_networks: [10.1.2.3/8, 192.0.2.7, "2001:db8::/32"]
queue:
  dir: /var/spool/tlsrelay
  retry: {initial: 1s, max: 1h, factor: 1.5, jitter: 0}
  max_age: 48h
  max_bytes: 512 MiB
  max_items: 1000
  workers: 2
log: {format: json, level: debug}
`+minimal)
	nets := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("2001:db8::/32")}
	l := c.Listen
	if l.Addr != "0.0.0.0:2525" || l.Hostname != "relay.example" || l.MaxMessageBytes != 1<<20 || l.MaxRecipients != 5 ||
		l.MaxConnections != 7 || l.ReadTimeout != 2*time.Minute || l.WriteTimeout != time.Second || !reflect.DeepEqual(l.AllowedNetworks, nets) {
		t.Errorf("Listen = %+v", l)
	}
	q := c.Queue
	if q.Dir != "/var/spool/tlsrelay" || q.Retry != (Retry{time.Second, time.Hour, 1.5, 0}) || q.MaxAge != 48*time.Hour ||
		q.MaxBytes != 512<<20 || q.MaxItems != 1000 || q.Workers != 2 {
		t.Errorf("Queue = %+v", q)
	}
	if c.Log != (Log{"json", "debug"}) {
		t.Errorf("Log = %+v", c.Log)
	}
}

func TestLoopbackListenNeedsNoNetworks(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:2525", "127.0.0.2:25", "localhost:2525", "[::1]:2525", "127.0.0.1:0"} {
		c := mustParse(t, "listen: {addr: \""+addr+"\"}\n"+minimal)
		if c.Listen.Addr != addr {
			t.Errorf("Addr = %q, want %q", c.Listen.Addr, addr)
		}
	}
}

func TestProviderPortAndMode(t *testing.T) {
	tests := []struct {
		yaml     string
		port     int
		mode     TLSMode
		loopback bool
	}{
		{"", 465, TLSImplicit, false},
		{"port: 465", 465, TLSImplicit, false},
		{"port: 587", 587, TLSStartTLS, false},
		{"port: 2525", 2525, TLSStartTLS, false},
		{"tls: {mode: implicit}", 465, TLSImplicit, false},
		{"tls: {mode: starttls}", 587, TLSStartTLS, false},
		{"tls: {mode: none}", 25, TLSNone, true},
		{"port: 10025, tls: {mode: none}", 10025, TLSNone, true},
		{"port: 2465, tls: {mode: implicit}", 2465, TLSImplicit, false},
	}
	for _, tt := range tests {
		host := "smtp.example.com"
		if tt.loopback {
			host = "127.0.0.1"
		}
		body := "host: " + host
		if tt.yaml != "" {
			body += ", " + tt.yaml
		}
		c := mustParse(t, "providers:\n  p: {"+body+"}\n")
		p := c.Providers["p"]
		if p.Port != tt.port || p.TLS.Mode != tt.mode {
			t.Errorf("%q: port %d mode %q, want %d %q", tt.yaml, p.Port, p.TLS.Mode, tt.port, tt.mode)
		}
	}
}

func TestMinVersion(t *testing.T) {
	for in, want := range map[string]uint16{`"1.0"`: tls.VersionTLS10, `1.1`: tls.VersionTLS11, `"1.2"`: tls.VersionTLS12, `"1.3"`: tls.VersionTLS13} {
		c := mustParse(t, minimal+"    tls: {min_version: "+in+"}\n")
		if got := c.Providers["up"].TLS.MinVersion; got != want {
			t.Errorf("min_version %s = %#x, want %#x", in, got, want)
		}
	}
}

func TestAuthSources(t *testing.T) {
	c := mustParse(t, `providers:
  a:
    host: smtp.example.com
    auth: {username: app@example.com, password_env: QQ_AUTH_CODE}
  b:
    host: smtp.example.com
    auth: {mechanism: login, username_env: QQ_USER, password_env: QQ_AUTH_CODE}
  c:
    host: smtp.example.com
    auth: {}
`)
	a, b := c.Providers["a"].Auth, c.Providers["b"].Auth
	want := Auth{Mechanism: "plain", Username: "app@example.com", UsernameFrom: "username", Password: "authcode-for-tests", PasswordFrom: "env QQ_AUTH_CODE"}
	if a != want {
		t.Errorf("a.Auth = %#v, want %#v", a, want)
	}
	want = Auth{Mechanism: "login", Username: "me@qq.com", UsernameFrom: "env QQ_USER", Password: "authcode-for-tests", PasswordFrom: "env QQ_AUTH_CODE"}
	if b != want {
		t.Errorf("b.Auth = %#v, want %#v", b, want)
	}
	if got := c.Providers["c"].Auth; got != (Auth{}) {
		t.Errorf("empty auth section = %#v, want no AUTH", got)
	}
}

func TestPasswordFileTrim(t *testing.T) {
	dir := t.TempDir()
	for content, want := range map[string]string{
		"pw":       "pw",
		"pw\n":     "pw",
		"pw\r\n":   "pw",
		"pw\n\n":   "pw\n",
		"pw\r":     "pw\r",
		" pw \n":   " pw ",
		"a\nb\r\n": "a\nb",
	} {
		file := filepath.Join(dir, "secret")
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		c := mustParse(t, minimal+"    auth: {username: u, password_file: "+file+"}\n")
		a := c.Providers["up"].Auth
		if a.Password.Reveal() != want || a.PasswordFrom != "file "+file {
			t.Errorf("file %q: password %q from %q, want %q from file", content, a.Password.Reveal(), a.PasswordFrom, want)
		}
	}
}

func TestCAFile(t *testing.T) {
	dir := t.TempDir()
	caPEM, caCert := newCA(t)
	file := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(file, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	c := mustParse(t, minimal+"    tls: {ca_file: "+file+", server_name: mx.example.com}\n")
	tl := c.Providers["up"].TLS
	if tl.CAFile != file || tl.RootCAs == nil || tl.ServerName != "mx.example.com" {
		t.Fatalf("TLS = %+v", tl)
	}
	if !tl.RootCAs.Equal(poolOf(caCert)) {
		t.Errorf("RootCAs does not hold exactly the generated CA")
	}
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// newCA makes a self-signed CA certificate and returns it as PEM and parsed.
func newCA(t *testing.T) ([]byte, *x509.Certificate) {
	t.Helper()
	kp, err := smtptest.SelfSigned("tlsrelay test CA")
	if err != nil {
		t.Fatal(err)
	}
	return kp.CertPEM, kp.Leaf
}

const routing = `providers:
  a: {host: a.example}
  b: {host: b.example}
  c: {host: c.example}
routes:
  - {sender: Boss@Example.com, providers: [c]}
  - {sender_domain: Example.COM, providers: [a, b]}
  - {recipient_domain: partner.example., providers: [b]}
  - {sender_domain: shop.example, recipient_domain: partner.example, providers: [c]}
  - {sender_domain: shop.example, providers: [a]}
default: [b, a]
`

func TestRoute(t *testing.T) {
	c := mustParse(t, routing)
	tests := []struct {
		from, rcpt string
		want       []string
	}{
		{"boss@example.com", "x@partner.example", []string{"c"}},       // sender, first match wins
		{"BOSS@EXAMPLE.COM", "x@y.example", []string{"c"}},             // case-insensitive
		{"clerk@example.com", "x@partner.example", []string{"a", "b"}}, // sender_domain before recipient_domain
		{"clerk@EXAMPLE.com.", "x@y.example", []string{"a", "b"}},      // trailing dot
		{"app@other.example", "x@Partner.Example", []string{"b"}},      // recipient_domain
		{"app@shop.example", "x@partner.example", []string{"b"}},       // route 3 comes first
		{"app@shop.example", "x@y.example", []string{"a"}},             // route 5
		{"app@other.example", "x@y.example", []string{"b", "a"}},       // default
		{"", "x@y.example", []string{"b", "a"}},                        // null sender: default
		{"app@sub.example.com", "x@y.example", []string{"b", "a"}},     // no subdomain match
	}
	for _, tt := range tests {
		if got := c.Route(tt.from, tt.rcpt); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Route(%q, %q) = %v, want %v", tt.from, tt.rcpt, got, tt.want)
		}
	}
}

func TestRouteAllFieldsMustMatch(t *testing.T) {
	c := mustParse(t, `providers: {a: {host: a.example}}
routes:
  - {sender: app@shop.example, sender_domain: shop.example, recipient_domain: partner.example, providers: [a]}
`)
	if got := c.Route("app@shop.example", "x@partner.example"); !reflect.DeepEqual(got, []string{"a"}) {
		t.Errorf("all fields match: %v", got)
	}
	if got := c.Route("app@shop.example", "x@other.example"); got != nil {
		t.Errorf("recipient differs, no default: %v, want nil", got)
	}
}

func TestRouteReturnsCopy(t *testing.T) {
	c := mustParse(t, routing)
	c.Route("boss@example.com", "x@y")[0] = "changed"
	c.Route("nobody@x", "x@y")[0] = "changed"
	if c.Routes[0].Providers[0] != "c" || c.Default[0] != "b" {
		t.Errorf("Route let callers change the config: %v, %v", c.Routes[0].Providers, c.Default)
	}
}

func TestEffectiveRoundTrip(t *testing.T) {
	dir := t.TempDir()
	caPEM, _ := newCA(t)
	ca, pw := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "pw")
	os.WriteFile(ca, caPEM, 0o644)
	os.WriteFile(pw, []byte("file-password\n"), 0o600)
	c := mustParse(t, strings.Replace(routing, "routes:", `  c2: {host: 127.0.0.1, port: 10025, tls: {mode: none, min_version: "1.3", ca_file: `+ca+`},
       auth: {mechanism: login, username: app, password_file: `+pw+`}}
  d: {host: d.example, port: 587, auth: {username_env: QQ_USER, password_env: QQ_AUTH_CODE}}
routes:`, 1)+`listen: {max_message_bytes: 1000, read_timeout: 90s}
queue: {retry: {jitter: 0.5}, max_bytes: 3MiB}
`)
	out := c.Effective()
	for _, want := range []string{
		"username_env: QQ_USER\n", "password_env: QQ_AUTH_CODE\n", "password_file: " + pw + "\n",
		"max_message_bytes: 1000\n", "read_timeout: 1m30s\n", "max_bytes: 3MiB\n", "max_age: 120h\n",
		"min_version: \"1.2\"\n", "min_version: \"1.3\"\n", "mode: none\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("Effective lacks %q:\n%s", want, out)
		}
	}
	if i, j := strings.Index(string(out), "\n  a:"), strings.Index(string(out), "\n  d:"); i < 0 || j < i {
		t.Errorf("providers not sorted by name:\n%s", out)
	}
	c2, err := Parse("effective.yaml", out, testEnv)
	if err != nil {
		t.Fatalf("Parse(Effective()):\n%v\n%s", err, out)
	}
	c.File, c2.File = "", ""
	for name, p := range c.Providers { // a CertPool holds funcs: compare with Equal
		if !p.TLS.RootCAs.Equal(c2.Providers[name].TLS.RootCAs) {
			t.Errorf("providers.%s: RootCAs differ", name)
		}
		p.TLS.RootCAs, c2.Providers[name].TLS.RootCAs = nil, nil
	}
	if !reflect.DeepEqual(c, c2) {
		t.Errorf("Parse(Effective()) differs:\n%+v\n%+v", c, c2)
	}
	if _, body, _ := strings.Cut(string(out), "\n"); !strings.HasSuffix(string(c2.Effective()), "\n"+body) {
		t.Errorf("Effective not stable:\n%s\n---\n%s", out, c2.Effective())
	}
}

func TestParseSizeAndFormat(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1": 1, "10B": 10, "1KiB": 1024, "35MiB": 35 << 20, "2 GiB": 2 << 30} {
		if got, ok := parseSize(in); !ok || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "1.5GiB", "35MB", "1k", "-1", "MiB", "9223372036854775807GiB", "1 TiB"} {
		if got, ok := parseSize(in); ok {
			t.Errorf("parseSize(%q) = %d, want failure", in, got)
		}
	}
	for in, want := range map[int64]string{1000: "1000", 1024: "1KiB", 35 << 20: "35MiB", 1 << 30: "1GiB", 1536 << 20: "1536MiB"} {
		if got := formatSize(in); got != want {
			t.Errorf("formatSize(%d) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[time.Duration]string{30 * time.Second: "30s", time.Minute: "1m", 120 * time.Hour: "120h", 90 * time.Minute: "1h30m", 1500 * time.Millisecond: "1.5s"} {
		if got := formatDuration(in); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestNilEnvUsesProcessEnvironment(t *testing.T) {
	t.Setenv("TLSRELAY_TEST_PW", "from-process-env")
	c, err := Parse("t.yaml", []byte(minimal+"    auth: {username: u, password_env: TLSRELAY_TEST_PW}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Providers["up"].Auth.Password.Reveal() != "from-process-env" {
		t.Errorf("password not read from the process environment")
	}
}

func TestLoopCheckIsExact(t *testing.T) {
	ok := []string{
		"listen: {addr: \"127.0.0.1:2525\"}\nproviders: {p: {host: 127.0.0.2, port: 2525, tls: {mode: none}}}\n",
		"listen: {addr: \"127.0.0.1:2525\"}\nproviders: {p: {host: localhost, port: 2526, tls: {mode: none}}}\n",
		"listen: {addr: \"127.0.0.1:0\"}\nproviders: {p: {host: 127.0.0.1, port: 25, tls: {mode: none}}}\n",
	}
	for _, src := range ok {
		mustParse(t, src)
	}
	loops := []string{
		"listen: {addr: \"[::1]:2525\"}\nproviders: {p: {host: localhost, port: 2525, tls: {mode: none}}}\n",
		"listen: {addr: \"0.0.0.0:2525\", allowed_networks: [10.0.0.0/8]}\nproviders: {p: {host: 127.0.0.1, port: 2525, tls: {mode: none}}}\n",
		"listen: {addr: \"relay.local:2525\", allowed_networks: [10.0.0.0/8]}\nproviders: {p: {host: RELAY.local, port: 2525, tls: {mode: starttls}}}\n",
	}
	for _, src := range loops {
		if _, err := Parse("t.yaml", []byte(src), testEnv); err == nil || !strings.Contains(err.Error(), "mail would loop") {
			t.Errorf("Parse = %v, want a mail loop error for\n%s", err, src)
		}
	}
}

func TestExposedListenWithNetworks(t *testing.T) {
	c := mustParse(t, "listen: {addr: \":2525\", allowed_networks: [10.0.0.0/8]}\n"+minimal)
	if c.Listen.Addr != ":2525" || len(c.Listen.AllowedNetworks) != 1 {
		t.Errorf("Listen = %+v", c.Listen)
	}
}

// queue.workers defaults to the providers' max_connections summed, so that
// raising one provider's limit takes effect alone; a set value wins.
func TestDefaultWorkers(t *testing.T) {
	two := `providers:
  a: {host: a.example.com, max_connections: 8}
  b: {host: b.example.com, max_connections: 3}
`
	if w := mustParse(t, two).Queue.Workers; w != 11 {
		t.Errorf("workers = %d, want 8+3", w)
	}
	if w := mustParse(t, "queue: {workers: 2}\n"+two).Queue.Workers; w != 2 {
		t.Errorf("workers = %d, want the 2 set", w)
	}
	one := "providers:\n  a: {host: a.example.com, max_connections: 1}\n"
	if w := mustParse(t, one).Queue.Workers; w != 4 {
		t.Errorf("workers = %d, want at least 4", w)
	}
}
