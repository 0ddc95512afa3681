package policy

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

const oauthKeys = `{token_url: "https://token.example/token", client_id_env: CID, client_secret_env: CSECRET, refresh_token_env: RTOKEN}`

func TestAuthMechanismDefaults(t *testing.T) {
	c := parsePreset(t, `providers:
  pw:    {host: a.example, auth: {username_env: USER, password_env: PASS}}
  tok:   {host: a.example, auth: {username_env: USER, oauth2: `+oauthKeys+`}}
  both:  {host: a.example, auth: {username_env: USER, password_env: PASS, oauth2: `+oauthKeys+`}}
  auto:  {host: a.example, auth: {mechanism: auto, username_env: USER, password_env: PASS}}
  login: {host: a.example, auth: {mechanism: login, username_env: USER, password_env: PASS}}
  cc:
    host: a.example
    auth:
      mechanism: xoauth2
      username: app@example.com
      oauth2:
        flow: client_credentials
        token_url: http://127.0.0.1:8080/token
        client_id: cid
        client_secret_env: CSECRET
        scopes: [a, b]
`)
	for name, want := range map[string]string{"pw": "plain", "tok": "xoauth2", "both": "auto", "auto": "auto", "login": "login", "cc": "xoauth2"} {
		if got := c.Providers[name].Auth.Mechanism; got != want {
			t.Errorf("%s: mechanism %q, want %q", name, got, want)
		}
	}
	o := c.Providers["tok"].Auth.OAuth2
	want := OAuth2{Flow: FlowRefreshToken, TokenURL: "https://token.example/token", ClientID: "client-id", ClientIDFrom: "env CID",
		ClientSecret: "client-secret-value", ClientSecretFrom: "env CSECRET", RefreshToken: "refresh-token-value", RefreshTokenFrom: "env RTOKEN"}
	if o == nil || fmt.Sprintf("%#v", *o) != fmt.Sprintf("%#v", want) || o.ClientSecret.Reveal() != "client-secret-value" ||
		o.RefreshToken.Reveal() != "refresh-token-value" {
		t.Errorf("oauth2 = %+v\nwant %+v", o, want)
	}
	if a := c.Providers["tok"].Auth; a.Password != "" || a.PasswordFrom != "" {
		t.Errorf("xoauth2 has a password: %+v", a)
	}
	cc := c.Providers["cc"].Auth.OAuth2
	if cc.Flow != FlowClientCredentials || cc.RefreshToken != "" || strings.Join(cc.Scopes, " ") != "a b" || cc.ClientIDFrom != "client_id" {
		t.Errorf("client credentials = %+v", cc)
	}
}

func TestAuthErrors(t *testing.T) {
	const user = "username_env: USER, "
	cases := []struct{ auth, want string }{
		{`{mechanism: xoauth2, ` + user + `}`, "providers.p.auth.oauth2: required with mechanism xoauth2"},
		{`{mechanism: xoauth2, ` + user + `password_env: PASS, oauth2: ` + oauthKeys + `}`,
			"providers.p.auth.password_env: not used with mechanism xoauth2"},
		{`{mechanism: plain, ` + user + `password_env: PASS, oauth2: ` + oauthKeys + `}`,
			"providers.p.auth.oauth2: used only with mechanism xoauth2 or auto, not plain"},
		{`{mechanism: auto, ` + user + `}`, "providers.p.auth.mechanism: auto needs credentials"},
		{`{mechanism: cram-md5, ` + user + `password_env: PASS}`, `want "auto", "plain", "login" or "xoauth2", got "cram-md5"`},
		{`{oauth2: ` + oauthKeys + `}`, "providers.p.auth.username: required with AUTH"},
		{`{` + user + `oauth2: {client_id: x, refresh_token_env: RTOKEN}}`, "providers.p.auth.oauth2.token_url: required"},
		{`{` + user + `oauth2: {token_url: "http://token.example/t", client_id: x, refresh_token_env: RTOKEN}}`,
			"providers.p.auth.oauth2.token_url: want https"},
		{`{` + user + `oauth2: {token_url: "ftp://token.example/t", client_id: x, refresh_token_env: RTOKEN}}`,
			`providers.p.auth.oauth2.token_url: want the provider's OAuth2 token endpoint, such as https://oauth2.googleapis.com/token, got "ftp://`},
		{`{` + user + `oauth2: {token_url: "https://token.example/t", refresh_token_env: RTOKEN}}`,
			"providers.p.auth.oauth2.client_id: required: set client_id or client_id_env"},
		{`{` + user + `oauth2: {token_url: "https://token.example/t", client_id: x, client_id_env: CID, refresh_token_env: RTOKEN}}`,
			"providers.p.auth.oauth2.client_id_env: set client_id or client_id_env, not both"},
		{`{` + user + `oauth2: {token_url: "https://token.example/t", client_id: x}}`,
			"providers.p.auth.oauth2.refresh_token_env: required with flow refresh_token"},
		{`{` + user + `oauth2: {flow: client_credentials, token_url: "https://token.example/t", client_id: x}}`,
			"providers.p.auth.oauth2.client_secret_env: required with flow client_credentials"},
		{`{` + user + `oauth2: {flow: client_credentials, token_url: "https://token.example/t", client_id: x, client_secret_env: CSECRET, refresh_token_env: RTOKEN}}`,
			"providers.p.auth.oauth2.refresh_token_env: not used with flow client_credentials"},
		{`{` + user + `oauth2: {token_url: "https://token.example/t", client_id: x, refresh_token_env: RTOKEN, scopes: [a]}}`,
			"providers.p.auth.oauth2.scopes: used only with flow client_credentials"},
		{`{` + user + `oauth2: {flow: client_credentials, token_url: "https://token.example/t", client_id: x, client_secret_env: CSECRET, scopes: ["a b"]}}`,
			`providers.p.auth.oauth2.scopes[0]: want one scope without spaces, got "a b"`},
		{`{` + user + `oauth2: {flow: implicit, token_url: "https://token.example/t", client_id: x, refresh_token_env: RTOKEN}}`,
			`providers.p.auth.oauth2.flow: want "refresh_token" or "client_credentials", got "implicit"`},
		{`{` + user + `oauth2: {token_url: "https://token.example/t", client_id: x, refresh_token_env: NOPE}}`,
			"providers.p.auth.oauth2.refresh_token_env: environment variable NOPE is not set"},
		{`{` + user + `oauth2: {token_url: "https://token.example/t", client_id: x, refresh_token_env: RTOKEN, bogus: 1}}`,
			"providers.p.auth.oauth2.bogus: unknown key"},
	}
	for _, tc := range cases {
		src := "providers:\n  p:\n    host: a.example\n    auth: " + tc.auth + "\n"
		if err := parseErr(t, src); !strings.Contains(err, "preset.yaml:") || !strings.Contains(err, tc.want) {
			t.Errorf("auth %s:\nerror %s\nwant it to contain %s", tc.auth, err, tc.want)
		}
	}
}

// TestOAuth2SecretsNeverPrinted: the client secret and the refresh token,
// from the environment or a file, appear in no output, and a secret pasted
// where a variable name belongs is not echoed.
func TestOAuth2SecretsNeverPrinted(t *testing.T) {
	file := writeTemp(t, secretValue+"\n")
	env := mapEnv(map[string]string{"S": secretValue, "CID": "cid", "USER": "u"})
	good := `providers:
  a: {host: a.example, auth: {username_env: USER, oauth2: {token_url: "https://t.example/t", client_id_env: CID, client_secret_env: S, refresh_token_file: ` + file + `}}}
  b: {host: b.example, auth: {username_env: USER, oauth2: {flow: client_credentials, token_url: "https://t.example/t", client_id: c, client_secret_file: ` + file + `}}}
`
	c, err := Parse("good.yaml", []byte(good), env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Providers["a"].Auth.OAuth2.RefreshToken.Reveal() != secretValue || c.Providers["b"].Auth.OAuth2.ClientSecret.Reveal() != secretValue {
		t.Fatal("secrets not loaded")
	}
	js, _ := json.Marshal(c)
	for _, s := range []string{string(c.Effective()), string(js), fmt.Sprintf("%v %+v %#v", c, c, c),
		fmt.Sprintf("%v %+v %#v", *c.Providers["a"].Auth.OAuth2, *c.Providers["b"].Auth.OAuth2, c.Providers["a"].Auth)} {
		if strings.Contains(s, secretValue) {
			t.Errorf("secret shown in:\n%s", s)
		}
	}
	for _, bad := range []string{
		good + "listen: {addr: \"\"}\n",
		"providers: {a: {host: a.example, auth: {username: u, oauth2: {token_url: \"https://t.example/t\", client_id: c, refresh_token_env: " + secretValue + "}}}}\n",
		"providers: {a: {host: a.example, auth: {username: u, oauth2: {token_url: \"https://t.example/t\", client_id: c, client_secret: " + secretValue + ", refresh_token_env: S}}}}\n",
		"providers: {a: {host: a.example, auth: {username: u, oauth2: {token_url: \"https://t.example/t\", client_id: c, refresh_token: " + secretValue + "}}}}\n",
	} {
		_, err := Parse("bad.yaml", []byte(bad), env)
		if err == nil {
			t.Errorf("Parse succeeded:\n%s", bad)
		} else if strings.Contains(err.Error(), secretValue) {
			t.Errorf("secret shown in error:\n%v", err)
		}
	}
}
