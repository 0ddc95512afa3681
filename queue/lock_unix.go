//go:build unix

package queue

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrLocked means another process holds the spool's lock: Open returns it
// wrapped, with the lock file and what to do.
var ErrLocked = errors.New("spool is in use by another tlsrelay")

// lockDir takes an exclusive, non-blocking flock on path, so that two relays
// never share one spool. The lock goes away with the process, even on kill -9.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("queue: open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if err == syscall.EWOULDBLOCK {
			return nil, fmt.Errorf("queue: %w (lock file %s is held); "+
				"stop the other process or give this one its own queue.dir", ErrLocked, path)
		}
		return nil, fmt.Errorf("queue: lock %s: %w", path, err)
	}
	return f, nil
}
