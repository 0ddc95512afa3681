package relay

import (
	"crypto/tls"
	"errors"
	"time"

	"github.com/tlsrelay/tlsrelay/policy"
)

// Inbound STARTTLS is done by the connection guard, below go-smtp, and not
// by go-smtp's own (Server.TLSConfig stays nil): go-smtp would put its TLS
// layer between the guard and itself, and the guard would see ciphertext, so
// none of its checks (G1-G4, the bare CR, one line per read) would hold
// inside TLS. Instead:
//
//   - EHLO: Write adds STARTTLS next to go-smtp's PIPELINING line;
//   - STARTTLS: go-smtp, without a TLSConfig, answers "502 TLS not
//     supported"; Write sends 220 instead and the next Read runs the
//     handshake on the socket. From then on the guard reads and writes
//     through the TLS session, with every check in place;
//   - plaintext pipelined after STARTTLS is dropped (CVE-2011-0411): go-smtp
//     has nothing buffered (one line per read) and the guard empties its own
//     buffer before the handshake;
//   - RFC 3207 4.2: the transaction is reset and MAIL needs a new EHLO first;
//     STARTTLS is not offered after AUTH.
//
// go-smtp does not know the session is encrypted (its TLSConnectionState
// says no); the session asks the guard (conn.isTLS) instead.

// serverTLSConfig builds the inbound TLS config, nil when listen.tls is off.
func serverTLSConfig(t policy.ListenTLS) *tls.Config {
	if t.Cert == nil {
		return nil
	}
	cert := t.Cert
	return &tls.Config{
		MinVersion: t.MinVersion,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, _ := cert.Certificate() // a failed reload keeps the last good pair
			if c == nil {
				return nil, errors.New("no server certificate")
			}
			return c, nil
		},
	}
}

// startTLS runs the server handshake on the socket, after the 220. A failed
// handshake ends the session: no reply can be sent in either form.
func (c *conn) startTLS() error {
	c.tlsNext = false
	c.releaseIn() // plaintext sent after STARTTLS is dropped
	c.prevCR = false
	tc := tls.Server(c.Conn, c.srv.tlsConfig)
	dl := time.Now().Add(c.srv.opts.Listen.ReadTimeout)
	if dl.After(c.deadline) {
		dl = c.deadline
	}
	c.Conn.SetDeadline(dl)
	if err := tc.Handshake(); err != nil {
		c.srv.log.Info("rejected", "code", 0, "reason", "inbound TLS handshake failed: "+err.Error(), "client", c.client)
		return c.endSilently(wrapErr(errTLSHandshake, err.Error()))
	}
	c.Conn.SetWriteDeadline(time.Time{})
	c.Conn.SetReadDeadline(c.readDL)
	c.tc = tc
	st := tc.ConnectionState()
	c.tlsState.Store(&st)
	c.needHelo.Store(true)
	if c.sess != nil {
		c.sess.Reset()
	}
	return nil
}
