package daemon

import (
	"slices"
	"testing"

	"github.com/tlsrelay/tlsrelay/policy"
)

// A reload applies a provider's rate and max_connections, and the workers
// derived from them, so changing them needs no restart; listen still does.
func TestRestartOnlyLimitsApplied(t *testing.T) {
	parse := func(src string) *policy.Config {
		t.Helper()
		c, err := policy.Parse("relay.yaml", []byte(src), func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	old := parse("providers:\n  p: {host: smtp.example.com, max_connections: 4}\n")
	cur := parse("providers:\n  p: {host: smtp.example.com, max_connections: 8, rate: 10/s}\n" +
		"  q: {host: smtp2.example.com}\n")
	if keys := restartOnly(old, cur); len(keys) != 0 {
		t.Fatalf("restart needed for %v, want none", keys)
	}
	moved := parse("listen: {addr: 127.0.0.1:2600}\nproviders:\n  p: {host: smtp.example.com}\n")
	if keys := restartOnly(old, moved); !slices.Equal(keys, []string{"listen"}) {
		t.Fatalf("restart needed for %v, want [listen]", keys)
	}
}
