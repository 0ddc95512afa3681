package policy

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that every error line reads
// FILE:LINE: or FILE:, that no error shows the secret, and that a config it
// accepts renders (Effective) to YAML it accepts again, unchanged.
func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile(shipped); err == nil {
		f.Add(data)
	}
	f.Add([]byte(minimal))
	f.Add([]byte(routing))
	env := mapEnv(map[string]string{
		"SES_USER": "u", "SES_PASSWORD": secretValue, "QQ_USER": "u", "QQ_AUTH_CODE": secretValue, "EMPTY_VAR": "",
	})
	lineRE := regexp.MustCompile(`^fuzz\.yaml:([0-9]+:)? \S`)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data, env)
		if err != nil {
			for _, l := range strings.Split(err.Error(), "\n") {
				if !lineRE.MatchString(l) {
					t.Fatalf("error line %q does not read FILE:LINE: ...", l)
				}
			}
			if strings.Contains(err.Error(), secretValue) && !strings.Contains(string(data), secretValue) {
				t.Fatalf("error shows the secret:\n%v", err)
			}
			return
		}
		out := c.Effective()
		if strings.Contains(string(out), secretValue) {
			t.Fatalf("Effective shows the secret:\n%s", out)
		}
		c2, err := Parse("fuzz.yaml", out, env)
		if err != nil {
			t.Fatalf("Parse(Effective()) failed:\n%v\ninput:\n%s\neffective:\n%s", err, data, out)
		}
		if out2 := c2.Effective(); string(out2) != string(out) {
			t.Fatalf("Effective not stable:\n%s\n---\n%s", out, out2)
		}
	})
}
