package upstream

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// This file is the text form of a ProbeReport, as `tlsrelay probe` prints it.

// WriteText prints the report as aligned "key: value" lines, then
// "probe: OK" or "probe: FAILED: reason" and, if known, "fix: ...".
func (r *ProbeReport) WriteText(w io.Writer) {
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
func policyLine(p ProbePolicy) string {
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
func printChain(kv func(string, string, ...any), chain []ProbeCert) {
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
func authLine(r *ProbeReport) string {
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
func printScan(kv func(string, string, ...any), s *ProbeScan) {
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
