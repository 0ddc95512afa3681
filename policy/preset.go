package policy

// Presets: the settings of well-known providers, as data.
//
// A preset is a small YAML document of default values for the keys of a
// provider (providers.NAME), written exactly as in relay.yaml. When a provider
// says `preset: NAME`, applyPreset fills in every key that the file leaves
// out, before any key is decoded; a key in the file always wins, key by key.
// The decoders of the provider's keys (host, port, tls.*, auth.*) therefore
// know nothing of presets: each reads its key through section.value (str,
// list, oneOf ...) and gets the file's value or else the preset's, with the
// line of the `preset:` key for errors. This is the one point of contact, e.g.
// for tls.ciphers: the TLS decoder reads s.list("ciphers", ...) and gets the
// tencent-ses preset's [default, TLS_RSA_WITH_AES_256_CBC_SHA] unless the file
// gives its own list.
//
// Rules of the merge (applyPreset, mergeDefaults):
//   - A preset key that this build's schema does not know is skipped, so a
//     preset may carry a value ahead of the decoder that will read it.
//   - Mappings merge key by key (tls, auth, auth.oauth2).
//   - A preset never turns AUTH on: its auth keys are used only when the file
//     has an auth section, and its auth.oauth2 keys only when the file has
//     auth.oauth2.
//   - Alternatives: when the file sets one key of a group, the preset's
//     values for the others are dropped: {username, username_env},
//     {password_env, password_file}, {client_id, client_id_env}, and
//     {port, tls.mode}, so that `port: 587` alone on a preset whose mode is
//     implicit gives starttls, as it would without the preset.
//   - region (aws-ses, mailgun, tencent-ses) picks the preset's host; a host
//     in the file still wins.
//
// Each preset names its sources. Values marked "unverified" are from memory
// of the provider's documentation, not checked against it. A preset sets
// max_connections and rate only for a documented limit that holds for every
// account (outlook); the other known limits are per account or per day, so
// they stay comments: set max_connections and rate (N/s, N/m, N/h) to your
// account's quota.

import (
	"fmt"
	"regexp"
	"slices"
	"sort"

	"gopkg.in/yaml.v3"
)

// preset is one provider's defaults.
type preset struct {
	yaml   string      // defaults for the keys of providers.NAME
	region *regionSpec // nil: the region key is an error with this preset
}

// regionSpec says how a preset turns `region:` into its host.
type regionSpec struct {
	required bool   // with no region and no host in the file, an error
	want     string // for errors: what a region looks like
	host     func(region string) (string, bool)
}

var awsRegionRE = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$`)

// presets, by name. Ports: implicit TLS (465) where the provider documents it
// as a first choice, since RFC 8314 3.3 prefers it for submission (no
// plaintext phase at all); STARTTLS (587) where the provider recommends 587 or
// has no 465. Mechanism auto picks XOAUTH2 with auth.oauth2, else PLAIN or
// LOGIN, whichever the server offers (see upstream/auth.go).
var presets = map[string]preset{
	// Gmail and Google Workspace.
	// https://support.google.com/mail/answer/7126229 (smtp.gmail.com, SSL 465
	// or TLS 587): both are documented alike; 465 is taken (RFC 8314).
	// Credentials: an app password (2-Step Verification on), or XOAUTH2:
	// https://developers.google.com/gmail/imap/xoauth2-protocol (scope
	// https://mail.google.com/), token endpoint from
	// https://developers.google.com/identity/protocols/oauth2/web-server.
	// Limits (https://support.google.com/a/answer/166852): about 500
	// messages/day for gmail.com, 2000 for Workspace; 100 recipients per
	// message sent over SMTP (unverified).
	"gmail": {yaml: `
host: smtp.gmail.com
port: 465
tls: {mode: implicit}
auth:
  mechanism: auto
  oauth2: {token_url: "https://oauth2.googleapis.com/token"}
`},

	// Microsoft 365 / Exchange Online, SMTP AUTH client submission.
	// https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/how-to-set-up-a-multifunction-device-or-application-to-send-email-using-microsoft-365-or-office-365
	// (smtp.office365.com, 587, STARTTLS; there is no 465). XOAUTH2:
	// https://learn.microsoft.com/en-us/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth
	// (token_url https://login.microsoftonline.com/TENANT/oauth2/v2.0/token,
	// tenant-specific, so not preset; scope https://outlook.office.com/SMTP.Send
	// delegated, https://outlook.office365.com/.default for client credentials).
	// Microsoft is retiring Basic auth (LOGIN) for SMTP AUTH: prefer XOAUTH2.
	// Limits (Exchange Online limits): 30 messages/minute, 10000
	// recipients/day, 500 recipients/message; about 3 concurrent submissions
	// per mailbox (432 4.3.2 "sender thread limit exceeded"; unverified), hence
	// max_connections 3, and rate 30/m (the "message rate limit" for SMTP
	// client submission, per mailbox: one provider per mailbox).
	"outlook": {yaml: `
host: smtp.office365.com
port: 587
max_connections: 3
rate: 30/m
tls: {mode: starttls}
auth: {mechanism: auto}
`},

	// QQ Mail. https://service.mail.qq.com/detail/0/310 (unverified URL):
	// smtp.qq.com, SSL on 465, or 587. The password is the authorization
	// code (授权码) from Settings > Account > POP3/IMAP/SMTP, not the QQ
	// password; the username is the full address. Limits: about 500
	// messages/day (unverified).
	"qq": {yaml: `
host: smtp.qq.com
port: 465
tls: {mode: implicit}
auth: {mechanism: auto}
`},

	// NetEase 163 Mail. https://help.mail.163.com/ ("客户端设置", unverified
	// URL): smtp.163.com, SSL on 465 (or 994). The password is the
	// authorization code (客户端授权密码) after enabling SMTP in Settings.
	"163": {yaml: `
host: smtp.163.com
port: 465
tls: {mode: implicit}
auth: {mechanism: auto}
`},

	// Tencent Cloud SES. https://www.tencentcloud.com/document/product/1084/44457
	// (smtp.qcloudmail.com Hong Kong, gz-smtp.qcloudmail.com Guangzhou,
	// sg-smtp.qcloudmail.com Singapore; port 465 with SSL, 25 disabled).
	// smtp.qcloudmail.com:465 offers only RSA key exchange (docs/design.md, "TLS policy"), which
	// Go leaves out by default: the preset lists Go's defaults first, then
	// the one legacy suite, for this provider only. The password is the SMTP
	// password set per sender address in the console. Mechanism login as in
	// Tencent's samples. Limits
	// (https://www.tencentcloud.com/document/product/1084/44458): 20 SMTP
	// calls/s per account; 10 mails/hour from one sender to one recipient.
	// No rate is preset (whether a "call" is a message or a command is not
	// clear); rate: 20/s in the file keeps under it if a call is a message.
	"tencent-ses": {yaml: `
host: smtp.qcloudmail.com
port: 465
tls:
  mode: implicit
  ciphers: [default, TLS_RSA_WITH_AES_256_CBC_SHA]
auth: {mechanism: login}
`, region: &regionSpec{
		want: `"ap-hongkong" (smtp.qcloudmail.com), "ap-guangzhou" or "ap-singapore"`,
		host: func(r string) (string, bool) {
			h, ok := map[string]string{
				"ap-hongkong":  "smtp.qcloudmail.com",
				"ap-guangzhou": "gz-smtp.qcloudmail.com",
				"ap-singapore": "sg-smtp.qcloudmail.com",
			}[r]
			return h, ok
		},
	}},

	// Amazon SES. https://docs.aws.amazon.com/ses/latest/dg/smtp-connect.html
	// (email-smtp.REGION.amazonaws.com; STARTTLS on 25, 587 or 2587, TLS
	// wrapper on 465 or 2465): 587, which EC2 does not throttle. The
	// credentials are SES SMTP credentials, per region, not AWS access keys.
	// Limits: sandbox 200 messages/day and 1 message/s; production per
	// account quota (maximum send rate, in the console's sending
	// statistics); 50 recipients per message. No rate is preset, since it
	// differs per account: set rate to the account's maximum send rate
	// (e.g. rate: 1/s in the sandbox).
	"aws-ses": {yaml: `
port: 587
tls: {mode: starttls}
auth: {mechanism: auto}
`, region: &regionSpec{
		required: true,
		want:     `an AWS region such as "us-east-1" or "eu-west-1"`,
		host: func(r string) (string, bool) {
			return "email-smtp." + r + ".amazonaws.com", awsRegionRE.MatchString(r)
		},
	}},

	// Twilio SendGrid.
	// https://www.twilio.com/docs/sendgrid/for-developers/sending-email/integrating-with-the-smtp-api
	// (smtp.sendgrid.net, 587 STARTTLS recommended, also 25, 2525, 465): the
	// username is literally "apikey", the password an API key with Mail Send
	// permission. Limits: 1000 recipients per message (unverified).
	"sendgrid": {yaml: `
host: smtp.sendgrid.net
port: 587
tls: {mode: starttls}
auth: {mechanism: auto, username: apikey}
`},

	// Mailgun. https://documentation.mailgun.com/docs/mailgun/user-manual/sending-messages/send-smtp
	// (unverified URL): smtp.mailgun.org (US) or smtp.eu.mailgun.org (EU
	// accounts), STARTTLS on 587 (recommended), 25, 2525; 465 implicit. The
	// username is the domain's SMTP login (postmaster@DOMAIN). Limits: 1000
	// recipients per message (unverified).
	"mailgun": {yaml: `
host: smtp.mailgun.org
port: 587
tls: {mode: starttls}
auth: {mechanism: auto}
`, region: &regionSpec{
		want: `"us" (smtp.mailgun.org) or "eu" (smtp.eu.mailgun.org)`,
		host: func(r string) (string, bool) {
			h, ok := map[string]string{"us": "smtp.mailgun.org", "eu": "smtp.eu.mailgun.org"}[r]
			return h, ok
		},
	}},
}

// PresetNames returns the names of the presets, sorted.
func PresetNames() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// regionPresets names the presets that take a region, for errors.
func regionPresets() string {
	var names []string
	for _, n := range PresetNames() {
		if presets[n].region != nil {
			names = append(names, n)
		}
	}
	return quoteList(names, "or")
}

// alternatives are groups of keys of which the file sets at most one; when
// it sets one, the preset's values for the group are all dropped.
var alternatives = [][]string{
	{"username", "username_env"},
	{"password_env", "password_file"},
	{"client_id", "client_id_env"},
	{"client_secret_env", "client_secret_file"},
	{"refresh_token_env", "refresh_token_file"},
}

// optIn are mapping keys that a preset fills only when the file has them.
var optIn = []string{"auth", "oauth2"}

// applyPreset reads preset and region from the provider section s and, with
// a preset, adds the preset's values for the keys s lacks. It returns the
// preset's name and the region ("" for none), and whether it has reported
// the host as missing (aws-ses without region), so that provider does not.
func (d *decoder) applyPreset(s *section) (name, reg string, noHost bool) {
	line, hasPreset := presetName(s, &name)
	regLine, hasRegion := s.str("region", &reg)
	if !hasPreset {
		if hasRegion && !s.has("preset") {
			d.errorf(regLine, s.sub("region"), "region is used only with preset %s: remove it or add the preset", regionPresets())
		}
		return "", reg, s.has("preset") // a bad preset name is reported by oneOf
	}
	p := presets[name]
	def, err := p.node(line)
	if err != nil { // cannot happen: TestPresetsParse
		d.errorf(line, s.sub("preset"), "preset %q is broken: %v", name, err)
		return name, reg, true
	}
	host, ok, noHost := d.presetHost(s, name, p, reg, regLine, hasRegion)
	if ok {
		setKey(def, "host", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: host, Line: line})
	}
	if s.has("port") || hasMode(s) {
		deleteKey(def, "port")
		if tls := getKey(def, "tls"); tls != nil {
			deleteKey(tls, "mode")
		}
	}
	d.fill(s, def, "providers.*", line)
	return name, reg, noHost
}

// presetName reads the preset key: a preset's name, which may be a YAML
// number (preset: 163).
func presetName(s *section, dst *string) (line int, ok bool) {
	want := quoteList(PresetNames(), "or")
	v, line, ok := s.scalar("preset", want, "!!str", "!!int")
	if !ok {
		return 0, false
	}
	if _, known := presets[v.Value]; !known {
		s.d.errorf(line, s.sub("preset"), "want %s, got %s", want, describe(v))
		return 0, false
	}
	*dst = v.Value
	return line, true
}

// presetHost returns the host that region picks, if any. It reports a region
// the preset does not take or does not know, and a region the preset needs
// and lacks (noHost: then the host is missing too, and said so here).
func (d *decoder) presetHost(s *section, name string, p preset, reg string, line int, hasRegion bool) (host string, ok, noHost bool) {
	switch {
	case p.region == nil && hasRegion:
		d.errorf(line, s.sub("region"), "preset %s takes no region (region is used only with preset %s): remove it", name, regionPresets())
	case p.region == nil:
	case hasRegion:
		if host, ok = p.region.host(reg); !ok {
			d.errorf(line, s.sub("region"), "want %s for preset %s, got %q", p.region.want, name, reg)
			return "", false, !s.has("host")
		}
		return host, true, false
	case p.region.required && !s.has("host"):
		d.errorf(d.lineOf(s.sub("preset")), s.sub("region"), "required with preset %s: want %s (or set host)", name, p.region.want)
		return "", false, true
	}
	return "", false, false
}

// hasMode reports whether the file gives tls.mode for the provider s.
func hasMode(s *section) bool {
	e, ok := s.m["tls"]
	return ok && e.val.Kind == yaml.MappingNode && getKey(e.val, "mode") != nil
}

// fill adds to the section s the entries of the mapping def whose keys s
// lacks, and merges def's mappings into those s has (mergeDefaults).
func (d *decoder) fill(s *section, def *yaml.Node, kind string, line int) {
	for i := 0; i+1 < len(def.Content); i += 2 {
		k, v := def.Content[i], def.Content[i+1]
		if !slices.Contains(schema[kind], k.Value) {
			continue // not known to this build
		}
		if e, ok := s.m[k.Value]; ok {
			if v.Kind == yaml.MappingNode {
				e.val = mergeDefaults(e.val, v, kind+"."+k.Value)
				s.m[k.Value] = e
			}
			continue
		}
		if slices.Contains(optIn, k.Value) {
			continue
		}
		s.m[k.Value] = entry{k, v}
		d.lines[s.sub(k.Value)] = line
	}
}

// mergeDefaults returns file with def's entries added for the keys it lacks,
// recursively; kind is the schema key of the mapping. file itself is not
// changed. A file value that is not a mapping is returned as is (its decoder
// reports it); an empty one (`tls:`) takes def whole.
func mergeDefaults(file, def *yaml.Node, kind string) *yaml.Node {
	if isNull(file) {
		file = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: file.Line, Column: file.Column}
	}
	if file.Kind != yaml.MappingNode {
		return file
	}
	out := *file
	out.Content = slices.Clone(file.Content)
	for i := 0; i+1 < len(def.Content); i += 2 {
		k, v := def.Content[i], def.Content[i+1]
		if !slices.Contains(schema[kind], k.Value) || dropped(file, k.Value) {
			continue
		}
		if fv := getKey(&out, k.Value); fv != nil {
			if v.Kind == yaml.MappingNode {
				setKey(&out, k.Value, mergeDefaults(fv, v, kind+"."+k.Value))
			}
			continue
		}
		if slices.Contains(optIn, k.Value) {
			continue
		}
		out.Content = append(out.Content, k, v)
	}
	return &out
}

// dropped reports whether file sets another key of key's alternatives group.
func dropped(file *yaml.Node, key string) bool {
	for _, g := range alternatives {
		if !slices.Contains(g, key) {
			continue
		}
		for _, other := range g {
			if getKey(file, other) != nil {
				return true
			}
		}
	}
	return false
}

// node parses the preset's YAML; every node gets line, the line of the
// `preset:` key, so that an error in a value the preset supplied points there.
func (p preset) node(line int) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(p.yaml), &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("want a mapping")
	}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		n.Line, n.Column = line, 0
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(doc.Content[0])
	return doc.Content[0], nil
}

// getKey returns the value of key in mapping m, or nil.
func getKey(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Kind == yaml.ScalarNode && m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// setKey sets key to v in mapping m, adding it if absent.
func setKey(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key, Line: v.Line}
	m.Content = append(m.Content, k, v)
}

// deleteKey removes key from mapping m.
func deleteKey(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}
