package policy

import (
	"crypto/tls"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
)

const shipped = "../relay.yaml"

// shippedEnv holds every variable the shipped relay.yaml names.
func shippedEnv() map[string]string {
	return map[string]string{
		"SES_USER":     "ses-user",
		"SES_PASSWORD": "ses-password",
		"QQ_USER":      "12345@qq.com",
		"QQ_AUTH_CODE": "qq-auth-code",
	}
}

func TestShippedConfig(t *testing.T) {
	c, err := Load(shipped, mapEnv(shippedEnv()))
	if err != nil {
		t.Fatalf("the shipped relay.yaml does not load:\n%v", err)
	}
	if c.Listen.Addr != DefaultListenAddr {
		t.Errorf("listen.addr %q: want loopback", c.Listen.Addr)
	}
	ses, qq := c.Providers["tencent-ses"], c.Providers["qq"]
	if ses == nil || qq == nil || len(c.Providers) != 2 {
		t.Fatalf("providers = %v, want tencent-ses and qq", c.Providers)
	}
	if ses.Addr() != "smtp.qcloudmail.com:465" || ses.TLS.Mode != TLSImplicit || ses.TLS.MinVersion != tls.VersionTLS12 ||
		ses.Auth.Mechanism != "login" || ses.Auth.UsernameFrom != "env SES_USER" || ses.Auth.PasswordFrom != "env SES_PASSWORD" ||
		ses.Auth.Password.Reveal() != "ses-password" {
		t.Errorf("tencent-ses = %+v", ses)
	}
	if qq.Addr() != "smtp.qq.com:587" || qq.TLS.Mode != TLSStartTLS || qq.Auth.Mechanism != "plain" ||
		qq.Auth.Username != "12345@qq.com" || qq.Auth.PasswordFrom != "env QQ_AUTH_CODE" {
		t.Errorf("qq = %+v", qq)
	}
	if got := c.Route("app@example.com", "x@y.example"); !reflect.DeepEqual(got, []string{"tencent-ses", "qq"}) {
		t.Errorf("route for example.com = %v", got)
	}
	if got := c.Route("app@other.example", "x@y.example"); !reflect.DeepEqual(got, []string{"qq"}) {
		t.Errorf("default route = %v", got)
	}
}

// TestShippedConfigMissingEnv unsets each variable in turn: the error names
// it, with the file and line of the key that asks for it.
func TestShippedConfigMissingEnv(t *testing.T) {
	for name := range shippedEnv() {
		env := shippedEnv()
		delete(env, name)
		_, err := Load(shipped, mapEnv(env))
		if err == nil {
			t.Fatalf("loaded without %s", name)
		}
		re := regexp.MustCompile(`^\.\./relay\.yaml:[0-9]+: providers\.[a-z-]+\.auth\.(username|password)_env: environment variable ` + name + ` is not set`)
		if !re.MatchString(err.Error()) || strings.Contains(err.Error(), "\n") {
			t.Errorf("without %s: error %q, want one line matching %s", name, err, re)
		}
	}
}

// TestShippedConfigDocumentsEveryKey checks that relay.yaml mentions every
// key the decoder accepts, as "key:" or in a comment.
func TestShippedConfigDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	var sections []string
	for s := range schema {
		sections = append(sections, s)
	}
	sort.Strings(sections)
	for _, s := range sections {
		for _, key := range schema[s] {
			if !regexp.MustCompile(`(?m)^[ #]*(- )?` + regexp.QuoteMeta(key) + `[: ]`).Match(data) {
				t.Errorf("relay.yaml does not document %s.%s", s, key)
			}
		}
	}
}
