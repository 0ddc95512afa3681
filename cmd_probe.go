package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/tlsrelay/tlsrelay/policy"
	"github.com/tlsrelay/tlsrelay/upstream"
)

// errProbeFailed makes the exit status 1 after a probe that printed its
// reason (and fix) already.
var errProbeFailed = errors.New("probe failed")

// cmdProbe connects to a provider exactly as its policy says and reports
// what it sees; when that fails it finds out what the server accepts and
// prints the configuration change that works. Exit status 1 on failure.
func cmdProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("probe", stderr)
	path := fs.String("config", "relay.yaml", "config file that defines PROVIDER")
	tryAuth := fs.Bool("auth", false, "try AUTH with the provider's credentials (never printed), then QUIT; without it no credential is sent")
	asJSON := fs.Bool("json", false, "print one JSON object")
	timeout := fs.Duration("timeout", upstream.DefaultProbeTimeout, "bound of the session; after a failure, each diagnostic handshake has 2s")
	var pf policyFlags
	pf.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: tlsrelay probe [-config relay.yaml] [-auth] [-json] [-timeout D] PROVIDER\n"+
			"       tlsrelay probe [-auth] [-json] [-timeout D] [-mode M] [-server-name N] [-ca-file F]\n"+
			"                      [-min-version V] [-max-version V] [-ciphers LIST] [-insecure-skip-verify] HOST:PORT")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "tlsrelay probe: want one PROVIDER or HOST:PORT, after the flags (flags go before arguments)")
		return errUsage
	}
	p, cfg, configFile, err := probeTarget(fs, fs.Arg(0), *path, &pf)
	if err != nil {
		return err
	}
	if *tryAuth && p.Auth.Mechanism == "" {
		return fmt.Errorf("probe -auth: provider %s has no auth section: there are no credentials to try", p.Name)
	}
	r := upstream.Probe(ctx, p, upstream.ProbeOptions{
		Auth: *tryAuth, HelloName: cfg.Listen.Hostname, Timeout: *timeout,
		ConfigFile: configFile, Warnings: providerWarnings(cfg, p.Name),
	})
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		r.WriteText(stdout)
	}
	if !r.OK {
		return errProbeFailed
	}
	return nil
}

// probeTarget returns the provider to probe: PROVIDER from the config file,
// or HOST:PORT with the policy the flags make. configFile is "" for the latter.
func probeTarget(fs *flag.FlagSet, arg, path string, pf *policyFlags) (*policy.Provider, *policy.Config, string, error) {
	var set []string
	fs.Visit(func(f *flag.Flag) {
		if slices.Contains(policyFlagNames, f.Name) {
			set = append(set, "-"+f.Name)
		}
	})
	if host, port, err := net.SplitHostPort(arg); err == nil {
		cfg, name, err := pf.config(host, port)
		if err != nil {
			return nil, nil, "", err
		}
		return cfg.Providers[name], cfg, "", nil
	}
	if len(set) > 0 {
		return nil, nil, "", fmt.Errorf("probe: %s set the policy of a HOST:PORT; provider %s has its policy in %s (edit it there, or probe its HOST:PORT with these flags)",
			strings.Join(set, ", "), arg, path)
	}
	cfg, err := policy.Load(path, os.LookupEnv)
	if err != nil {
		return nil, nil, "", fmt.Errorf("%s is not valid:\n%w", path, err)
	}
	p := cfg.Providers[arg]
	if p == nil {
		names := make([]string, 0, len(cfg.Providers))
		for n := range cfg.Providers {
			names = append(names, n)
		}
		slices.Sort(names)
		return nil, nil, "", fmt.Errorf("probe: no provider %q in %s; want one of %s, or HOST:PORT", arg, path, strings.Join(names, ", "))
	}
	return p, cfg, path, nil
}

// providerWarnings returns the config's warnings about provider name.
func providerWarnings(cfg *policy.Config, name string) []string {
	var out []string
	for _, w := range cfg.Warnings() {
		if strings.HasPrefix(w, "provider "+name+": ") {
			out = append(out, w)
		}
	}
	return out
}
