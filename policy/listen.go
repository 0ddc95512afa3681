package policy

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// listen.line_endings values.
const (
	// LineEndingsReject refuses a message with a bare LF (550 5.6.0); the default.
	LineEndingsReject = "reject"
	// LineEndingsFix turns a bare LF in DATA into CRLF, for trusted legacy
	// programs that write Unix line endings. A bare CR is refused either way.
	LineEndingsFix = "fix"
)

// Defaults of the listen keys read here.
const (
	defaultSessionTimeout = 30 * time.Minute
	defaultMaxLineBytes   = 2000 // RFC 5321's 1000-octet text line, doubled as go-smtp does
	// listen.max_transactions and transaction_wait: see relay/txn.go for
	// what they bought on the bench machine.
	defaultMaxTransactions = 32
	defaultTransactionWait = 2 * time.Second
	minLineBytes           = 1000 // RFC 5321 4.5.3.1.6: a server must take 1000-octet lines
	maxLineBytesLimit      = 1 << 20
)

// User is an inbound AUTH account (listen.users). Exactly one of Password
// and BcryptHash is set.
type User struct {
	Username     string
	Password     Secret // from password_env or password_file
	PasswordFrom string // "env NAME" or "file PATH"; "" with BcryptHash
	BcryptHash   string // "$2a$..", "$2b$.." or "$2y$.." (bcrypt_hash), written in the file
}

// ListenTLS is inbound STARTTLS (listen.tls). It is offered only when Cert is set.
type ListenTLS struct {
	CertFile, KeyFile string
	// Cert is the server's certificate and key, reloaded when the files
	// change (the same loader as a provider's client certificate).
	Cert       *ClientCert
	MinVersion uint16 // tls.VersionTLS12 by default; "1.0"/"1.1" for old clients
}

// bcryptRE is the modular crypt format of bcrypt: $2a$, $2b$ or $2y$, a
// two-digit cost, 22 characters of salt and 31 of hash.
var bcryptRE = regexp.MustCompile(`^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$`)

// listenAccess reads the listen keys of issue 6: limits, line endings,
// allow-lists, users and inbound TLS. l has the other keys read already.
func (d *decoder) listenAccess(s *section, l *Listen) {
	l.MaxConnectionsPerIP = l.MaxConnections
	l.SessionTimeout = defaultSessionTimeout
	l.MaxLineBytes = defaultMaxLineBytes
	l.LineEndings = LineEndingsReject
	l.TLS.MinVersion = tls.VersionTLS12
	s.integer("max_connections_per_ip", 1, maxInt, &l.MaxConnectionsPerIP)
	s.duration("session_timeout", &l.SessionTimeout)
	l.MaxTransactions, l.TransactionWait = defaultMaxTransactions, defaultTransactionWait
	s.integer("max_transactions", 1, maxInt, &l.MaxTransactions)
	s.duration("transaction_wait", &l.TransactionWait)
	s.integer("max_line_bytes", minLineBytes, maxLineBytesLimit, &l.MaxLineBytes)
	s.oneOf("line_endings", &l.LineEndings, LineEndingsReject, LineEndingsFix)
	l.AllowedSenders = d.patterns(s, "allowed_senders", true)
	l.AllowedRecipients = d.patterns(s, "allowed_recipients", false)
	l.Users = d.users(s)
	l.TLS = d.listenTLS(d.child(s, "tls", schema["listen.tls"]...))
}

// patterns reads an allow-list of address patterns: "*" (any address),
// "*@example.com" (any address at that domain, not its subdomains) or
// "app@example.com"; with null, also "<>" for the null sender. They are
// stored lowercase; matching ignores case.
func (d *decoder) patterns(s *section, key string, null bool) []string {
	const want = `address patterns such as "*@example.com", "app@example.com" or "*"`
	items, lines, ok := s.list(key, want)
	if !ok {
		return nil
	}
	if len(items) == 0 {
		d.errorf(d.lineOf(s.sub(key)), s.sub(key), "want at least one pattern: an empty list would refuse all mail (leave the key out for no restriction)")
		return nil
	}
	out := make([]string, 0, len(items))
	for i, p := range items {
		if !validPattern(p, null) {
			extra := ""
			if null {
				extra = `, or "<>" for the null sender`
			}
			d.errorf(lines[i], fmt.Sprintf("%s[%d]", s.sub(key), i), "want %s%s, got %q", want, extra, p)
			continue
		}
		out = append(out, strings.ToLower(p))
	}
	return out
}

// validPattern checks one allow-list pattern.
func validPattern(p string, null bool) bool {
	switch {
	case p == "*":
		return true
	case p == "<>":
		return null
	}
	local, domain, ok := strings.Cut(p, "@")
	if !ok || local == "" || strings.Contains(domain, "@") || !validHostname(domain) || strings.HasSuffix(domain, ".") {
		return false
	}
	if local == "*" {
		return true
	}
	return !strings.ContainsAny(local, "* \t\r\n<>\"\\\x00") && plainAddress(p)
}

// users reads listen.users, a list of {username, password_env | password_file | bcrypt_hash}.
func (d *decoder) users(s *section) []User {
	v, line, ok := s.value("users")
	if !ok || isNull(v) {
		return nil
	}
	if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
		d.errorf(line, s.sub("users"), "want a list of users such as - {username: app, password_env: RELAY_APP_PASSWORD}, got %s", describe(v))
		return nil
	}
	var us []User
	for i, it := range v.Content {
		path := fmt.Sprintf("%s[%d]", s.sub("users"), i)
		itLine := lineOr(it, line)
		d.lines[path] = itLine
		us = append(us, d.user(d.section(it, path, itLine, schema["listen.users[]"]...), us))
	}
	return us
}

// user reads one inbound account; prev are the ones before it.
func (d *decoder) user(s *section, prev []User) User {
	var u User
	line, ok := s.str("username", &u.Username)
	switch {
	case !s.has("username"):
		d.errorf(s.line, s.sub("username"), "required: the name the app logs in with")
	case ok && (u.Username == "" || len(u.Username) > 255 || strings.ContainsAny(u.Username, "\r\n\x00")):
		d.errorf(line, s.sub("username"), "want a user name (1 to 255 bytes, no CR, LF or NUL), got %q", u.Username)
	case ok && slices.ContainsFunc(prev, func(p User) bool { return p.Username == u.Username }):
		d.errorf(line, s.sub("username"), "user %q is listed twice: list each user once", u.Username)
	}
	hl, hasHash := s.str("bcrypt_hash", &u.BcryptHash)
	if hasHash && !bcryptRE.MatchString(u.BcryptHash) {
		d.errorf(hl, s.sub("bcrypt_hash"), "want a bcrypt hash such as $2a$10$... (htpasswd -nbB user pw, or any bcrypt tool), got a value that is not one (not shown)")
	}
	var given bool
	u.Password, u.PasswordFrom, given = d.secret(s, "password_env", "password_file")
	switch {
	case given && s.has("bcrypt_hash"):
		d.errorf(hl, s.sub("bcrypt_hash"), "set one of password_env, password_file or bcrypt_hash, not two")
	case !given && !s.has("bcrypt_hash"):
		d.errorf(s.line, s.sub("password_env"), "required: set password_env, password_file or bcrypt_hash")
	}
	return u
}

// listenTLS reads listen.tls: cert_file and key_file (both, loaded now) and min_version.
func (d *decoder) listenTLS(s *section) ListenTLS {
	t := ListenTLS{MinVersion: tls.VersionTLS12}
	d.version(s, "min_version", &t.MinVersion)
	var ct TLS
	d.clientCert(s, &ct)
	t.Cert = ct.ClientCert
	if t.Cert != nil {
		t.CertFile, t.KeyFile = t.Cert.CertFile(), t.Cert.KeyFile()
	}
	if (s.has("min_version")) && !s.has("cert_file") && !s.has("key_file") {
		d.errorf(d.lineOf(s.sub("min_version")), s.sub("min_version"), "used only with cert_file and key_file (inbound STARTTLS is off without them)")
	}
	return t
}

// checkExposure applies the exposure rule (docs/design.md, Decisions): a listener on a host that is
// not loopback needs an explicit allowed_networks, or inbound AUTH. With AUTH
// and no allowed_networks, every client may connect and must log in, which
// needs STARTTLS (plaintext AUTH is refused off loopback).
func (d *decoder) checkExposure(s *section, l *Listen, addrLine int) {
	host, _, err := net.SplitHostPort(l.Addr)
	if err != nil || isLoopbackHost(host) || s.has("allowed_networks") {
		return
	}
	line := lineOrDefault(addrLine, s.line)
	switch {
	case len(l.Users) == 0:
		d.errorf(line, s.sub("addr"),
			"%s is not a loopback address, so anyone who can reach it could send mail through your providers (an open relay): "+
				"list the clients that may connect in listen.allowed_networks, e.g. allowed_networks: [10.0.0.0/8], "+
				"or require inbound AUTH with listen.users (and listen.tls)", l.Addr)
	case l.TLS.Cert == nil:
		d.errorf(line, s.sub("addr"),
			"%s is not a loopback address and listen.users is set without listen.tls: clients off loopback could never log in "+
				"(plaintext AUTH is refused there); set listen.tls.cert_file and key_file, or list the clients in listen.allowed_networks", l.Addr)
	default:
		l.AllowedNetworks = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	}
}

// effectiveUser is one of listen.users for Effective: the password by source.
type effectiveUser struct {
	Username     string `yaml:"username"`
	PasswordEnv  string `yaml:"password_env,omitempty"`
	PasswordFile string `yaml:"password_file,omitempty"`
	BcryptHash   string `yaml:"bcrypt_hash,omitempty"`
}

// effectiveListenTLS is listen.tls for Effective; nil when off.
type effectiveListenTLS struct {
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	MinVersion string `yaml:"min_version"`
}

// effectiveAccess renders the keys read by listenAccess into e.
func (l Listen) effectiveAccess(e *effectiveListen) {
	e.MaxConnectionsPerIP = l.MaxConnectionsPerIP
	e.SessionTimeout = formatDuration(l.SessionTimeout)
	e.MaxTransactions = l.MaxTransactions
	e.TransactionWait = formatDuration(l.TransactionWait)
	e.MaxLineBytes = l.MaxLineBytes
	e.LineEndings = l.LineEndings
	e.AllowedSenders = l.AllowedSenders
	e.AllowedRecipients = l.AllowedRecipients
	for _, u := range l.Users {
		eu := effectiveUser{Username: u.Username, BcryptHash: u.BcryptHash}
		eu.PasswordEnv, eu.PasswordFile = source(u.PasswordFrom, "")
		e.Users = append(e.Users, eu)
	}
	if l.TLS.Cert != nil {
		e.TLS = &effectiveListenTLS{l.TLS.CertFile, l.TLS.KeyFile, versionName(l.TLS.MinVersion)}
	}
}
