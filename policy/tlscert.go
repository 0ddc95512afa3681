package policy

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// ClientCert is a provider's mTLS client certificate, read from a PEM
// certificate file and a PEM key file (tls.cert_file, tls.key_file). It
// follows changes to the files without a restart: at each handshake that
// asks for a client certificate, GetClientCertificate looks at the files'
// identity, size and modification time (one stat each), and reads the pair
// again only if they changed. If the new pair cannot be used (a half-written
// file, a key that does not match), the last good pair stays in use and the
// reload is retried at the next handshake; Certificate reports the failure
// once per state of the files, for the caller to log.
//
// It lives in policy because the first load belongs to config validation
// (an unreadable or mismatched pair is a start-up error with file:line), and
// every user of a Provider (delivery, probe) then shares the one loader.
// A ClientCert is safe for concurrent use; it is the one part of a Config that
// changes after Load, and only by following its files. It never prints key
// material: String and MarshalText name the certificate file only.
type ClientCert struct {
	certFile, keyFile string

	mu     sync.Mutex
	cert   *tls.Certificate // the last good pair
	stamp  fileStamp        // state of the files cert was read from
	failed string           // state of the files at the last failed reload
}

// fileStamp identifies a state of the two files.
type fileStamp struct{ cert, key os.FileInfo }

// fileError is an error about one of the two files.
type fileError struct {
	file string
	err  error
}

func (e *fileError) Error() string { return fmt.Sprintf("cannot read %q: %v", e.file, e.err) }
func (e *fileError) Unwrap() error { return e.err }

// LoadClientCert reads a certificate and key pair from PEM files. Errors name
// the file and the problem, never the contents.
func LoadClientCert(certFile, keyFile string) (*ClientCert, error) {
	c := &ClientCert{certFile: certFile, keyFile: keyFile}
	st, err := c.statFiles()
	if err != nil {
		return nil, err
	}
	cert, err := c.read()
	if err != nil {
		return nil, err
	}
	c.cert, c.stamp = cert, st
	return c, nil
}

// CertFile returns the certificate file's name.
func (c *ClientCert) CertFile() string { return c.certFile }

// KeyFile returns the key file's name.
func (c *ClientCert) KeyFile() string { return c.keyFile }

// String names the certificate file; never the key.
func (c *ClientCert) String() string {
	if c == nil {
		return "<no client certificate>"
	}
	return "client certificate " + c.certFile
}

// GoString keeps %#v from printing the key.
func (c *ClientCert) GoString() string { return c.String() }

// MarshalText keeps encoders (JSON, YAML, slog) from printing the key.
func (c *ClientCert) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// GetClientCertificate is for tls.Config.GetClientCertificate: it returns the
// current pair, reloading it first if the files changed. It never fails: with
// no usable pair the server decides (a reload failure is logged by callers
// that use Certificate instead).
func (c *ClientCert) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	cert, _ := c.Certificate()
	return cert, nil
}

// Certificate returns the current pair, reloading it first if the files
// changed since it was read. reloadErr is non-nil when the files changed but
// cannot be used: the previous pair is returned, and the same failure is not
// reported again until the files change once more.
func (c *ClientCert) Certificate() (cert *tls.Certificate, reloadErr error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := c.statFiles()
	if err == nil && st.same(c.stamp) {
		return c.cert, nil
	}
	if err == nil {
		var fresh *tls.Certificate
		if fresh, err = c.read(); err == nil {
			c.cert, c.stamp, c.failed = fresh, st, ""
			return c.cert, nil
		}
	}
	state := err.Error() + " " + st.String()
	if state == c.failed {
		return c.cert, nil
	}
	c.failed = state
	return c.cert, fmt.Errorf("client certificate changed but cannot be loaded; still using the previous one: %w", err)
}

// NotAfter returns the expiry of the current certificate.
func (c *ClientCert) NotAfter() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert == nil || c.cert.Leaf == nil {
		return time.Time{}
	}
	return c.cert.Leaf.NotAfter
}

// statFiles stats both files (following symbolic links, as Kubernetes
// secret mounts use them).
func (c *ClientCert) statFiles() (fileStamp, error) {
	var st fileStamp
	var err error
	if st.cert, err = os.Stat(c.certFile); err != nil {
		return st, &fileError{c.certFile, pathless(err)}
	}
	if st.key, err = os.Stat(c.keyFile); err != nil {
		return st, &fileError{c.keyFile, pathless(err)}
	}
	return st, nil
}

// read reads and parses the pair.
func (c *ClientCert) read() (*tls.Certificate, error) {
	certPEM, err := readSmallFile(c.certFile, maxCertFileBytes)
	if err != nil {
		return nil, &fileError{c.certFile, err}
	}
	keyPEM, err := readSmallFile(c.keyFile, maxCertFileBytes)
	if err != nil {
		return nil, &fileError{c.keyFile, err}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("cert_file %q and key_file %q are not a usable pair: %v "+
			"(want a PEM certificate, then its PEM private key)", c.certFile, c.keyFile, err)
	}
	return &cert, nil
}

// same reports whether both files are unchanged: same file (inode), size
// and modification time.
func (s fileStamp) same(o fileStamp) bool {
	eq := func(a, b os.FileInfo) bool {
		return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
	}
	return eq(s.cert, o.cert) && eq(s.key, o.key)
}

// String renders the state for deduplicating reload failures.
func (s fileStamp) String() string {
	f := func(fi os.FileInfo) string {
		if fi == nil {
			return "-"
		}
		return fmt.Sprintf("%d@%d", fi.Size(), fi.ModTime().UnixNano())
	}
	return f(s.cert) + "/" + f(s.key)
}
