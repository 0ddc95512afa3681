package policy

import (
	"strings"
	"testing"
	"time"
)

// The provider limits: rate, max_messages_per_connection and idle_timeout
// (max_connections has its own tests). Bad values are in testdata/bad-rate-*,
// bad-max-messages-per-connection and bad-idle-timeout.

func TestLimitDefaults(t *testing.T) {
	p := mustParse(t, minimal).Providers["up"]
	if p.Rate != (Rate{}) || p.MaxMessagesPerConnection != 100 || p.IdleTimeout != 30*time.Second || p.MaxConnections != 4 {
		t.Errorf("defaults: rate %+v, max_messages_per_connection %d, idle_timeout %s, max_connections %d; want none, 100, 30s, 4",
			p.Rate, p.MaxMessagesPerConnection, p.IdleTimeout, p.MaxConnections)
	}
	if p.Rate.String() != "" {
		t.Errorf("no rate renders as %q, want \"\"", p.Rate.String())
	}
}

func TestRateParsing(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rate
	}{
		{"1/s", Rate{1, time.Second}},
		{"20/s", Rate{20, time.Second}},
		{"30/m", Rate{30, time.Minute}},
		{"1000/h", Rate{1000, time.Hour}},
		{"007/m", Rate{7, time.Minute}},
	} {
		c := mustParse(t, "providers:\n  up:\n    host: smtp.example.com\n    rate: "+tc.in+"\n")
		if got := c.Providers["up"].Rate; got != tc.want {
			t.Errorf("rate: %s = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestRateRefused(t *testing.T) {
	for _, in := range []string{
		`0/s`, `-1/s`, `10/d`, `10/sec`, `10`, `"10"`, `10/S`, `10 /s`, `ten/s`, `/s`, `1.5/s`,
		`99999999999/s`, `"2147483648/s"`, `[10/s]`, `{n: 10}`, `""`, `null`,
	} {
		src := "providers:\n  up:\n    host: smtp.example.com\n    rate: " + in + "\n"
		_, err := Parse("test.yaml", []byte(src), testEnv)
		if err == nil {
			t.Errorf("rate: %s was accepted", in)
			continue
		}
		if want := "test.yaml:4: providers.up.rate: want a rate"; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("rate: %s: error %q, want it to start with %q", in, err, want)
		}
	}
}

func TestLimitValues(t *testing.T) {
	c := mustParse(t, `providers:
  up:
    host: smtp.example.com
    max_connections: 2
    rate: 10/m
    max_messages_per_connection: 1
    idle_timeout: 2m
`)
	p := c.Providers["up"]
	if p.MaxConnections != 2 || p.Rate != (Rate{10, time.Minute}) || p.MaxMessagesPerConnection != 1 || p.IdleTimeout != 2*time.Minute {
		t.Errorf("provider = %+v", p)
	}
}

func TestLimitsEffective(t *testing.T) {
	c := mustParse(t, `providers:
  limited:
    host: smtp.example.com
    rate: 20/s
    max_messages_per_connection: 5
    idle_timeout: 90s
  plain:
    host: smtp.example.org
`)
	out := string(c.Effective())
	for _, want := range []string{
		"  limited:\n    host: smtp.example.com\n    port: 465\n    max_connections: 4\n    rate: 20/s\n    max_messages_per_connection: 5\n    idle_timeout: 1m30s\n",
		"  plain:\n    host: smtp.example.org\n    port: 465\n    max_connections: 4\n    max_messages_per_connection: 100\n    idle_timeout: 30s\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("effective output lacks\n%s\nin\n%s", want, out)
		}
	}
	again, err := Parse("effective.yaml", []byte(out), testEnv)
	if err != nil {
		t.Fatalf("the effective output does not parse:\n%v\n%s", err, out)
	}
	for name, p := range c.Providers {
		q := again.Providers[name]
		if q.Rate != p.Rate || q.MaxMessagesPerConnection != p.MaxMessagesPerConnection || q.IdleTimeout != p.IdleTimeout {
			t.Errorf("%s after a round trip: %+v, want %+v", name, q, p)
		}
	}
}

func TestPresetLimits(t *testing.T) {
	c := mustParse(t, `providers:
  o365: {preset: outlook}
  mine: {preset: outlook, rate: 1/s, max_connections: 1}
  ses: {preset: aws-ses, region: eu-west-1}
`)
	if p := c.Providers["o365"]; p.Rate != (Rate{30, time.Minute}) || p.MaxConnections != 3 {
		t.Errorf("outlook preset: rate %v, max_connections %d; want 30/m, 3", p.Rate, p.MaxConnections)
	}
	if p := c.Providers["mine"]; p.Rate != (Rate{1, time.Second}) || p.MaxConnections != 1 {
		t.Errorf("outlook preset overridden: rate %v, max_connections %d; want 1/s, 1", p.Rate, p.MaxConnections)
	}
	if p := c.Providers["ses"]; p.Rate != (Rate{}) || p.MaxMessagesPerConnection != 100 {
		t.Errorf("aws-ses preset: rate %v, max_messages_per_connection %d; want none, 100", p.Rate, p.MaxMessagesPerConnection)
	}
	if out := string(c.Effective()); !strings.Contains(out, "rate: 30/m") {
		t.Errorf("effective output does not show the preset's rate:\n%s", out)
	}
}
