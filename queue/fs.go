package queue

import (
	"io"
	"os"
	"syscall"
)

// FS is the small set of write operations the spool performs. It is a seam:
// tests record the order of calls (to prove that nothing is acknowledged
// before it is synced) and inject failures such as ENOSPC. Reads go straight
// to the os package.
type FS interface {
	// Create makes a new file for writing; it fails if the file exists.
	Create(name string) (File, error)
	// Reuse opens an existing file for writing from its start, keeping its
	// contents until they are overwritten or truncated (recycle.go).
	Reuse(name string) (File, error)
	Rename(oldpath, newpath string) error
	Remove(name string) error
	// SyncDir fsyncs a directory, making renames and removals in it durable.
	SyncDir(dir string) error
}

// File is a file being written.
type File interface {
	io.Writer
	// Truncate cuts the file to size bytes (a reused file may be longer).
	Truncate(size int64) error
	Sync() error
	Close() error
}

// OSFS is the real file system.
//
// Files are opened with syscall.Open and wrapped with os.NewFile rather than
// opened with os.OpenFile: for a regular file, os.OpenFile also tries (and
// fails) to register the descriptor with the runtime's poller, four more
// system calls per open. Measured on the bench machine (a VM where a system
// call costs about 1 µs): create and close 30.5 µs with os.OpenFile, 13.9
// µs this way. Spool files are never read or written with deadlines, so the
// poller is of no use to them.
type OSFS struct{}

// Create opens name with O_CREAT|O_EXCL and mode 0600.
func (OSFS) Create(name string) (File, error) {
	return openData(name, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL, 0o600)
}

// Reuse opens the existing file name for writing, without truncating it.
func (OSFS) Reuse(name string) (File, error) {
	return openData(name, syscall.O_WRONLY, 0)
}

func openData(name string, flag int, perm uint32) (File, error) {
	fd, err := openFD(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return dataFile{File: os.NewFile(uintptr(fd), name), fd: fd}, nil
}

// dataFile is a spool file being written. Its Sync is fdatasync(2), not
// fsync(2): it makes the data durable with the metadata needed to read it
// back (size, block map), which is all the durability order needs, since
// the directory entry is made durable by the fsync of the directory
// (docs/design.md, "Durability order"). What it skips is the inode write
// for the modification time alone, so a recycled file overwritten with no
// more bytes than it had costs one data write instead of two on ext4.
// (fs_linux.go; elsewhere Sync is fsync.)
type dataFile struct {
	*os.File
	fd int // the descriptor (os.File.Fd would make it blocking: a system call)
}

func openFile(name string, flag int, perm uint32) (*os.File, error) {
	fd, err := openFD(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

func openFD(name string, flag int, perm uint32) (int, error) {
	for {
		fd, err := syscall.Open(name, flag|syscall.O_CLOEXEC, perm)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: name, Err: err}
		}
		return fd, nil
	}
}

// Rename renames oldpath to newpath. Unlike os.Rename it does not first
// check whether newpath is a directory (an lstat per rename): the spool
// only ever renames regular files to new names.
func (OSFS) Rename(oldpath, newpath string) error {
	if err := syscall.Rename(oldpath, newpath); err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

// Remove is os.Remove.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// SyncDir opens dir and fsyncs it (see OSFS for why not os.Open).
func (OSFS) SyncDir(dir string) error {
	d, err := openFile(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
