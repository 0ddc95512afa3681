package queue

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// checkSpoolDirs makes sure that only the relay's user can reach the spool:
// the directory and its subdirectories must be directories (not links)
// owned by the user the relay runs as. One that is ours but open to others
// is tightened to 0700 and logged; one owned by another user stops the
// start with the path, the mode, the owner and the fix, since anyone who
// owns it could read, delete or plant mail (dead/ letters are requeued and
// sent).
func (q *Queue) checkSpoolDirs() error {
	me := os.Geteuid()
	dirs := []string{q.opts.Dir}
	for _, sub := range []string{dirQueue, dirTmp, dirDead, dirQuarantine} {
		dirs = append(dirs, filepath.Join(q.opts.Dir, sub))
	}
	for _, dir := range dirs {
		st, err := os.Lstat(dir)
		if err != nil {
			return fmt.Errorf("queue: spool directory %s: %w", dir, err)
		}
		if !st.IsDir() {
			return fmt.Errorf("queue: spool directory %s is not a directory (a symbolic link?): use a real directory, owned by the relay's user, mode 0700", dir)
		}
		uid := -1
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			uid = int(sys.Uid)
		}
		mode := st.Mode().Perm()
		if uid != me {
			return fmt.Errorf("queue: spool directory %s is owned by uid %d with mode %04o; the relay runs as uid %d: run \"chown -R %d %s && chmod 700 %s\"",
				dir, uid, mode, me, me, q.opts.Dir, q.opts.Dir)
		}
		if mode&0o077 != 0 {
			if err := os.Chmod(dir, 0o700); err != nil {
				return fmt.Errorf("queue: spool directory %s has mode %04o and cannot be tightened to 0700: %w", dir, mode, err)
			}
			q.log.Warn("spool permissions tightened", "path", dir, "from", fmt.Sprintf("%04o", mode), "to", "0700")
		}
	}
	return nil
}

// openOwned opens a spool file for reading without following a symbolic
// link (O_NOFOLLOW) and checks that it is a regular file owned by the
// relay's user: a link or a foreign file planted in the spool is refused,
// with the path and the problem, and left alone.
func openOwned(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if pe, ok := err.(*os.PathError); ok && pe.Err == syscall.ELOOP {
			return nil, fmt.Errorf("%s is a symbolic link: refused (spool files must be regular files)", path)
		}
		return nil, err
	}
	if err := checkOwned(f, path); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func checkOwned(f *os.File, path string) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file: refused", path)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("%s is owned by uid %d, not the relay's uid %d: refused", path, sys.Uid, os.Geteuid())
	}
	return nil
}

// readOwned is os.ReadFile through openOwned.
func readOwned(path string) ([]byte, error) {
	f, err := openOwned(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}
