package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/tlsrelay/tlsrelay/policy"
)

// policyFlags are the probe flags that make a HOST:PORT's policy.
type policyFlags struct {
	mode, serverName, caFile, minVersion, maxVersion, ciphers string
	insecure                                                  bool
}

// policyFlagNames are the flags policyFlags registers.
var policyFlagNames = []string{"mode", "server-name", "ca-file", "min-version", "max-version", "ciphers", "insecure-skip-verify"}

func (f *policyFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.mode, "mode", "", "HOST:PORT only: tls.mode, implicit or starttls (default: implicit for port 465, else starttls)")
	fs.StringVar(&f.serverName, "server-name", "", "HOST:PORT only: tls.server_name, the name the certificate must carry (default: HOST)")
	fs.StringVar(&f.caFile, "ca-file", "", "HOST:PORT only: tls.ca_file, PEM CA certificates to trust instead of the system roots")
	fs.StringVar(&f.minVersion, "min-version", "", `HOST:PORT only: tls.min_version, "1.0" to "1.3" (default "1.2")`)
	fs.StringVar(&f.maxVersion, "max-version", "", `HOST:PORT only: tls.max_version, "1.0" to "1.3" (default "1.3")`)
	fs.StringVar(&f.ciphers, "ciphers", "", "HOST:PORT only: tls.ciphers, comma-separated Go suite names; default stands for Go's defaults")
	fs.BoolVar(&f.insecure, "insecure-skip-verify", false, "HOST:PORT only: tls.insecure_skip_verify: do NOT verify the certificate (insecure; warned)")
}

var providerNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// config makes a one-provider configuration for host:port from the flags,
// written as relay.yaml and validated by policy.Parse: the same defaults and
// checks (cipher names against versions, ca_file) as a provider in a file.
func (f *policyFlags) config(host, port string) (*policy.Config, string, error) {
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return nil, "", fmt.Errorf("probe: want HOST:PORT with a port from 1 to 65535, got %q", net.JoinHostPort(host, port))
	}
	name := host
	if !providerNameRE.MatchString(name) {
		name = "probe"
	}
	t := map[string]any{}
	for key, v := range map[string]string{"mode": f.mode, "server_name": f.serverName, "ca_file": f.caFile,
		"min_version": f.minVersion, "max_version": f.maxVersion} {
		if v != "" {
			t[key] = v
		}
	}
	if f.ciphers != "" {
		var list []string
		for _, c := range strings.Split(f.ciphers, ",") {
			list = append(list, strings.TrimSpace(c))
		}
		t["ciphers"] = list
	}
	if f.insecure {
		t["insecure_skip_verify"] = true
	}
	prov := map[string]any{"host": host, "port": n}
	if len(t) > 0 {
		prov["tls"] = t
	}
	doc := map[string]any{
		"listen":    map[string]any{"addr": "127.0.0.1:0"}, // not this relay's: any port may be probed
		"providers": map[string]any{name: prov},
	}
	data, err := yaml.Marshal(doc)
	if err != nil {
		return nil, "", err
	}
	cfg, err := policy.Parse("probe flags", data, os.LookupEnv)
	if err != nil {
		return nil, "", fmt.Errorf("the probe flags do not make a valid policy (tls.X is the flag -X):\n%w", err)
	}
	return cfg, name, nil
}
