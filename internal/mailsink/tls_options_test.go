package mailsink

import (
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"
)

// handshake dials s with cfg (trusting s's CA, for 127.0.0.1 unless set)
// and returns the connection state or the handshake error.
func handshake(t *testing.T, s *Server, cfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	if cfg.RootCAs == nil {
		cfg.RootCAs = s.RootCAs()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "127.0.0.1"
	}
	c, err := tls.Dial("tcp", s.Addr(), cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}

func TestTLSOptions(t *testing.T) {
	rsaOnly := Start(t, Options{Mode: ImplicitTLS, CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_256_CBC_SHA}, TLSMaxVersion: tls.VersionTLS12})
	if _, ok := rsaOnly.Leaf().PublicKey.(*rsa.PublicKey); !ok {
		t.Errorf("RSA-only server has a %T key, want RSA", rsaOnly.Leaf().PublicKey)
	}
	if _, err := handshake(t, rsaOnly, &tls.Config{}); err == nil {
		t.Error("a default client reached the RSA-only server")
	}
	st, err := handshake(t, rsaOnly, &tls.Config{CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_256_CBC_SHA}})
	if err != nil || st.CipherSuite != tls.TLS_RSA_WITH_AES_256_CBC_SHA {
		t.Errorf("RSA client: %v, suite %s", err, tls.CipherSuiteName(st.CipherSuite))
	}

	old := Start(t, Options{Mode: ImplicitTLS, TLSMinVersion: tls.VersionTLS10, TLSMaxVersion: tls.VersionTLS10})
	if st, err := handshake(t, old, &tls.Config{MinVersion: tls.VersionTLS10}); err != nil || st.Version != tls.VersionTLS10 {
		t.Errorf("TLS 1.0 server: %v, version %s", err, tls.VersionName(st.Version))
	}
	only13 := Start(t, Options{Mode: ImplicitTLS, TLSMinVersion: tls.VersionTLS13})
	if _, err := handshake(t, only13, &tls.Config{MaxVersion: tls.VersionTLS12}); err == nil {
		t.Error("a TLS 1.2 client reached the TLS 1.3-only server")
	}

	expired := Start(t, Options{Mode: ImplicitTLS, CertNotAfter: time.Now().Add(-time.Hour)})
	if _, err := handshake(t, expired, &tls.Config{}); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired certificate: %v", err)
	}
	self := Start(t, Options{Mode: ImplicitTLS, SelfSigned: true})
	var unknown x509.UnknownAuthorityError
	if _, err := handshake(t, self, &tls.Config{}); !errors.As(err, &unknown) {
		t.Errorf("self-signed certificate: %v, want unknown authority", err)
	}
	if len(self.Leaf().Raw) == 0 || self.PinSHA256() == Start(t, Options{Mode: ImplicitTLS}).PinSHA256() {
		t.Error("PinSHA256 does not tell servers apart")
	}
	if _, _, err := self.ClientCertPEM("x"); err == nil {
		t.Error("ClientCertPEM without RequireClientCert succeeded")
	}
}

func TestRequireClientCert(t *testing.T) {
	s := Start(t, Options{Mode: ImplicitTLS, RequireClientCert: true, TLSMaxVersion: tls.VersionTLS12})
	if _, err := handshake(t, s, &tls.Config{}); err == nil {
		t.Error("handshake without a client certificate succeeded")
	}
	certPEM, keyPEM, err := s.ClientCertPEM("client-a")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(t, s, &tls.Config{Certificates: []tls.Certificate{pair}}); err != nil {
		t.Errorf("handshake with the client certificate: %v", err)
	}
}
