// Package policy turns relay.yaml and the environment into a validated,
// immutable *Config: listener settings, the spool, the upstream providers with
// their TLS and auth policy, and the routes that map each recipient to an
// ordered list of providers. It imports nothing of this project.
//
// Load and Parse are strict: unknown keys, duplicate keys and wrong types are
// errors, and all errors are reported at once, one per line, sorted by line.
// Config.Effective renders the result back as YAML for `tlsrelay check`.
//
// Load never logs and never prints a secret: values read from environment
// variables or secret files are held as Secret, whose String and MarshalText
// redact. Every error names the file, the line, the key and what was expected.
package policy

import (
	"crypto/x509"
	"net/netip"
	"strconv"
	"time"
)

// Config is the validated configuration, every default filled in.
//
// A Config is read-only: Load and Parse build a new one each time, and it is
// shared by every goroutine of the relay without locks, so no caller may
// change a field, a map or a slice in it. Route returns copies; to change the
// configuration, load it again.
type Config struct {
	File      string               // the file it was loaded from ("" for an embedded config)
	Listen    Listen               // inbound SMTP
	Queue     Queue                // spool and retry policy
	Providers map[string]*Provider // by name
	Routes    []Route              // first match wins
	Default   []string             // providers for mail that no route matches
	Admin     Admin
	Log       Log
	Sendmail  Sendmail // `tlsrelay sendmail`; the relay itself does not read it

	warnings []string // found while decoding; see Warnings
}

// Listen is the inbound SMTP listener.
type Listen struct {
	Addr            string         // host:port; never empty
	Hostname        string         // our name in the greeting and Received header
	MaxMessageBytes int64          // DATA limit (552 5.3.4 past it)
	MaxRecipients   int            // RCPTs per message (452 4.5.3 past it)
	MaxConnections  int            // concurrent inbound connections
	ReadTimeout     time.Duration  // per read, and for the whole DATA
	WriteTimeout    time.Duration  // per write
	AllowedNetworks []netip.Prefix // client addresses allowed to connect
	// The rest is read by policy/listen.go.
	MaxConnectionsPerIP int           // concurrent connections from one client address (421 4.7.0 past it)
	SessionTimeout      time.Duration // lifetime of one connection, however busy (421 4.4.2 past it)
	MaxLineBytes        int           // longest line, CRLF included, in commands and DATA
	LineEndings         string        // LineEndingsReject (default) or LineEndingsFix
	AllowedSenders      []string      // patterns for MAIL FROM; nil = any sender (see AddressPattern)
	AllowedRecipients   []string      // patterns for RCPT TO; nil = any routable recipient
	Users               []User        // inbound AUTH accounts; nil = no inbound AUTH
	TLS                 ListenTLS     // inbound STARTTLS; off when TLS.Cert is nil
	// MaxTransactions bounds the sessions inside a mail transaction (MAIL
	// to the end of DATA, RSET or QUIT) at once; a MAIL beyond it waits up
	// to TransactionWait for a slot, then goes ahead anyway (relay/txn.go).
	MaxTransactions int
	TransactionWait time.Duration
}

// Queue is the durable spool and its retry policy.
type Queue struct {
	Dir      string
	Retry    Retry
	MaxAge   time.Duration // then dead-letter
	MaxBytes int64         // spool budget; full -> 452 4.3.1
	MaxItems int           // spool budget in messages; 0 = no limit
	Workers  int           // concurrent deliveries; default: the providers' max_connections summed
	// BounceTo is where delivery status notifications go: "" (none),
	// "sender" (the envelope sender) or an address.
	BounceTo string
	// BounceRate caps the notices sent to senders of one domain when
	// BounceTo is "sender", so forged senders cannot turn the relay into a
	// source of backscatter; the rest are logged as suppressed. Default 10/h.
	BounceRate Rate
	// DelayWarning sends one "still trying" notice after this long; 0 = never.
	DelayWarning time.Duration
	// DeadMaxAge removes dead letters older than this (logged). Default 720h.
	DeadMaxAge time.Duration
	// DeadMaxBytes is dead/'s own budget: past it, the oldest dead letters
	// are removed (logged), so failures cannot fill the disk. Default 256MiB.
	DeadMaxBytes int64
}

// Retry is the backoff schedule: Initial*Factor^(n-1), capped at Max, +-Jitter.
type Retry struct {
	Initial time.Duration
	Max     time.Duration
	Factor  float64
	Jitter  float64 // 0..1, fraction of the delay
}

// TLSMode says how a provider's connection is secured.
type TLSMode string

const (
	TLSImplicit TLSMode = "implicit" // TLS from the first byte (port 465)
	TLSStartTLS TLSMode = "starttls" // plain connect, STARTTLS required (port 587)
	TLSNone     TLSMode = "none"     // plaintext: allowed only for a loopback host
)

// Provider is one upstream SMTP service and the exact policy to reach it.
type Provider struct {
	Name string
	// Preset is the name of the preset whose values fill the keys the file
	// leaves out ("" for none); see policy/preset.go.
	Preset string
	// Region picks the preset's regional endpoint (aws-ses: "us-east-1";
	// mailgun: "us" or "eu"; tencent-ses: "ap-hongkong" ...); "" for none.
	Region         string
	Host           string
	Port           int
	TLS            TLS
	Auth           Auth
	MaxConnections int // concurrent connections to this provider
	// Rate paces the deliveries to this provider: the queue waits for the
	// next slot, inbound mail is never refused for it. The zero Rate (the
	// default) means no limit.
	Rate Rate
	// MaxMessagesPerConnection is how many messages one upstream connection
	// carries (RSET between them) before it is closed; 1 = no reuse.
	// Default 100.
	MaxMessagesPerConnection int
	// IdleTimeout is how long an idle upstream connection is kept open for
	// the next message to this provider. Default 30s.
	IdleTimeout time.Duration
	// Timeouts bound each reply and the whole attempt (policy/timeouts.go).
	Timeouts Timeouts
	// RewriteSender, when set, replaces the envelope sender and the From:
	// header's address on the way to this provider (a Reply-To: keeps the
	// original); the null sender is never rewritten. "" = off.
	RewriteSender string
}

// Addr returns host:port.
func (p *Provider) Addr() string { return joinHostPort(p.Host, p.Port) }

// Rate is a sending limit: at most N messages per Per, which is a second, a
// minute or an hour (rate: 20/s, 30/m, 1000/h). The zero Rate means no limit.
type Rate struct {
	N   int
	Per time.Duration
}

// String renders r as relay.yaml writes it ("20/s"), or "" for no limit.
func (r Rate) String() string {
	if r.N <= 0 {
		return ""
	}
	for _, u := range rateUnits {
		if u.per == r.Per {
			return strconv.Itoa(r.N) + "/" + u.name
		}
	}
	return strconv.Itoa(r.N) + "/" + r.Per.String()
}

// TLS is a provider's TLS policy; see policy/tls.go for the keys and their
// checks, and upstream.TLSConfig for the crypto/tls config built from it.
type TLS struct {
	Mode       TLSMode
	MinVersion uint16 // tls.VersionTLS12 by default
	MaxVersion uint16 // tls.VersionTLS13 by default
	// Ciphers is tls.ciphers as written ("default" and Go suite names), nil
	// when not given. CipherSuites is its expansion for crypto/tls: nil means
	// Go's own defaults (no legacy suite); TLS 1.3 suites are never listed.
	Ciphers      []string
	CipherSuites []uint16
	ServerName   string         // name checked in the certificate; defaults to Host
	CAFile       string         // "" = system roots
	RootCAs      *x509.CertPool // loaded from CAFile; nil = system roots
	// PinSHA256 are SHA-256 hashes of the leaf certificate's public key
	// (SubjectPublicKeyInfo); when set, the leaf must match one of them, in
	// addition to the chain check (or instead of it with InsecureSkipVerify).
	PinSHA256 [][32]byte
	// ClientCert is the mTLS client certificate from cert_file and key_file,
	// nil without; it reloads itself when the files change.
	ClientCert *ClientCert
	// InsecureSkipVerify turns off the chain and name checks (pins still
	// apply). Config.Warnings reports it.
	InsecureSkipVerify bool
}

// Auth is a provider's SMTP AUTH policy. Mechanism "" means no AUTH.
type Auth struct {
	// Mechanism is "plain", "login", "xoauth2", or "auto": the first of
	// XOAUTH2 (with OAuth2), PLAIN, LOGIN (with Password) the server offers.
	Mechanism    string
	Username     string
	UsernameFrom string  // where Username came from: "username", "env FOO"
	Password     Secret  // "" with mechanism xoauth2
	PasswordFrom string  // "env FOO" or "file /run/secrets/x": named, never the value
	OAuth2       *OAuth2 // token source for XOAUTH2; nil without auth.oauth2
}

// OAuth2 flows (auth.oauth2.flow).
const (
	FlowRefreshToken      = "refresh_token"      // a long-lived refresh token buys access tokens
	FlowClientCredentials = "client_credentials" // the client's own id and secret buy them
)

// OAuth2 is where XOAUTH2 access tokens come from: the provider's token
// endpoint, asked with golang.org/x/oauth2 by package upstream.
type OAuth2 struct {
	Flow             string // FlowRefreshToken (default) or FlowClientCredentials
	TokenURL         string // https, or http for a loopback host
	ClientID         string
	ClientIDFrom     string   // "client_id" or "env FOO"
	ClientSecret     Secret   // "" for a public client (refresh_token flow only)
	ClientSecretFrom string   // "env FOO" or "file /path", "" without
	RefreshToken     Secret   // refresh_token flow only
	RefreshTokenFrom string   // "env FOO" or "file /path"
	Scopes           []string // client_credentials flow only
}

// Route sends matching mail to Providers, in order (failover).
// Empty match fields match everything; all non-empty fields must match.
type Route struct {
	Sender          string // exact envelope sender address
	SenderDomain    string
	RecipientDomain string
	Providers       []string
}

// Admin is the HTTP admin endpoint: /metrics, /healthz, /readyz and the
// queue API. Addr "" = off.
type Admin struct {
	Addr string
	// ReadyMaxQueue makes /readyz fail while more messages than this are
	// queued; 0 = never (a provider outage must not take a sidecar's pod
	// out of service by default).
	ReadyMaxQueue int
	// Token, from token_env or token_file, turns on the queue API on Addr:
	// each queue request then needs "Authorization: Bearer <Token>". Empty
	// = Addr serves only GET/HEAD of /metrics, /healthz and /readyz.
	Token     Secret
	TokenFrom string // "env NAME" or "file PATH", never the value
}

// Sendmail configures `tlsrelay sendmail` (the /usr/sbin/sendmail
// interface): From is the envelope sender when the caller gives none with
// -f or -r; "" = $USER@ the host name.
type Sendmail struct {
	From string
}

// Log selects the log format and level.
type Log struct {
	Format string // "text" | "json"
	Level  string // "debug" | "info" | "warn" | "error"
}

// Secret holds a credential. It never prints itself.
type Secret string

const redacted = "[redacted]"

// String returns "[redacted]" (or "" for an empty secret).
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return s.String() }

// MarshalText keeps encoders (JSON, YAML, slog) from printing the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reveal returns the credential itself, for the one place that sends it.
func (s Secret) Reveal() string { return string(s) }
