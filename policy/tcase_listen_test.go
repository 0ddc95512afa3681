package policy

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// security.md (b): the configuration side of T26, T32(a) and T62, and the
// listen keys of issue 6.

func listenErr(t *testing.T, src string) string {
	t.Helper()
	c, err := Parse("test.yaml", []byte(src), testEnv)
	if err == nil {
		t.Fatalf("Parse succeeded, want an error; effective:\n%s", c.Effective())
	}
	return err.Error()
}

// TestT26ListenExposure: loopback by default; a non-loopback listener needs
// allowed_networks, or users with TLS (docs/design.md's exposure rule); an empty
// address is refused.
func TestT26ListenExposure(t *testing.T) {
	if c := mustParse(t, minimal); c.Listen.Addr != "127.0.0.1:2525" {
		t.Errorf("default addr %q", c.Listen.Addr)
	}
	for _, addr := range []string{":2525", "0.0.0.0:2525", "[::]:2525", "192.0.2.1:25"} {
		msg := listenErr(t, fmt.Sprintf("listen: {addr: %q}\n%s", addr, minimal))
		if !strings.Contains(msg, "is not a loopback address") || !strings.Contains(msg, "allowed_networks") || !strings.Contains(msg, "listen.users") {
			t.Errorf("%s: error %q", addr, msg)
		}
		mustParse(t, fmt.Sprintf("listen: {addr: %q, allowed_networks: [10.0.0.0/8]}\n%s", addr, minimal))
		users := fmt.Sprintf("listen: {addr: %q, users: [{username: app, password_env: QQ_AUTH_CODE}]}\n%s", addr, minimal)
		if msg := listenErr(t, users); !strings.Contains(msg, "set listen.tls.cert_file") {
			t.Errorf("%s with users but no tls: %q", addr, msg)
		}
	}
	if msg := listenErr(t, "listen: {addr: \"\"}\n"+minimal); !strings.Contains(msg, "empty would mean all interfaces") {
		t.Errorf("empty addr: %q", msg)
	}
	cert, key := writeClientPair(t, t.TempDir(), "relay.test", time.Now().Add(48*time.Hour))
	c := mustParse(t, fmt.Sprintf("listen:\n  addr: 0.0.0.0:2525\n  users: [{username: app, password_env: QQ_AUTH_CODE}]\n"+
		"  tls: {cert_file: %q, key_file: %q}\n%s", cert, key, minimal))
	want := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	if !reflect.DeepEqual(c.Listen.AllowedNetworks, want) || c.Listen.TLS.Cert == nil {
		t.Errorf("with users and tls: allowed_networks %v, tls %+v", c.Listen.AllowedNetworks, c.Listen.TLS)
	}
}

// TestT32LoopConfig (a): a provider that is the relay's own listener is refused.
func TestT32LoopConfig(t *testing.T) {
	msg := listenErr(t, "listen: {addr: \"127.0.0.1:2525\"}\nproviders: {self: {host: 127.0.0.1, port: 2525, tls: {mode: none}}}\n")
	if !strings.Contains(msg, "mail would loop") {
		t.Errorf("error %q", msg)
	}
}

// TestT62ConfigHygiene: (b) a secret in the YAML, (c) an unknown key, (d) a
// duplicate key, (e) an unset or empty variable and (f) an alias bomb are
// refused. (a), refusing a config by its owner or mode, is not done
// (docs/design.md: Kubernetes mounts them root-owned); see docs/security.md.
func TestT62ConfigHygiene(t *testing.T) {
	for name, tc := range map[string]struct{ src, want string }{
		"b inline password":  {"providers: {up: {host: a.example, auth: {username: u, password: hunter2}}}\n", "never put a password in the file"},
		"b inline for users": {"listen: {users: [{username: u, password: hunter2}]}\n" + minimal, "never put a password in the file"},
		"c unknown key":      {"listen: {min_tls_verison: \"1.0\"}\n" + minimal, "unknown key"},
		"d duplicate key":    {"listen: {hostname: a, hostname: b}\n" + minimal, "duplicate key"},
		"e unset variable":   {"listen: {users: [{username: u, password_env: NOPE_NOT_SET}]}\n" + minimal, "NOPE_NOT_SET is not set"},
		"e empty variable":   {"listen: {users: [{username: u, password_env: EMPTY_VAR}]}\n" + minimal, "EMPTY_VAR is empty"},
		"f alias":            {"a: &a [x]\nlisten: {allowed_senders: *a}\n" + minimal, "alias"},
	} {
		if msg := listenErr(t, tc.src); !strings.Contains(msg, tc.want) || strings.Contains(msg, "hunter2") {
			t.Errorf("%s: error %q, want %q (and never the value)", name, msg, tc.want)
		}
	}
}

// TestListenKeys reads every issue 6 key, checks the bad values, and checks
// that Effective renders them so that Parse reads back the same.
func TestListenKeys(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("file-secret\n"), 0o600)
	cert, key := writeClientPair(t, dir, "relay.test", time.Now().Add(48*time.Hour))
	hash := "$2a$10$" + strings.Repeat("a", 53)
	src := fmt.Sprintf(`listen:
  max_connections: 50
  max_connections_per_ip: 5
  session_timeout: 10m
  max_line_bytes: 1000
  line_endings: fix
  allowed_senders: ["*@Example.com", app@example.org, "<>"]
  allowed_recipients: ["*"]
  users:
    - {username: a, password_env: QQ_AUTH_CODE}
    - {username: b, password_file: %q}
    - {username: c, bcrypt_hash: %q}
  tls: {cert_file: %q, key_file: %q, min_version: "1.0"}
%s`, pw, hash, cert, key, minimal)
	c := mustParse(t, src)
	l := c.Listen
	if l.MaxConnectionsPerIP != 5 || l.SessionTimeout != 10*time.Minute || l.MaxLineBytes != 1000 || l.LineEndings != LineEndingsFix ||
		!reflect.DeepEqual(l.AllowedSenders, []string{"*@example.com", "app@example.org", "<>"}) ||
		!reflect.DeepEqual(l.AllowedRecipients, []string{"*"}) || len(l.Users) != 3 ||
		l.Users[0].Password.Reveal() != "authcode-for-tests" || l.Users[1].Password.Reveal() != "file-secret" ||
		l.Users[2].BcryptHash != hash || l.TLS.MinVersion != tls.VersionTLS10 || l.TLS.Cert == nil {
		t.Errorf("Listen = %+v", l)
	}
	out := c.Effective()
	if strings.Contains(string(out), "file-secret") || strings.Contains(string(out), "authcode-for-tests") {
		t.Errorf("Effective shows a password:\n%s", out)
	}
	if c2, err := Parse("test.yaml", out, testEnv); err != nil || !reflect.DeepEqual(c2.Listen.Users, l.Users) ||
		c2.Listen.TLS.MinVersion != l.TLS.MinVersion || string(c2.Effective()) != string(out) {
		t.Errorf("Parse(Effective()) = %v\n%s", err, out)
	}
	for _, bad := range []struct{ src, want string }{
		{"listen: {line_endings: lf}\n", `want "reject" or "fix"`},
		{"listen: {max_line_bytes: 100}\n", "from 1000"},
		{"listen: {allowed_senders: [\"*.example.com\"]}\n", "address patterns"},
		{"listen: {allowed_recipients: [\"<>\"]}\n", "address patterns"},
		{"listen: {allowed_senders: []}\n", "at least one pattern"},
		{"listen: {users: [{username: a, bcrypt_hash: nothash}]}\n", "want a bcrypt hash"},
		{"listen: {users: [{username: a}]}\n", "password_env, password_file or bcrypt_hash"},
		{"listen: {users: [{username: a, password_env: QQ_USER, bcrypt_hash: x}]}\n", "not two"},
		{"listen: {users: [{username: a, password_env: QQ_USER}, {username: a, password_env: QQ_USER}]}\n", "listed twice"},
		{"listen: {tls: {min_version: \"1.0\"}}\n", "used only with cert_file"},
		{"listen: {tls: {cert_file: x.pem}}\n", "set key_file too"},
	} {
		if msg := listenErr(t, bad.src+minimal); !strings.Contains(msg, bad.want) {
			t.Errorf("%q: error %q, want %q", bad.src, msg, bad.want)
		}
	}
}
