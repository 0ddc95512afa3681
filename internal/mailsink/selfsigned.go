package mailsink

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"strings"
	"time"
)

// KeyPair is a self-signed certificate made at run time, in the forms tests
// need: for a tls.Config, as a pool that trusts it, and as PEM files.
type KeyPair struct {
	Cert    tls.Certificate
	Leaf    *x509.Certificate
	Pool    *x509.CertPool // trusts Leaf
	CertPEM []byte
	KeyPEM  []byte // PKCS#8
}

// SelfSigned makes an ECDSA P-256 certificate for names (IP addresses or
// DNS names; the first is also the common name), valid from an hour ago
// for a day, usable as a server certificate and as its own CA. For test
// servers of one's own; Server has its own CA and leaf.
func SelfSigned(names ...string) (*KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	cn := "smtptest"
	if len(names) > 0 {
		cn = names[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &KeyPair{
		Cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, Leaf: leaf, Pool: pool,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	}, nil
}

// Body returns a message of exactly size bytes (at least the header block
// and one line): a small header, then 76-character lines, each ending in
// CRLF, none starting with a dot. For benchmarks and load tests.
func Body(size int) string {
	var sb strings.Builder
	sb.WriteString("From: app@example.com\r\nTo: b@example.net\r\nSubject: bench\r\n\r\n")
	for sb.Len()+78 <= size {
		sb.WriteString(strings.Repeat("x", 76) + "\r\n")
	}
	for sb.Len() < size-2 {
		sb.WriteByte('y')
	}
	sb.WriteString("\r\n")
	return sb.String()
}
