package queue

import (
	"os"
	"syscall"
)

// Sync is fdatasync(2) (see dataFile).
func (f dataFile) Sync() error {
	for {
		err := syscall.Fdatasync(f.fd)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
		}
		return nil
	}
}
