package admin

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// SocketPath is the Unix socket in the spool directory where `serve`
// answers the queue API. The spool's permissions guard it, and it needs no
// port or config key: `tlsrelay queue` finds it from queue.dir.
func SocketPath(spoolDir string) string { return filepath.Join(spoolDir, "control.sock") }

// ServeSocket serves h (queue commands, health) on the control socket of
// spoolDir until stop. The spool lock is already held, so a socket file left
// there is stale.
func ServeSocket(spoolDir string, h http.Handler) (stop func(), err error) {
	path := SocketPath(spoolDir)
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx) // a flush still waiting is cut short; its client sees an error
		os.Remove(path)
	}, nil
}
