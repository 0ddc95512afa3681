package mailsink

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"time"
)

// applyTLSOptions puts the TLS options into a server config.
func (s *Server) applyTLSOptions(cfg *tls.Config) {
	o := &s.opts
	if o.TLSMinVersion != 0 {
		cfg.MinVersion = o.TLSMinVersion
	}
	if o.TLSMaxVersion != 0 {
		cfg.MaxVersion = o.TLSMaxVersion
	}
	if o.CipherSuites != nil {
		cfg.CipherSuites = append([]uint16(nil), o.CipherSuites...)
	}
	if s.certs.clientCA != nil {
		pool := x509.NewCertPool()
		pool.AddCert(s.certs.clientCA.cert)
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
}

// rsaKey reports whether the leaf needs an RSA key: RSAKey, or CipherSuites
// naming only suites that authenticate the server with RSA.
func (o *Options) rsaKey() bool {
	if o.RSAKey {
		return true
	}
	if len(o.CipherSuites) == 0 {
		return false
	}
	for _, id := range o.CipherSuites {
		name := tls.CipherSuiteName(id)
		if !strings.HasPrefix(name, "TLS_RSA_") && !strings.HasPrefix(name, "TLS_ECDHE_RSA_") {
			return false
		}
	}
	return true
}

// Leaf returns the server's certificate (the leaf it presents).
func (s *Server) Leaf() *x509.Certificate { return s.certs.leaf.Leaf }

// PinSHA256 returns the base64 SHA-256 hash of the leaf's public key
// (SubjectPublicKeyInfo), as tls.pin_sha256 and curl's --pinnedpubkey want it.
func (s *Server) PinSHA256() string {
	sum := sha256.Sum256(s.certs.leaf.Leaf.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// ClientCertPEM makes a client certificate for cn, signed by the CA that a
// server started with RequireClientCert trusts, and returns it and its
// private key, PEM-encoded (for tls.cert_file and tls.key_file). Each call
// makes a new key and serial number.
func (s *Server) ClientCertPEM(cn string) (certPEM, keyPEM []byte, err error) {
	if s.certs.clientCA == nil {
		return nil, nil, errors.New("mailsink: ClientCertPEM needs Options.RequireClientCert")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl, err := template(cn, time.Time{})
	if err != nil {
		return nil, nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	cert, err := sign(tmpl, s.certs.clientCA, key)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return certPEM, keyPEM, nil
}
