package admin

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
)

// SocketPath is the Unix socket in the spool directory where `serve`
// answers the queue API. The spool's permissions guard it, and it needs no
// port or config key: `tlsrelay queue` finds it from queue.dir.
func SocketPath(spoolDir string) string { return filepath.Join(spoolDir, "control.sock") }

// ServeSocket serves h (queue commands, health) on the control socket of
// spoolDir until stop. The spool lock is already held, so a socket file left
// there is stale.
//
// The socket never exists at its path with a mode more open than 0600:
// it is bound inside a new private (0700) directory, given its mode there,
// and only then renamed into place (chmod after listen would leave a window
// in which any local user could connect; the umask is process-wide, so
// changing it would race other goroutines' files).
func ServeSocket(spoolDir string, h http.Handler, lim Limits) (stop func(), err error) {
	path := SocketPath(spoolDir)
	l, err := listenPrivate(spoolDir, path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	stopHTTP := Serve(l, h, lim)
	return func() {
		stopHTTP()
		os.Remove(path)
	}, nil
}

func listenPrivate(spoolDir, path string) (net.Listener, error) {
	dir, err := os.MkdirTemp(spoolDir, ".cs") // mode 0700
	if err != nil {
		return nil, err
	}
	defer os.Remove(dir)
	tmp := filepath.Join(dir, "s")
	l, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, err
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // the socket moves; stop removes it at its path
	err = os.Chmod(tmp, 0o600)
	if err == nil {
		os.Remove(path)
		err = os.Rename(tmp, path)
	}
	if err != nil {
		l.Close()
		os.Remove(tmp)
		return nil, err
	}
	return l, nil
}
