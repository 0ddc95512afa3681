package policy

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The effective* types mirror relay.yaml's keys, in its order, for Effective.
type (
	effectiveConfig struct {
		Listen    effectiveListen              `yaml:"listen"`
		Queue     effectiveQueue               `yaml:"queue"`
		Providers map[string]effectiveProvider `yaml:"providers"`
		Routes    []effectiveRoute             `yaml:"routes,omitempty"`
		Default   []string                     `yaml:"default,flow"`
		Admin     effectiveAdmin               `yaml:"admin"`
		Log       effectiveLog                 `yaml:"log"`
		Sendmail  *effectiveSendmail           `yaml:"sendmail,omitempty"`
	}
	effectiveSendmail struct {
		From string `yaml:"from"`
	}
	effectiveAdmin struct {
		Addr          string `yaml:"addr"`
		ReadyMaxQueue int    `yaml:"ready_max_queue"`
		TokenEnv      string `yaml:"token_env,omitempty"`
		TokenFile     string `yaml:"token_file,omitempty"`
	}
	effectiveLog struct {
		Format string `yaml:"format"`
		Level  string `yaml:"level"`
	}
	effectiveListen struct {
		Addr                string              `yaml:"addr"`
		Hostname            string              `yaml:"hostname"`
		MaxMessageBytes     any                 `yaml:"max_message_bytes"`
		MaxRecipients       int                 `yaml:"max_recipients"`
		MaxConnections      int                 `yaml:"max_connections"`
		MaxConnectionsPerIP int                 `yaml:"max_connections_per_ip"`
		ReadTimeout         string              `yaml:"read_timeout"`
		WriteTimeout        string              `yaml:"write_timeout"`
		SessionTimeout      string              `yaml:"session_timeout"`
		MaxTransactions     int                 `yaml:"max_transactions"`
		TransactionWait     string              `yaml:"transaction_wait"`
		MaxLineBytes        int                 `yaml:"max_line_bytes"`
		LineEndings         string              `yaml:"line_endings"`
		AllowedNetworks     []string            `yaml:"allowed_networks,flow"`
		AllowedSenders      []string            `yaml:"allowed_senders,flow,omitempty"`
		AllowedRecipients   []string            `yaml:"allowed_recipients,flow,omitempty"`
		Users               []effectiveUser     `yaml:"users,omitempty"`
		TLS                 *effectiveListenTLS `yaml:"tls,omitempty"`
	}
	effectiveQueue struct {
		Dir        string         `yaml:"dir"`
		Retry      effectiveRetry `yaml:"retry,flow"`
		MaxAge     string         `yaml:"max_age"`
		MaxBytes   any            `yaml:"max_bytes"`
		MaxItems   int            `yaml:"max_items"`
		Workers    int            `yaml:"workers"`
		BounceTo   string         `yaml:"bounce_to"`
		BounceRate string         `yaml:"bounce_rate"`
		Delay      string         `yaml:"delay_warning,omitempty"`
		DeadAge    string         `yaml:"dead_max_age"`
		DeadBytes  any            `yaml:"dead_max_bytes"`
	}
	effectiveRetry struct {
		Initial string  `yaml:"initial"`
		Max     string  `yaml:"max"`
		Factor  float64 `yaml:"factor"`
		Jitter  float64 `yaml:"jitter"`
	}
	effectiveProvider struct {
		Preset         string            `yaml:"preset,omitempty"`
		Region         string            `yaml:"region,omitempty"`
		Host           string            `yaml:"host"`
		Port           int               `yaml:"port"`
		MaxConnections int               `yaml:"max_connections"`
		Rate           string            `yaml:"rate,omitempty"` // "" = no limit
		MaxMessages    int               `yaml:"max_messages_per_connection"`
		IdleTimeout    string            `yaml:"idle_timeout"`
		Timeouts       effectiveTimeouts `yaml:"timeouts,flow"`
		RewriteSender  string            `yaml:"rewrite_sender,omitempty"`
		TLS            effectiveTLS      `yaml:"tls"`
		Auth           *effectiveAuth    `yaml:"auth,omitempty"`
	}
	effectiveTLS struct {
		Mode               string   `yaml:"mode"`
		MinVersion         string   `yaml:"min_version"`
		MaxVersion         string   `yaml:"max_version"`
		Ciphers            []string `yaml:"ciphers,flow"`
		ServerName         string   `yaml:"server_name"`
		CAFile             string   `yaml:"ca_file,omitempty"`
		PinSHA256          []string `yaml:"pin_sha256,flow,omitempty"`
		CertFile           string   `yaml:"cert_file,omitempty"`
		KeyFile            string   `yaml:"key_file,omitempty"`
		InsecureSkipVerify bool     `yaml:"insecure_skip_verify"`
	}
	effectiveAuth struct {
		Mechanism    string           `yaml:"mechanism"`
		Username     string           `yaml:"username,omitempty"`
		UsernameEnv  string           `yaml:"username_env,omitempty"`
		PasswordEnv  string           `yaml:"password_env,omitempty"`
		PasswordFile string           `yaml:"password_file,omitempty"`
		OAuth2       *effectiveOAuth2 `yaml:"oauth2,omitempty"`
	}
	effectiveRoute struct {
		Sender          string   `yaml:"sender,omitempty"`
		SenderDomain    string   `yaml:"sender_domain,omitempty"`
		RecipientDomain string   `yaml:"recipient_domain,omitempty"`
		Providers       []string `yaml:"providers,flow"`
	}
)

// Effective returns the configuration with every default filled in, as YAML
// with relay.yaml's key names, for `tlsrelay check`. Providers are sorted by
// name, so the output is deterministic. Credentials appear only as where they
// come from (username_env, password_env, password_file), never as values; a
// username written in the file is shown as written. Parse accepts the output
// (given the same environment) and yields the same configuration.
func (c *Config) Effective() []byte {
	e := effectiveConfig{
		Listen:    c.effectiveListen(),
		Queue:     c.effectiveQueue(),
		Providers: map[string]effectiveProvider{},
		Default:   c.Default,
		Admin:     c.Admin.effective(),
		Log:       effectiveLog{c.Log.Format, c.Log.Level},
	}
	if c.Sendmail.From != "" {
		e.Sendmail = &effectiveSendmail{c.Sendmail.From}
	}
	for name, p := range c.Providers {
		e.Providers[name] = effectiveProviderOf(p)
	}
	for _, r := range c.Routes {
		e.Routes = append(e.Routes, effectiveRoute{r.Sender, r.SenderDomain, r.RecipientDomain, r.Providers})
	}
	var b bytes.Buffer
	b.WriteString("# effective configuration")
	if c.File != "" {
		b.WriteString(" of " + c.File)
	}
	b.WriteString(": every default filled in; credentials shown by source, never by value\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&e); err != nil { // cannot happen: plain strings, numbers and lists
		return []byte(fmt.Sprintf("# cannot render the effective configuration: %v\n", err))
	}
	enc.Close()
	return b.Bytes()
}

func (c *Config) effectiveListen() effectiveListen {
	l := c.Listen
	nets := make([]string, len(l.AllowedNetworks))
	for i, n := range l.AllowedNetworks {
		nets[i] = n.String()
	}
	e := effectiveListen{
		Addr:            l.Addr,
		Hostname:        l.Hostname,
		MaxMessageBytes: sizeValue(l.MaxMessageBytes),
		MaxRecipients:   l.MaxRecipients,
		MaxConnections:  l.MaxConnections,
		ReadTimeout:     formatDuration(l.ReadTimeout),
		WriteTimeout:    formatDuration(l.WriteTimeout),
		AllowedNetworks: nets,
	}
	l.effectiveAccess(&e)
	return e
}

func (c *Config) effectiveQueue() effectiveQueue {
	q := c.Queue
	return effectiveQueue{
		Dir: q.Dir,
		Retry: effectiveRetry{
			Initial: formatDuration(q.Retry.Initial),
			Max:     formatDuration(q.Retry.Max),
			Factor:  q.Retry.Factor,
			Jitter:  q.Retry.Jitter,
		},
		MaxAge:     formatDuration(q.MaxAge),
		MaxBytes:   sizeValue(q.MaxBytes),
		MaxItems:   q.MaxItems,
		Workers:    q.Workers,
		BounceTo:   q.BounceTo,
		BounceRate: q.BounceRate.String(),
		Delay:      delayWarning(q.DelayWarning),
		DeadAge:    formatDuration(q.DeadMaxAge),
		DeadBytes:  sizeValue(q.DeadMaxBytes),
	}
}

func (a Admin) effective() effectiveAdmin {
	e := effectiveAdmin{Addr: a.Addr, ReadyMaxQueue: a.ReadyMaxQueue}
	e.TokenEnv, e.TokenFile = source(a.TokenFrom, "")
	return e
}

func delayWarning(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return formatDuration(d)
}

func effectiveProviderOf(p *Provider) effectiveProvider {
	return effectiveProvider{
		Preset:         p.Preset,
		Region:         p.Region,
		Host:           p.Host,
		Port:           p.Port,
		MaxConnections: p.MaxConnections,
		Rate:           p.Rate.String(),
		MaxMessages:    p.MaxMessagesPerConnection,
		IdleTimeout:    formatDuration(p.IdleTimeout),
		Timeouts:       p.Timeouts.effective(),
		RewriteSender:  p.RewriteSender,
		TLS:            effectiveTLSOf(p.TLS),
		Auth:           effectiveAuthOf(p.Auth),
	}
}

// versionName maps a crypto/tls version back to its min_version spelling.
func versionName(v uint16) string {
	for name, ver := range tlsVersions {
		if ver == v {
			return name
		}
	}
	return "0x" + strconv.FormatUint(uint64(v), 16)
}

// formatSize renders n in the largest of GiB, MiB or KiB that divides it.
func formatSize(n int64) string {
	for _, u := range []string{"GiB", "MiB", "KiB"} {
		if m := sizeUnits[u]; n >= m && n%m == 0 {
			return strconv.FormatInt(n/m, 10) + u
		}
	}
	return strconv.FormatInt(n, 10)
}

// sizeValue is formatSize as YAML: a number when no unit divides n.
func sizeValue(n int64) any {
	if s := formatSize(n); !strings.HasSuffix(s, "iB") {
		return n
	}
	return formatSize(n)
}

// formatDuration renders d as time.Duration.String does, without zero tails:
// "2m" rather than "2m0s", "120h" rather than "120h0m0s".
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
