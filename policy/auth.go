package policy

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Auth mechanisms (auth.mechanism).
var mechanisms = []string{"auto", "plain", "login", "xoauth2"}

// auth decodes a provider's auth section. With no credential keys and no
// mechanism it is "no AUTH"; otherwise it needs a username and, by mechanism:
// plain and login a password, xoauth2 auth.oauth2, auto either or both. The
// mechanism defaults to plain with a password, xoauth2 with auth.oauth2, and
// auto with both.
func (d *decoder) auth(s *section) Auth {
	var a Auth
	mechLine, _ := s.oneOf("mechanism", &a.Mechanism, mechanisms...)
	user := d.username(s, &a)
	pass := d.password(s, &a)
	oauth := s.has("oauth2")
	if oauth {
		a.OAuth2 = d.oauth2(d.child(s, "oauth2", schema["providers.*.auth.oauth2"]...))
	}
	if !user && !pass && !oauth && !s.has("mechanism") {
		return Auth{}
	}
	if !user {
		d.errorf(s.line, s.sub("username"), "required with AUTH: set username or username_env (or remove the auth section for no AUTH)")
	}
	if a.Mechanism == "" {
		a.Mechanism = defaultMechanism(pass, oauth)
	}
	mechLine = lineOrDefault(mechLine, s.line)
	switch a.Mechanism {
	case "plain", "login":
		if !pass {
			d.errorf(s.line, s.sub("password_env"), "required with AUTH: set password_env or password_file (or remove the auth section for no AUTH)")
		}
		if oauth {
			d.errorf(d.lineOf(s.sub("oauth2")), s.sub("oauth2"), "used only with mechanism xoauth2 or auto, not %s: remove it or change the mechanism", a.Mechanism)
		}
	case "xoauth2":
		if !oauth {
			d.errorf(mechLine, s.sub("oauth2"), "required with mechanism xoauth2: where the access tokens come from, e.g. "+
				"oauth2: {token_url: https://oauth2.googleapis.com/token, client_id_env: CLIENT_ID, client_secret_env: CLIENT_SECRET, refresh_token_env: REFRESH_TOKEN}")
		}
		if pass {
			key := firstKey(s, "password_env", "password_file")
			d.errorf(d.lineOf(s.sub(key)), s.sub(key), "not used with mechanism xoauth2 (the access token replaces the password): remove it, or set mechanism auto to allow both")
		}
	case "auto":
		if !pass && !oauth {
			d.errorf(mechLine, s.sub("mechanism"), "auto needs credentials: set password_env or password_file (for PLAIN or LOGIN), or auth.oauth2 (for XOAUTH2), or both")
		}
	}
	return a
}

// defaultMechanism is the mechanism when auth.mechanism is left out.
func defaultMechanism(password, oauth2 bool) string {
	switch {
	case password && oauth2:
		return "auto"
	case oauth2:
		return "xoauth2"
	}
	return "plain"
}

// firstKey returns the first of keys that s has, else the first of keys.
func firstKey(s *section, keys ...string) string {
	for _, k := range keys {
		if s.has(k) {
			return k
		}
	}
	return keys[0]
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
	var ok bool
	a.Password, a.PasswordFrom, ok = d.secret(s, "password_env", "password_file")
	return ok
}

// secret reads a credential from the environment variable named by envKey or
// the file named by fileKey (one of the two). It returns the value, where it
// came from ("env NAME" or "file PATH", never the value), and whether either
// key was given.
func (d *decoder) secret(s *section, envKey, fileKey string) (v Secret, from string, given bool) {
	if !exclusive(s, envKey, fileKey) {
		return "", "", true
	}
	if name, line, ok := d.envName(s, envKey); ok {
		if val, ok := d.lookupEnv(line, s.sub(envKey), name); ok {
			v = Secret(val)
		}
		return v, "env " + name, true
	}
	var file string
	if line, ok := s.str(fileKey, &file); ok {
		return d.readPasswordFile(line, s.sub(fileKey), file), "file " + file, true
	}
	return "", "", s.has(envKey) || s.has(fileKey)
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
	if st, err := os.Stat(file); err == nil && st.Mode().Perm()&0o004 != 0 {
		// Not an error: Kubernetes secret volumes are often 0644 behind a symlink.
		d.warnings = append(d.warnings, fmt.Sprintf("%s: %s is readable by every user on this machine (mode %04o): "+
			"chmod 600 %s (or 640 with a group only the relay's user is in)", path, file, st.Mode().Perm(), file))
	}
	return Secret(pw)
}

// oauth2 decodes auth.oauth2: where the XOAUTH2 access tokens come from.
// Flow refresh_token needs a refresh token and takes no scopes (the token
// carries those it was granted); flow client_credentials needs the client
// secret and takes no refresh token.
func (d *decoder) oauth2(s *section) *OAuth2 {
	o := &OAuth2{Flow: FlowRefreshToken}
	s.oneOf("flow", &o.Flow, FlowRefreshToken, FlowClientCredentials)
	d.tokenURL(s, o)
	d.clientID(s, o)
	var given bool
	o.ClientSecret, o.ClientSecretFrom, given = d.secret(s, "client_secret_env", "client_secret_file")
	if !given && o.Flow == FlowClientCredentials {
		d.errorf(s.line, s.sub("client_secret_env"), "required with flow client_credentials: set client_secret_env or client_secret_file")
	}
	o.RefreshToken, o.RefreshTokenFrom, given = d.secret(s, "refresh_token_env", "refresh_token_file")
	switch {
	case !given && o.Flow == FlowRefreshToken:
		d.errorf(s.line, s.sub("refresh_token_env"), "required with flow refresh_token (the default): set refresh_token_env or refresh_token_file "+
			"to the refresh token from the provider's consent step, or set flow: client_credentials")
	case given && o.Flow == FlowClientCredentials:
		key := firstKey(s, "refresh_token_env", "refresh_token_file")
		d.errorf(d.lineOf(s.sub(key)), s.sub(key), "not used with flow client_credentials: remove it, or set flow: refresh_token")
	}
	d.scopes(s, o)
	return o
}

// tokenURL reads auth.oauth2.token_url: https, or http only for a loopback
// host, since the client secret and refresh token are sent to it.
func (d *decoder) tokenURL(s *section, o *OAuth2) {
	const want = "want the provider's OAuth2 token endpoint, such as https://oauth2.googleapis.com/token"
	line, ok := s.str("token_url", &o.TokenURL)
	if !ok {
		if !s.has("token_url") {
			d.errorf(s.line, s.sub("token_url"), "required: %s", want)
		}
		return
	}
	u, err := url.Parse(o.TokenURL)
	switch {
	case err != nil || u.Host == "" || u.User != nil || u.Fragment != "" || (u.Scheme != "https" && u.Scheme != "http"):
		d.errorf(line, s.sub("token_url"), "%s, got %q", want, o.TokenURL)
	case u.Scheme == "http" && !isLoopbackHost(u.Hostname()):
		d.errorf(line, s.sub("token_url"), "want https: the client secret and refresh token would cross the network in clear (http is allowed only for a loopback host), got %q", o.TokenURL)
	}
}

// clientID reads client_id or client_id_env (one is required).
func (d *decoder) clientID(s *section, o *OAuth2) {
	if !exclusive(s, "client_id", "client_id_env") {
		return
	}
	if line, ok := s.str("client_id", &o.ClientID); ok {
		o.ClientIDFrom = "client_id"
		if o.ClientID == "" || strings.ContainsAny(o.ClientID, "\r\n\x00") {
			d.errorf(line, s.sub("client_id"), "want the OAuth2 client ID, got %q", o.ClientID)
		}
		return
	}
	if name, line, ok := d.envName(s, "client_id_env"); ok {
		o.ClientIDFrom = "env " + name
		o.ClientID, _ = d.lookupEnv(line, s.sub("client_id_env"), name)
		return
	}
	if !s.has("client_id") && !s.has("client_id_env") {
		d.errorf(s.line, s.sub("client_id"), "required: set client_id or client_id_env to the OAuth2 client (application) ID")
	}
}

// scopes reads auth.oauth2.scopes, for flow client_credentials only.
func (d *decoder) scopes(s *section, o *OAuth2) {
	items, lines, ok := s.list("scopes", "scopes such as https://outlook.office365.com/.default")
	if !ok {
		return
	}
	if o.Flow != FlowClientCredentials {
		d.errorf(d.lineOf(s.sub("scopes")), s.sub("scopes"), "used only with flow client_credentials: a refresh token carries the scopes it was granted; remove scopes")
		return
	}
	for i, sc := range items {
		if sc == "" || strings.ContainsAny(sc, " \t\r\n") {
			d.errorf(lines[i], fmt.Sprintf("%s[%d]", s.sub("scopes"), i), "want one scope without spaces, got %q", sc)
		}
	}
	o.Scopes = items
}

// effectiveOAuth2 is auth.oauth2 for Effective: secrets by source only.
type effectiveOAuth2 struct {
	Flow             string   `yaml:"flow"`
	TokenURL         string   `yaml:"token_url"`
	ClientID         string   `yaml:"client_id,omitempty"`
	ClientIDEnv      string   `yaml:"client_id_env,omitempty"`
	ClientSecretEnv  string   `yaml:"client_secret_env,omitempty"`
	ClientSecretFile string   `yaml:"client_secret_file,omitempty"`
	RefreshTokenEnv  string   `yaml:"refresh_token_env,omitempty"`
	RefreshTokenFile string   `yaml:"refresh_token_file,omitempty"`
	Scopes           []string `yaml:"scopes,flow,omitempty"`
}

// effectiveAuthOf renders a provider's auth for Effective, nil for no AUTH.
// Credentials appear only as where they come from.
func effectiveAuthOf(a Auth) *effectiveAuth {
	if a.Mechanism == "" {
		return nil
	}
	e := &effectiveAuth{Mechanism: a.Mechanism}
	e.UsernameEnv, e.Username = source(a.UsernameFrom, a.Username)
	e.PasswordEnv, e.PasswordFile = source(a.PasswordFrom, "")
	if o := a.OAuth2; o != nil {
		eo := &effectiveOAuth2{Flow: o.Flow, TokenURL: o.TokenURL, Scopes: o.Scopes}
		eo.ClientIDEnv, eo.ClientID = source(o.ClientIDFrom, o.ClientID)
		eo.ClientSecretEnv, eo.ClientSecretFile = source(o.ClientSecretFrom, "")
		eo.RefreshTokenEnv, eo.RefreshTokenFile = source(o.RefreshTokenFrom, "")
		e.OAuth2 = eo
	}
	return e
}

// source splits a From field ("env NAME", "file PATH", or the key that holds
// the value itself) into the variable's name, or else the path or inline.
func source(from, inline string) (env, other string) {
	if name, ok := strings.CutPrefix(from, "env "); ok {
		return name, ""
	}
	if path, ok := strings.CutPrefix(from, "file "); ok {
		return "", path
	}
	return "", inline
}
