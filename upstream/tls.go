package upstream

import (
	"crypto/tls"
	"errors"
	"fmt"
)

// serverName is the name the certificate must carry: tls.server_name, or the
// host we dial.
func (d *delivery) serverName() string {
	if d.p.TLS.ServerName != "" {
		return d.p.TLS.ServerName
	}
	return d.p.Host
}

// tlsConfig is the provider's policy as a crypto/tls client config. It never
// sets InsecureSkipVerify.
func (d *delivery) tlsConfig() *tls.Config {
	minVersion := d.p.TLS.MinVersion
	if minVersion == 0 {
		minVersion = tls.VersionTLS12
	}
	return &tls.Config{
		ServerName: d.serverName(),
		RootCAs:    d.p.TLS.RootCAs, // nil = the system roots
		MinVersion: minVersion,
	}
}

// tlsErr is a TLS policy failure: temporary, with the exact reason and where
// to look next. It never leads to a plaintext attempt.
func (d *delivery) tlsErr(err error) *Error {
	return &Error{Op: "tls", Err: fmt.Errorf(
		"provider %s at %s (server name %q): %w; run `tlsrelay probe %s` to see what the server offers",
		d.name, d.p.Addr(), d.serverName(), err, d.name)}
}

// implicitTLS runs the handshake on the fresh connection, then the SMTP
// session inside it.
func (d *delivery) implicitTLS() error {
	tc := tls.Client(d.conn, d.tlsConfig())
	if err := d.handshake(tc); err != nil {
		return err
	}
	return d.hello(newSMTPConn(tc))
}

// startTLS says EHLO in plaintext, requires STARTTLS, upgrades and says EHLO
// again inside TLS (RFC 3207 4.2). go-smtp v0.25.1 exports no StartTLS on an
// existing client, and its NewClientStartTLS would say EHLO as "localhost"
// and handshake lazily (security.md a2), so the STARTTLS command and the
// handshake are done here.
func (d *delivery) startTLS() error {
	pre := newSMTPConn(d.conn)
	if err := d.hello(pre); err != nil {
		return err
	}
	if ok, _ := d.sc.Extension("STARTTLS"); !ok {
		return &Error{Op: "starttls", Err: fmt.Errorf(
			"provider %s did not offer STARTTLS; refusing to send in plaintext (run `tlsrelay probe %s` to see what the server offers)",
			d.name, d.name)}
	}
	if err := startTLS(pre); err != nil {
		e := setupErr("starttls", err)
		if e.Code == 0 {
			d.sc = nil // out of step: no QUIT
		}
		return e
	}
	d.sc = nil // the plaintext client is done; its buffer is dropped
	tc := tls.Client(d.conn, d.tlsConfig())
	if err := d.handshake(tc); err != nil {
		return err
	}
	return d.hello(afterStartTLS(tc))
}

// handshake completes and checks the TLS handshake before anything else is
// sent. go-smtp's own handshake is lazy, and its TLSConnectionState reports
// ok before it (G13), so it is done here, bounded by ctx and the deadlines.
func (d *delivery) handshake(tc *tls.Conn) error {
	if err := tc.HandshakeContext(d.ctx); err != nil {
		return d.tlsErr(err)
	}
	st := tc.ConnectionState()
	if !st.HandshakeComplete || len(st.VerifiedChains) == 0 {
		return d.tlsErr(errors.New("handshake incomplete or certificate not verified"))
	}
	d.secure = true
	d.tlsInfo = tls.VersionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite)
	d.log.Debug("upstream tls", "tls", d.tlsInfo, "server_name", d.serverName())
	return nil
}
