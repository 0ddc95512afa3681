package policy

import (
	"strings"
	"testing"
)

func TestRewriteSender(t *testing.T) {
	c := parsePreset(t, `providers:
  on:  {host: a.example, rewrite_sender: noreply@example.com}
  off: {host: a.example}
`)
	if got := c.Providers["on"].RewriteSender; got != "noreply@example.com" {
		t.Errorf("rewrite_sender = %q", got)
	}
	if got := c.Providers["off"].RewriteSender; got != "" {
		t.Errorf("rewrite_sender is on by default: %q", got)
	}
	for _, v := range []string{`""`, "noreply", `"No Reply <noreply@example.com>"`, `"a b@example.com"`, "[a@example.com]"} {
		err := parseErr(t, "providers: {p: {host: a.example, rewrite_sender: "+v+"}}\n")
		if !strings.Contains(err, "providers.p.rewrite_sender: want") {
			t.Errorf("rewrite_sender %s: error %s", v, err)
		}
	}
}
