package queue

import (
	"io"
	"os"
)

// FS is the small set of write operations the spool performs. It is a seam:
// tests record the order of calls (to prove that nothing is acknowledged
// before it is synced) and inject failures such as ENOSPC. Reads go straight
// to the os package.
type FS interface {
	// Create makes a new file for writing; it fails if the file exists.
	Create(name string) (File, error)
	Rename(oldpath, newpath string) error
	Remove(name string) error
	// SyncDir fsyncs a directory, making renames and removals in it durable.
	SyncDir(dir string) error
}

// File is a file being written.
type File interface {
	io.Writer
	Sync() error
	Close() error
}

// OSFS is the real file system.
type OSFS struct{}

// Create opens name with O_CREATE|O_EXCL and mode 0600.
func (OSFS) Create(name string) (File, error) {
	return os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

// Rename is os.Rename.
func (OSFS) Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }

// Remove is os.Remove.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// SyncDir opens dir and fsyncs it.
func (OSFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
