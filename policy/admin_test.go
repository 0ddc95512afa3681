package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWarnings checks the warnings for an open secret file and an admin
// address off loopback, and that neither shows the secret.
func TestWarnings(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "token")
	private := filepath.Join(dir, "pw")
	os.WriteFile(open, []byte(secretValue+"\n"), 0o644)
	os.WriteFile(private, []byte(secretValue+"\n"), 0o600)
	os.Chmod(open, 0o644) // whatever the umask
	cases := []struct {
		name, admin string
		want        []string // substrings of the warnings, in order; none = no warning
	}{
		{"loopback, private file", `{addr: "127.0.0.1:9090", token_file: ` + private + `}`, nil},
		{"loopback, open file", `{addr: "127.0.0.1:9090", token_file: ` + open + `}`,
			[]string{"admin.token_file: " + open + " is readable by every user on this machine (mode 0644): chmod 600"}},
		{"off loopback, no token", `{addr: "0.0.0.0:9090"}`,
			[]string{"admin.addr 0.0.0.0:9090 is not a loopback address", "the queue API is off"}},
		{"off loopback, token", `{addr: "[::]:9090", token_file: ` + private + `}`,
			[]string{"admin.addr [::]:9090 is not a loopback address", "file " + private, "the queue API: listing, deleting"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("w.yaml", []byte("providers: {up: {host: smtp.example.com}}\nadmin: "+tc.admin+"\n"), testEnv)
			if err != nil {
				t.Fatal(err)
			}
			all := strings.Join(c.Warnings(), "\n")
			if strings.Contains(all, secretValue) {
				t.Fatalf("warning shows the secret: %s", all)
			}
			if len(tc.want) == 0 && all != "" {
				t.Fatalf("warnings %q, want none", all)
			}
			rest := all
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("warnings %q lack %q", all, w)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}
