package policy

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// presetEnv holds the variables the preset tests name.
var presetEnv = mapEnv(map[string]string{
	"USER": "me@example.com", "PASS": "app-password-value",
	"CID": "client-id", "CSECRET": "client-secret-value", "RTOKEN": "refresh-token-value",
})

func parsePreset(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse("preset.yaml", []byte(src), presetEnv)
	if err != nil {
		t.Fatalf("Parse:\n%v\nconfig:\n%s", err, src)
	}
	return c
}

// parseErr parses src and returns its error, failing if there is none.
func parseErr(t *testing.T, src string) string {
	t.Helper()
	c, err := Parse("preset.yaml", []byte(src), presetEnv)
	if err == nil {
		t.Fatalf("Parse succeeded, want an error; config:\n%s\neffective:\n%s", src, c.Effective())
	}
	return err.Error()
}

// TestPresetsParse checks that every preset's data is a mapping of keys
// that this build's schema knows, so that fill skips none of them.
func TestPresetsParse(t *testing.T) {
	for _, name := range PresetNames() {
		def, err := presets[name].node(7)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		checkKnown(t, name, def, "providers.*")
	}
}

func checkKnown(t *testing.T, preset string, m *yaml.Node, kind string) {
	t.Helper()
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if !slices.Contains(schema[kind], k.Value) {
			t.Errorf("preset %s: key %s.%s is not in the schema", preset, kind, k.Value)
		}
		if k.Line != 7 || v.Line != 7 {
			t.Errorf("preset %s: %s has line %d, want the preset key's", preset, k.Value, k.Line)
		}
		if v.Kind == yaml.MappingNode {
			checkKnown(t, preset, v, kind+"."+k.Value)
		}
	}
}

func TestPresetValues(t *testing.T) {
	cases := []struct {
		preset, extra string
		addr          string
		mode          TLSMode
		mech          string
		conns         int
	}{
		{"gmail", "", "smtp.gmail.com:465", TLSImplicit, "auto", 4},
		{"outlook", "", "smtp.office365.com:587", TLSStartTLS, "auto", 3},
		{"qq", "", "smtp.qq.com:465", TLSImplicit, "auto", 4},
		{"163", "", "smtp.163.com:465", TLSImplicit, "auto", 4},
		{"tencent-ses", "", "smtp.qcloudmail.com:465", TLSImplicit, "login", 4},
		{"tencent-ses", "region: ap-guangzhou", "gz-smtp.qcloudmail.com:465", TLSImplicit, "login", 4},
		{"aws-ses", "region: us-east-1", "email-smtp.us-east-1.amazonaws.com:587", TLSStartTLS, "auto", 4},
		{"aws-ses", "region: eu-west-2", "email-smtp.eu-west-2.amazonaws.com:587", TLSStartTLS, "auto", 4},
		{"sendgrid", "", "smtp.sendgrid.net:587", TLSStartTLS, "auto", 4},
		{"mailgun", "", "smtp.mailgun.org:587", TLSStartTLS, "auto", 4},
		{"mailgun", "region: eu", "smtp.eu.mailgun.org:587", TLSStartTLS, "auto", 4},
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		seen[tc.preset] = true
		src := "providers:\n  p:\n    preset: " + tc.preset + "\n"
		if tc.extra != "" {
			src += "    " + tc.extra + "\n"
		}
		src += "    auth: {username_env: USER, password_env: PASS}\n"
		p := parsePreset(t, src).Providers["p"]
		host, _, _ := strings.Cut(tc.addr, ":")
		if p.Addr() != tc.addr || p.TLS.Mode != tc.mode || p.Auth.Mechanism != tc.mech || p.MaxConnections != tc.conns ||
			p.Preset != tc.preset || p.TLS.ServerName != host || p.TLS.MinVersion != tls.VersionTLS12 {
			t.Errorf("preset %s %s: %s %s mech %s conns %d preset %q server_name %q; want %s %s %s %d",
				tc.preset, tc.extra, p.Addr(), p.TLS.Mode, p.Auth.Mechanism, p.MaxConnections, p.Preset, p.TLS.ServerName,
				tc.addr, tc.mode, tc.mech, tc.conns)
		}
		wantCiphers := []string(nil)
		if tc.preset == "tencent-ses" {
			wantCiphers = []string{"default", "TLS_RSA_WITH_AES_256_CBC_SHA"}
		}
		if !reflect.DeepEqual(p.TLS.Ciphers, wantCiphers) {
			t.Errorf("preset %s: tls.ciphers %v, want %v", tc.preset, p.TLS.Ciphers, wantCiphers)
		}
	}
	for _, name := range PresetNames() {
		if !seen[name] {
			t.Errorf("preset %s has no case", name)
		}
	}
}

func TestPresetOverrides(t *testing.T) {
	c := parsePreset(t, `providers:
  port-only: {preset: gmail, port: 587}
  mode-only: {preset: gmail, tls: {mode: starttls}}
  both: {preset: qq, port: 2525, tls: {mode: implicit}}
  host: {preset: aws-ses, host: vpce.example.com}
  host-and-region: {preset: mailgun, region: eu, host: smtp.example.com}
  ciphers: {preset: tencent-ses, tls: {ciphers: [default]}, max_connections: 9}
  user:
    preset: sendgrid
    auth: {username_env: USER, password_env: PASS, mechanism: plain}
  apikey:
    preset: sendgrid
    auth: {password_env: PASS}
  no-auth: {preset: gmail}
  empty-tls: {preset: tencent-ses, tls: }
`)
	p := c.Providers
	check := func(name, addr string, mode TLSMode) {
		t.Helper()
		if p[name].Addr() != addr || p[name].TLS.Mode != mode {
			t.Errorf("%s: %s %s, want %s %s", name, p[name].Addr(), p[name].TLS.Mode, addr, mode)
		}
	}
	check("port-only", "smtp.gmail.com:587", TLSStartTLS)
	check("mode-only", "smtp.gmail.com:587", TLSStartTLS)
	check("both", "smtp.qq.com:2525", TLSImplicit)
	check("host", "vpce.example.com:587", TLSStartTLS)
	check("host-and-region", "smtp.example.com:587", TLSStartTLS)
	check("ciphers", "smtp.qcloudmail.com:465", TLSImplicit)
	check("empty-tls", "smtp.qcloudmail.com:465", TLSImplicit)
	if got := p["ciphers"].TLS.Ciphers; got != nil || p["ciphers"].MaxConnections != 9 { // [default] is Go's defaults: nil
		t.Errorf("ciphers: %v, max_connections %d", got, p["ciphers"].MaxConnections)
	}
	if got := p["empty-tls"].TLS.Ciphers; len(got) != 2 {
		t.Errorf("empty tls section: ciphers %v, want the preset's", got)
	}
	if a := p["user"].Auth; a.Username != "me@example.com" || a.UsernameFrom != "env USER" || a.Mechanism != "plain" {
		t.Errorf("user: %+v", a)
	}
	if a := p["apikey"].Auth; a.Username != "apikey" || a.Mechanism != "auto" || a.Password.Reveal() != "app-password-value" {
		t.Errorf("apikey: %+v", a)
	}
	if a := p["no-auth"].Auth; a != (Auth{}) {
		t.Errorf("a preset turned AUTH on: %+v", a)
	}
}

func TestPresetOAuth2(t *testing.T) {
	c := parsePreset(t, `providers:
  g:
    preset: gmail
    auth:
      username: me@gmail.com
      oauth2: {client_id_env: CID, client_secret_env: CSECRET, refresh_token_env: RTOKEN}
  own-url:
    preset: gmail
    auth:
      username: me@gmail.com
      oauth2: {token_url: "https://token.example/t", client_id: x, refresh_token_env: RTOKEN}
`)
	g := c.Providers["g"].Auth
	if g.Mechanism != "auto" || g.OAuth2 == nil || g.OAuth2.TokenURL != "https://oauth2.googleapis.com/token" ||
		g.OAuth2.Flow != FlowRefreshToken || g.OAuth2.RefreshToken.Reveal() != "refresh-token-value" || g.Password != "" {
		t.Errorf("gmail oauth2: %+v %+v", g, g.OAuth2)
	}
	if o := c.Providers["own-url"].Auth.OAuth2; o.TokenURL != "https://token.example/t" || o.ClientID != "x" {
		t.Errorf("own token_url: %+v", o)
	}
}

func TestPresetErrors(t *testing.T) {
	cases := []struct{ src, want string }{
		{"providers: {p: {preset: yahoo}}",
			`preset.yaml:1: providers.p.preset: want "163", "aws-ses", "gmail", "mailgun", "outlook", "qq", "sendgrid" or "tencent-ses", got "yahoo"`},
		{"providers:\n  p:\n    preset: aws-ses\n",
			`preset.yaml:3: providers.p.region: required with preset aws-ses: want an AWS region such as "us-east-1"`},
		{"providers: {p: {preset: aws-ses, region: Mars}}",
			`preset.yaml:1: providers.p.region: want an AWS region such as "us-east-1" or "eu-west-1" for preset aws-ses, got "Mars"`},
		{"providers: {p: {preset: mailgun, region: asia}}",
			`providers.p.region: want "us" (smtp.mailgun.org) or "eu" (smtp.eu.mailgun.org) for preset mailgun, got "asia"`},
		{"providers: {p: {preset: qq, region: eu}}",
			`providers.p.region: preset qq takes no region (region is used only with preset "aws-ses", "mailgun" or "tencent-ses")`},
		{"providers: {p: {host: smtp.example.com, region: eu}}",
			`providers.p.region: region is used only with preset "aws-ses", "mailgun" or "tencent-ses"`},
		{"providers: {p: {}}", `providers.p.host: required: the provider's SMTP server name, e.g. host: smtp.example.com, or a preset ("163"`},
		{"providers: {p: {preset: [gmail]}}", `providers.p.preset: want "163"`},
	}
	for _, tc := range cases {
		err := parseErr(t, tc.src)
		if !strings.Contains(err, tc.want) {
			t.Errorf("config %q:\nerror %s\nwant it to contain %s", tc.src, err, tc.want)
		}
		if n := strings.Count(err, "\n"); n != 0 {
			t.Errorf("config %q: %d errors, want one:\n%s", tc.src, n+1, err)
		}
	}
}

// TestPresetEffective checks that check's output names the preset and the
// values that result, and parses back to the same configuration.
func TestPresetEffective(t *testing.T) {
	src := `providers:
  ses:
    preset: tencent-ses
    region: ap-singapore
    rewrite_sender: noreply@example.com
    auth: {username_env: USER, password_file: ` + writeTemp(t, "app-password-value\n") + `}
  g:
    preset: gmail
    auth:
      username: me@gmail.com
      oauth2: {client_id_env: CID, client_secret_env: CSECRET, refresh_token_file: ` + writeTemp(t, "refresh-token-value") + `}
  cc:
    host: smtp.office365.com
    auth:
      username_env: USER
      oauth2:
        flow: client_credentials
        token_url: https://login.microsoftonline.com/tenant/oauth2/v2.0/token
        client_id: cid
        client_secret_env: CSECRET
        scopes: [https://outlook.office365.com/.default]
default: [ses]
`
	c := parsePreset(t, src)
	out := string(c.Effective())
	for _, want := range []string{
		"preset: tencent-ses", "region: ap-singapore", "host: sg-smtp.qcloudmail.com", "port: 465", "mode: implicit",
		"ciphers: [default, TLS_RSA_WITH_AES_256_CBC_SHA]", "rewrite_sender: noreply@example.com", "mechanism: login",
		"preset: gmail", "token_url: https://oauth2.googleapis.com/token", "client_id_env: CID", "client_secret_env: CSECRET",
		"refresh_token_file: ", "flow: refresh_token", "flow: client_credentials", "outlook.office365.com/.default",
		"client_id: cid", "mechanism: xoauth2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("effective output lacks %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{"app-password-value", "client-secret-value", "refresh-token-value"} {
		if strings.Contains(out, secret) {
			t.Errorf("effective output shows a secret:\n%s", out)
		}
	}
	again, err := Parse("effective.yaml", c.Effective(), presetEnv)
	if err != nil {
		t.Fatalf("the effective output does not parse:\n%v\n%s", err, out)
	}
	for name, p := range c.Providers {
		q := again.Providers[name]
		// Compare what the preset decided; the TLS and auth decoders have
		// their own round-trip tests.
		if q.Preset != p.Preset || q.Region != p.Region || q.Addr() != p.Addr() || q.TLS.Mode != p.TLS.Mode ||
			q.RewriteSender != p.RewriteSender || q.MaxConnections != p.MaxConnections ||
			!reflect.DeepEqual(q.TLS.Ciphers, p.TLS.Ciphers) || !reflect.DeepEqual(q.Auth.OAuth2, p.Auth.OAuth2) ||
			q.Auth.Mechanism != p.Auth.Mechanism || q.Auth.Password != p.Auth.Password {
			t.Errorf("%s after a round trip:\n%+v\nwant\n%+v", name, q, p)
		}
	}
}

// writeTemp writes content to a new file and returns its path.
func writeTemp(t *testing.T, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}
