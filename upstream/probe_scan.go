package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/tlsrelay/tlsrelay/policy"
)

// maxScanHandshakes bounds the connections of one diagnosis: four TLS
// versions, then one handshake per suite (22 at TLS 1.2), and a peek or two.
const maxScanHandshakes = 30

var errScanBudget = errors.New("probe: diagnostic handshake budget used up")

// scanner runs the diagnostic connections after a failed probe. Each is a
// new connection, bounded by ProbeOptions.ScanTimeout, that sends nothing
// but EHLO and STARTTLS (in mode starttls) and a TLS handshake: never a
// credential, never a message. Its handshakes skip certificate verification
// because they only ask which versions and suites the server accepts; the
// connection is closed right after.
type scanner struct {
	pr   *prober
	n    int   // connections made
	last error // the last failure, for the report
}

// newScanner starts a diagnosis bounded by the caller's context, not the
// session's: the session may have failed by running out of time.
func (pr *prober) newScanner() *scanner { return &scanner{pr: pr} }

// dial opens one diagnostic connection and returns it with a context that
// ends ScanTimeout from now, and a func that closes both.
func (s *scanner) dial() (net.Conn, context.Context, func(), error) {
	if s.n >= maxScanHandshakes {
		return nil, nil, nil, errScanBudget
	}
	if err := s.pr.parent.Err(); err != nil {
		return nil, nil, nil, err // cancelled: each further try ends here at once
	}
	s.n++
	o := s.pr.o
	ctx, cancel := context.WithTimeout(s.pr.parent, o.ScanTimeout)
	raw, err := s.pr.d.c.dial(ctx, s.pr.p.Addr(), o.ScanTimeout)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	done := func() {
		stop()
		raw.Close()
		cancel()
	}
	conn := &deadlineConn{Conn: raw, write: o.ScanTimeout}
	conn.limit("diagnostic connection", time.Now().Add(o.ScanTimeout), o.ScanTimeout)
	return conn, ctx, done, nil
}

// handshake runs one TLS handshake with cfg on a new connection, after EHLO
// and STARTTLS when mode is starttls, and closes it.
func (s *scanner) handshake(cfg *tls.Config, mode policy.TLSMode) (tls.ConnectionState, error) {
	conn, ctx, done, err := s.dial()
	if err != nil {
		s.last = err
		return tls.ConnectionState{}, err
	}
	defer done()
	if mode == policy.TLSStartTLS {
		if err := s.startTLS(conn); err != nil {
			s.last = err
			return tls.ConnectionState{}, err
		}
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		s.last = err
		return tls.ConnectionState{}, err
	}
	st := tc.ConnectionState()
	tc.Close() // close_notify; nothing was sent inside
	return st, nil
}

// startTLS says EHLO and STARTTLS on a plaintext connection, as
// delivery.startTLS does.
func (s *scanner) startTLS(conn net.Conn) error {
	pre := newSMTPConn(conn)
	sc := smtp.NewClient(pre)
	if err := sc.Hello(s.pr.d.c.helloName()); err != nil {
		return err
	}
	if ok, _ := sc.Extension("STARTTLS"); !ok {
		return errNoStartTLS
	}
	return startTLS(pre)
}

// peekPlain reads the greeting on a new connection, says EHLO, and reports
// whether STARTTLS is offered; then QUIT.
func (s *scanner) peekPlain() (greeting string, startTLS bool, err error) {
	conn, _, done, err := s.dial()
	if err != nil {
		return "", false, err
	}
	defer done()
	rec := &replyRecorder{Conn: conn}
	sc := smtp.NewClient(newSMTPConn(rec))
	err = sc.Hello(s.pr.d.c.helloName())
	greeting = rec.text(0)
	if err != nil {
		return greeting, false, err
	}
	startTLS, _ = sc.Extension("STARTTLS")
	sc.Quit()
	return greeting, startTLS, nil
}

// speaksTLS reports whether the server answers a TLS handshake at once
// (implicit TLS), with any version and suite Go knows: a completed
// handshake or a TLS alert both say so.
func (s *scanner) speaksTLS() bool {
	cfg := s.config(tls.VersionTLS10, tls.VersionTLS13, suitesFor(0))
	_, err := s.handshake(cfg, policy.TLSImplicit)
	_, alert := remoteAlert(err)
	return err == nil || alert
}

// config is the provider's TLS config (server name, client certificate)
// opened to versions lo to hi and suites, without verification: it only
// asks what the server accepts, and nothing is sent over it.
func (s *scanner) config(lo, hi uint16, suites []uint16) *tls.Config {
	cfg := tlsConfig(s.pr.p, nil)
	cfg.MinVersion, cfg.MaxVersion = lo, hi
	cfg.CipherSuites = suites
	cfg.InsecureSkipVerify = true //nolint:gosec // diagnosis only: no credential or message is sent on it
	cfg.VerifyConnection = nil
	return cfg
}

// versions tries each TLS version alone, with every suite Go knows, and
// returns those the server accepts and those it refuses, highest first.
func (s *scanner) versions(mode policy.TLSMode) (accepted, refused []uint16) {
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12, tls.VersionTLS11, tls.VersionTLS10} {
		if _, err := s.handshake(s.config(v, v, suitesFor(v)), mode); err == nil {
			accepted = append(accepted, v)
		} else {
			refused = append(refused, v)
		}
	}
	return accepted, refused
}

// suites tries each suite Go knows for version v (at most 1.2) alone and
// returns those the server accepts, in Go's order of preference.
func (s *scanner) suites(v uint16, mode policy.TLSMode) []uint16 {
	var ok []uint16
	for _, id := range suitesFor(v) {
		if _, err := s.handshake(s.config(v, v, []uint16{id}), mode); err == nil {
			ok = append(ok, id)
		} else if errors.Is(err, errScanBudget) {
			break
		}
	}
	slices.SortStableFunc(ok, func(a, b uint16) int { return suiteRank(a) - suiteRank(b) })
	return ok
}

// suitesFor returns every TLS 1.0-1.2 suite crypto/tls implements, secure
// or not, that works with version v (0: with any), in Go's order of
// preference; none for TLS 1.3, whose suites are not configurable.
func suitesFor(v uint16) []uint16 {
	var ids []uint16
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if slices.Equal(cs.SupportedVersions, []uint16{tls.VersionTLS13}) {
			continue
		}
		if v == 0 || slices.Contains(cs.SupportedVersions, v) {
			ids = append(ids, cs.ID)
		}
	}
	slices.SortStableFunc(ids, func(a, b uint16) int { return suiteRank(a) - suiteRank(b) })
	return ids
}

// suitePreference is crypto/tls's own order of preference for TLS 1.0-1.2
// suites (cipherSuitesPreferenceOrder): the fix names the best suite the
// server accepts by this order.
var suitePreference = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA, tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
	tls.TLS_RSA_WITH_AES_128_CBC_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA, tls.TLS_ECDHE_RSA_WITH_RC4_128_SHA, tls.TLS_RSA_WITH_RC4_128_SHA,
}

// suiteRank is id's place in suitePreference; unknown suites come last.
func suiteRank(id uint16) int {
	if i := slices.Index(suitePreference, id); i >= 0 {
		return i
	}
	return len(suitePreference)
}
