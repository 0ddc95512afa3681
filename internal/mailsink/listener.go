package mailsink

import (
	"crypto/tls"
	"net"
)

// listener counts and tracks accepted connections, so that Close can close
// them all, and wraps them in TLS in ImplicitTLS mode.
type listener struct {
	net.Listener
	s *Server
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, s: l.s}
	l.s.mu.Lock()
	l.s.conns[tc] = struct{}{}
	l.s.nconns++
	l.s.notifyLocked()
	l.s.mu.Unlock()
	if l.s.opts.Mode == ImplicitTLS {
		return tls.Server(tc, l.s.serverTLSConfig()), nil
	}
	return tc, nil
}

type trackedConn struct {
	net.Conn
	s *Server
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.s.mu.Lock()
	if _, open := c.s.conns[c]; open {
		delete(c.s.conns, c)
		c.s.notifyLocked()
	}
	c.s.mu.Unlock()
	return err
}
