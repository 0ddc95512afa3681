package mailsink

import (
	"context"
	"fmt"
	"net"
)

// OpenConnections returns how many accepted connections are still open.
func (s *Server) OpenConnections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// WaitOpenConnections blocks until exactly n accepted connections are open
// or ctx is done, and returns ctx.Err() if it gave up. A connection counts
// as closed once the server has closed its side: after the client closed
// its own, or after DropConnections.
func (s *Server) WaitOpenConnections(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		open, changed := len(s.conns), s.changed
		s.mu.Unlock()
		if open == n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%w: %d connections open, want %d", ctx.Err(), open, n)
		}
	}
}

// DropConnections closes every open connection without a word, as a server
// does to idle clients; the server goes on listening.
func (s *Server) DropConnections() {
	s.mu.Lock()
	open := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		open = append(open, c)
	}
	s.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
}

// SetUsers replaces the accepted AUTH PLAIN and LOGIN credentials, e.g. to
// rotate a password mid-test. It keeps AUTH offered (pass a non-nil map).
func (s *Server) SetUsers(users map[string]string) {
	s.mu.Lock()
	s.opts.Users = users
	s.mu.Unlock()
}
