// Package smtptest is the testing glue around internal/mailsink: Start runs
// a fake upstream for one test and closes it in t.Cleanup, and ClosedAddr
// gives an address where nothing listens. The server itself, its modes and
// its records are mailsink's, under the same names here, so that a test
// needs one import.
package smtptest

import (
	"net"
	"testing"

	"github.com/tlsrelay/tlsrelay/internal/mailsink"
)

// The server's types and modes, as mailsink declares them.
type (
	Server  = mailsink.Server
	Options = mailsink.Options
	Message = mailsink.Message
	Mode    = mailsink.Mode
	KeyPair = mailsink.KeyPair
)

const (
	Plain       = mailsink.Plain
	ImplicitTLS = mailsink.ImplicitTLS
	StartTLS    = mailsink.StartTLS
)

// New is mailsink.New: a server that needs no *testing.T.
var New = mailsink.New

// SelfSigned and Body are mailsink's: a self-signed key pair, and a message
// of an exact size.
var (
	SelfSigned = mailsink.SelfSigned
	Body       = mailsink.Body
)

// Start is New for tests: it fails t on error and closes the server in
// t.Cleanup. go-smtp's internal errors go to t.Log unless opts.ErrorLog is set.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.ErrorLog == nil {
		opts.ErrorLog = testLogger{t}
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("smtptest: close: %v", err)
		}
	})
	return s
}

// ClosedAddr returns a 127.0.0.1 address on which nothing listens, to
// simulate an upstream that is down (connection refused). The port was free
// a moment ago; another process could take it, which tests accept.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

type testLogger struct{ t testing.TB }

func (l testLogger) Printf(format string, v ...any) { l.t.Logf("smtptest: "+format, v...) }
func (l testLogger) Println(v ...any)               { l.t.Log(append([]any{"smtptest:"}, v...)...) }
