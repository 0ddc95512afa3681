package mailsink

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// defaultNames are the subject alternative names of the leaf certificate
// unless Options.CertNames overrides them.
var defaultNames = []string{"127.0.0.1", "::1", "localhost"}

// certs is the PKI of one fake server, made in memory at run time.
type certs struct {
	leaf     tls.Certificate // served, with its issuing CA in the chain
	root     *x509.Certificate
	pool     *x509.CertPool // contains root
	caPEM    []byte         // root, PEM-encoded
	clientCA *authority     // signs client certificates; nil unless RequireClientCert
}

type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// newCerts makes a CA and a leaf as o asks: for o.CertNames, signed by the
// CA, by another CA (Untrusted) or by itself (SelfSigned), with an RSA or
// ECDSA key, expiring at CertNotAfter; and a client CA for RequireClientCert.
func newCerts(o *Options) (*certs, error) {
	names := o.CertNames
	if len(names) == 0 {
		names = defaultNames
	}
	root, err := newAuthority("tlsrelay mailsink CA")
	if err != nil {
		return nil, err
	}
	signer := root
	switch {
	case o.SelfSigned:
		signer = nil
	case o.Untrusted:
		if signer, err = newAuthority("tlsrelay mailsink untrusted CA"); err != nil {
			return nil, err
		}
	}
	leaf, err := newLeaf(signer, names, o.rsaKey(), o.CertNotAfter)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(root.cert)
	c := &certs{
		leaf:  leaf,
		root:  root.cert,
		pool:  pool,
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.cert.Raw}),
	}
	if o.RequireClientCert {
		if c.clientCA, err = newAuthority("tlsrelay mailsink client CA"); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func newAuthority(cn string) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl, err := template(cn, time.Time{})
	if err != nil {
		return nil, err
	}
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.MaxPathLenZero = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("mailsink: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key}, nil
}

// newKey makes an RSA 2048 or an ECDSA P-256 key.
func newKey(useRSA bool) (crypto.Signer, error) {
	if useRSA {
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// newLeaf makes a server certificate for names, signed by ca (nil: by
// itself), expiring at notAfter (zero: a year from now).
func newLeaf(ca *authority, names []string, useRSA bool, notAfter time.Time) (tls.Certificate, error) {
	key, err := newKey(useRSA)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl, err := template(names[0], notAfter)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if useRSA {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment // RSA key exchange
	}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	return sign(tmpl, ca, key)
}

// sign issues tmpl for key, signed by ca (nil: self-signed), and returns it
// with ca's certificate in the chain.
func sign(tmpl *x509.Certificate, ca *authority, key crypto.Signer) (tls.Certificate, error) {
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("mailsink: certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	chain := [][]byte{der}
	if ca != nil {
		chain = append(chain, ca.cert.Raw)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

// template is valid from a day ago (clock skew) until notAfter, or for one
// year when notAfter is zero; it starts at least a day before notAfter.
func template(cn string, notAfter time.Time) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if notAfter.IsZero() {
		notAfter = start.AddDate(1, 0, 0)
	}
	if notAfter.Before(start) {
		start = notAfter
	}
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"tlsrelay mailsink"}},
		NotBefore:    start.Add(-24 * time.Hour),
		NotAfter:     notAfter,
	}, nil
}
