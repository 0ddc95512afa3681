package upstream

import (
	"crypto/x509"
	"log/slog"
	"sync"
	"time"
)

// Certificate expiry watch: after each verified handshake the leaf's expiry
// is recorded per provider (for metrics), and a leaf that expires within
// expiryWarnWithin gets a warning, at most once per provider per
// expiryWarnEvery.
const (
	expiryWarnWithin = 14 * 24 * time.Hour
	expiryWarnEvery  = 24 * time.Hour
)

// certWatch is the Client's record of upstream certificates. The zero value
// is ready; it is safe for concurrent use.
type certWatch struct {
	mu  sync.Mutex
	m   map[string]*certSeen // by provider
	now func() time.Time     // nil = time.Now; a seam for tests
}

type certSeen struct {
	notAfter time.Time
	warned   time.Time // when the last warning was logged; zero = never
}

// observe records leaf as provider's certificate and warns if it expires soon.
func (w *certWatch) observe(provider string, leaf *x509.Certificate, log *slog.Logger) {
	now := time.Now()
	if w.now != nil {
		now = w.now()
	}
	left := leaf.NotAfter.Sub(now)
	w.mu.Lock()
	if w.m == nil {
		w.m = map[string]*certSeen{}
	}
	seen := w.m[provider]
	if seen == nil {
		seen = &certSeen{}
		w.m[provider] = seen
	}
	seen.notAfter = leaf.NotAfter
	warn := left < expiryWarnWithin && (seen.warned.IsZero() || now.Sub(seen.warned) >= expiryWarnEvery)
	if warn {
		seen.warned = now
	}
	w.mu.Unlock()
	if warn {
		log.Warn("upstream certificate expires soon", "provider", provider, "subject", leaf.Subject.String(),
			"not_after", leaf.NotAfter.UTC().Format(time.RFC3339), "days_left", int(left.Hours()/24))
	}
}

// expiry returns the last recorded expiry of provider's certificate.
func (w *certWatch) expiry(provider string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if seen, ok := w.m[provider]; ok {
		return seen.notAfter, true
	}
	return time.Time{}, false
}

// CertExpiry returns when the certificate that provider presented at the
// last successful handshake expires, and false before any handshake. For
// metrics (days to expiry) and probes; safe for concurrent use.
func (c *Client) CertExpiry(provider string) (time.Time, bool) {
	return c.expiry.expiry(provider)
}
