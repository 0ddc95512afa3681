package mailsink

import (
	"net"
	"testing"
)

// Start and ClosedAddr are internal/smtptest's helpers, repeated here
// because smtptest imports this package.
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
			t.Errorf("mailsink: close: %v", err)
		}
	})
	return s
}

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

func (l testLogger) Printf(format string, v ...any) { l.t.Logf("mailsink: "+format, v...) }
func (l testLogger) Println(v ...any)               { l.t.Log(append([]any{"mailsink:"}, v...)...) }
