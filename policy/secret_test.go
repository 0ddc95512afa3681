package policy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const secretValue = "s3cr3t-VALUE-123"

// TestSecretsNeverPrinted feeds a distinctive secret through environment
// variables, password files and misplaced YAML values, and checks that no
// error, no Effective output and no formatting of the Config shows it.
func TestSecretsNeverPrinted(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	bigFile := filepath.Join(dir, "big")
	os.WriteFile(pwFile, []byte(secretValue+"\n"), 0o600)
	os.WriteFile(bigFile, []byte(strings.Repeat(secretValue, 10000)), 0o600)
	// A username is not a secret (Effective shows one written in the file,
	// and Auth.Username is a plain string), but errors never show it either.
	env := mapEnv(map[string]string{"SECRET": secretValue, "USER": "user@example.com"})

	good := `providers:
  a: {host: a.example, auth: {username_env: USER, password_env: SECRET}}
  b: {host: b.example, auth: {mechanism: login, username: u, password_file: ` + pwFile + `}}
admin: {addr: "127.0.0.1:9090", token_env: SECRET}
`
	c, err := Parse("good.yaml", []byte(good), env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Providers["a"].Auth.Password.Reveal() != secretValue || c.Providers["b"].Auth.Password.Reveal() != secretValue ||
		c.Admin.Token.Reveal() != secretValue {
		t.Fatal("secrets not loaded")
	}
	js, _ := json.Marshal(c)
	shown := []string{string(c.Effective()), string(js),
		fmt.Sprintf("%v %+v %#v", c, c, c),
		fmt.Sprintf("%v %+v %#v", *c.Providers["a"], c.Providers["a"].Auth, c.Providers["b"].Auth)}
	for _, s := range shown {
		if strings.Contains(s, secretValue) {
			t.Errorf("secret shown in:\n%s", s)
		}
	}

	bad := []string{
		// errors elsewhere while secrets are loaded
		good + "listen: {addr: \"\"}\n",
		strings.Replace(good, "mechanism: login", "mechanism: xoauth", 1),
		// the secret pasted where a variable name or file belongs, or as an unknown key
		"providers: {a: {host: a.example, auth: {username: u, password_env: " + secretValue + "}}}\n",
		"providers: {a: {host: a.example, auth: {username: u, password_env: [" + secretValue + "]}}}\n",
		"providers: {a: {host: a.example, auth: {username: u, password_env: {x: " + secretValue + "}}}}\n",
		"providers: {a: {host: a.example, auth: {username_env: " + secretValue + ", password_env: SECRET}}}\n",
		"providers: {a: {host: a.example, auth: {username: u, password: " + secretValue + "}}}\n",
		// unusable secret files
		"providers: {a: {host: a.example, auth: {username: u, password_file: " + bigFile + "}}}\n",
		"providers: {a: {host: a.example, tls: {ca_file: " + pwFile + "}, auth: {username: u, password_file: " + pwFile + "}}}\n",
		"providers: {a: {host: a.example, auth: {password_env: SECRET}}}\n",
		"providers: {a: {host: a.example, auth: {username_env: SECRET}}}\n",
	}
	for _, src := range bad {
		_, err := Parse("bad.yaml", []byte(src), env)
		if err == nil {
			t.Errorf("Parse succeeded:\n%s", src)
			continue
		}
		if strings.Contains(err.Error(), secretValue) {
			t.Errorf("secret shown in error:\n%v", err)
		}
	}
}
