package upstream

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/delivery"
	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/policy"
)

// selfSigned returns a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	kp, err := smtptest.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return kp.Cert, kp.Pool
}

func verb(line string) string { return strings.ToUpper(strings.Fields(line + " x")[0]) }

// Plaintext sent with the 220 to STARTTLS ("response injection",
// CVE-2011-0411) must not be read as a reply inside TLS: here it would
// offer AUTH PLAIN, which the real server inside TLS does not offer.
func TestSTARTTLSResponseInjectionIgnored(t *testing.T) {
	cert, pool := selfSigned(t)
	verbs := make(chan string, 100) // commands seen inside TLS
	done := make(chan struct{})
	p := scripted(t, func(c net.Conn, _ <-chan struct{}) {
		defer close(done)
		r := bufio.NewReader(c)
		io.WriteString(c, "220 inject.test ESMTP\r\n")
		if _, err := r.ReadString('\n'); err != nil { // EHLO
			return
		}
		io.WriteString(c, "250-inject.test\r\n250 STARTTLS\r\n")
		if _, err := r.ReadString('\n'); err != nil { // STARTTLS
			return
		}
		io.WriteString(c, "220 go ahead\r\n250-injected\r\n250 AUTH PLAIN\r\n")
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		tr := bufio.NewReader(tc)
		for {
			line, err := tr.ReadString('\n')
			if err != nil {
				return
			}
			verbs <- verb(line)
			if verb(line) == "EHLO" {
				io.WriteString(tc, "250 inject.test\r\n")
			} else {
				io.WriteString(tc, "502 no\r\n")
			}
		}
	})
	p.TLS = policy.TLS{Mode: policy.TLSStartTLS, RootCAs: pool}
	p.Auth = policy.Auth{Mechanism: "plain", Username: "alice", Password: password}
	c, _ := newClient(t, p)
	r, _ := timed(t, c, t.Context(), smallMsg())
	// Either the injected bytes were dropped with the buffer (AUTH PLAIN is
	// then not offered), or they broke the handshake; never an AUTH.
	e := wantErrOp(t, r, "auth", "tls")
	t.Logf("outcome: %v", e)
	if e.Op == "auth" && !strings.Contains(e.Error(), "it offers no AUTH") {
		t.Errorf("error text: %v", e)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("server still running 10s after the delivery")
	}
	close(verbs)
	for v := range verbs {
		if v != "EHLO" {
			t.Errorf("server got %s inside TLS", v)
		}
	}
}

// wantErrOp checks that r failed, temporarily, at one of ops.
func wantErrOp(t *testing.T, r delivery.Result, ops ...string) *Error {
	t.Helper()
	e, ok := r.Err.(*Error)
	if !ok {
		t.Fatalf("err = %v, want *upstream.Error", r.Err)
	}
	for _, op := range ops {
		if e.Op == op && !e.Perm {
			return e
		}
	}
	t.Fatalf("err = %v (op %q, permanent %v); want a temporary error at %q", e, e.Op, e.Perm, ops)
	return nil
}
