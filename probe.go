package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tlsrelay/tlsrelay/policy"
	"github.com/tlsrelay/tlsrelay/upstream"
)

// errProbeFailed makes the exit status 1 after a probe that printed its
// reason (and fix) already.
var errProbeFailed = errors.New("probe failed")

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
		printProbe(stdout, r)
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

// printProbe prints a report as aligned "key: value" lines, then
// "probe: OK" or "probe: FAILED: reason" and, if known, "fix: ...".
func printProbe(w io.Writer, r *upstream.ProbeReport) {
	kv := func(k, format string, args ...any) { fmt.Fprintf(w, "%-15s %s\n", k+":", fmt.Sprintf(format, args...)) }
	pol := r.Policy
	kv("provider", "%s", r.Provider)
	kv("address", "%s (tls.mode %s, server name %s)", r.Addr, pol.Mode, pol.ServerName)
	kv("policy", "%s", policyLine(pol))
	if r.Connected {
		kv("connect", "%.1f ms", r.ConnectMS)
	}
	if r.Greeting != "" {
		kv("greeting", "%s", r.Greeting)
	}
	if r.EHLOPreTLS != nil {
		kv("ehlo (plain)", "%s", strings.Join(r.EHLOPreTLS, ", "))
	}
	if r.StartTLSOffered != nil {
		kv("starttls", "%s", map[bool]string{true: "offered", false: "NOT offered"}[*r.StartTLSOffered])
	}
	if r.TLS != nil {
		kv("tls", "%s, %s, handshake %.1f ms", r.TLS.Version, r.TLS.Cipher, r.TLS.HandshakeMS)
	}
	if r.TLSError != "" {
		kv("tls", "FAILED: %s", r.TLSError)
	}
	printChain(kv, r.Chain)
	if r.TLS != nil || r.VerifyError != "" {
		verified := "ok"
		if r.VerifyError != "" {
			verified = "NO: " + r.VerifyError
		}
		kv("verified", "%s", verified)
	}
	if r.TLS != nil && r.Error == "" || len(r.EHLO) > 0 {
		kv("ehlo", "%s", strings.Join(r.EHLO, ", "))
		kv("auth offered", "%s", cmp.Or(strings.Join(r.AuthMechanisms, " "), "none"))
		kv("auth", "%s", authLine(r))
	}
	printScan(kv, r.Scan)
	for _, warning := range r.Warnings {
		kv("WARNING", "%s", warning)
	}
	if r.OK {
		fmt.Fprintln(w, "probe: OK")
		return
	}
	fmt.Fprintln(w, "probe: FAILED: "+r.Error)
	if r.Fix != "" {
		fmt.Fprintln(w, "fix: "+r.Fix)
	}
}

// policyLine summarizes the TLS and AUTH policy on one line.
func policyLine(p upstream.ProbePolicy) string {
	s := "TLS " + p.MinVersion
	if p.MaxVersion != p.MinVersion {
		s += " to " + p.MaxVersion
	}
	s += ", ciphers [" + strings.Join(p.Ciphers, ", ") + "]"
	if p.CAFile != "" {
		s += ", ca_file " + p.CAFile
	}
	if p.Pins > 0 {
		s += fmt.Sprintf(", %d pin(s)", p.Pins)
	}
	if p.ClientCert {
		s += ", client certificate"
	}
	if p.InsecureSkipVerify {
		s += ", INSECURE_SKIP_VERIFY"
	}
	if p.AuthMechanism == "" {
		return s + ", no AUTH"
	}
	return s + ", auth " + p.AuthMechanism + " (credentials from " + p.CredentialsFrom + ")"
}

// printChain prints each certificate, leaf first.
func printChain(kv func(string, string, ...any), chain []upstream.ProbeCert) {
	for i, c := range chain {
		which := "leaf"
		if i > 0 {
			which = fmt.Sprintf("chain %d", i)
		}
		kv("certificate", "%s (%s)", c.Subject, which)
		kv("  issuer", "%s", c.Issuer)
		if names := append(slices.Clone(c.DNSNames), c.IPAddresses...); len(names) > 0 {
			kv("  names", "%s", strings.Join(names, ", "))
		}
		kv("  valid", "%s to %s (%d days left)", c.NotBefore.Format(time.DateOnly), c.NotAfter.Format(time.DateOnly), c.DaysLeft)
		if c.PinSHA256 != "" {
			kv("  pin_sha256", "%s", c.PinSHA256)
		}
	}
}

// authLine says what AUTH the policy would use and how a try went.
func authLine(r *upstream.ProbeReport) string {
	switch a := r.Auth; {
	case r.Policy.AuthMechanism == "":
		return "none configured (no auth section)"
	case a.Tried && a.OK:
		return "ok, " + r.AuthMechanism + ": " + a.Reply
	case a.Tried:
		return "FAILED, " + r.AuthMechanism + ": " + cmp.Or(a.Reply, r.Error)
	case r.AuthMechanism != "":
		return fmt.Sprintf("%s (auth.mechanism %s); not tried: add -auth to try the credentials", r.AuthMechanism, r.Policy.AuthMechanism)
	}
	return "no mechanism in common (auth.mechanism " + r.Policy.AuthMechanism + ")"
}

// printScan prints what the diagnosis found the server accepts.
func printScan(kv func(string, string, ...any), s *upstream.ProbeScan) {
	if s == nil {
		return
	}
	line := "accepts TLS " + cmp.Or(strings.Join(s.Versions, ", "), "none")
	if len(s.Refused) > 0 {
		line += "; refuses TLS " + strings.Join(s.Refused, ", ")
	}
	kv("scan", "%s (%d handshakes)", line, s.Handshakes)
	if s.SuitesAt != "" {
		kv("  suites", "at TLS %s: %s", s.SuitesAt, cmp.Or(strings.Join(s.Suites, ", "), "none"))
	}
}
