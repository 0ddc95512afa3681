package queue

import (
	"fmt"
	"path/filepath"
	"sync"
)

// Recycling spool files.
//
// Creating a file and removing it again is the costliest part of a spool
// write: inode allocation and freeing, block freeing (and a discard when the
// file system is mounted with it), and on ext4 without a journal a scan past
// every recently deleted inode on each create. Measured on the bench
// machine, one 4 KiB file through create, fsync, rename and unlink took 602
// µs of CPU; overwritten in place, fsynced, renamed in and renamed back out,
// 172 µs. So, as PostgreSQL recycles its WAL segments, a delivered
// message's two files are renamed from q/ into tmp/ instead of being
// removed, and a later enqueue overwrites one of them instead of creating a
// file: it writes from the start, truncates to what it wrote and fsyncs
// before renaming into q/, exactly as with a new file.
//
// Bounds: only files of at most maxRecycleBytes are kept, and at most
// maxFree files of at most maxFreeBytes in all wait in tmp/ (16 MiB, as
// when the bound was 64 files of at most 256 KiB); others are removed as
// before. The bound was 64 files until the scale curve of issue 17: with
// more messages in flight than 32 (the relay's 32 transaction slots, 8
// deliveries and a short backlog), every generation of messages created
// and removed files again, and creates were then 39 % of the relay's CPU
// at 100 sessions on the bench machine (relay/txn.go has the figures).
// 16 MiB holds about 3,000 messages of 4 KiB.
//
// Files waiting for reuse are not queued mail: a start clears tmp/ as
// always (clearTmp), and nothing that can still be read as a message is
// ever recycled (an envelope is taken out of q/ first, and a body only
// after its delivery attempt closed it).
const (
	maxFree         = 4096
	maxFreeBytes    = 16 << 20
	maxRecycleBytes = 256 << 10
)

// recycler is the list of files in tmp/ ready to be overwritten, one list
// per kind (bodies, envelopes), so that a file is reused for one of about
// the size it had: an overwrite that is not shorter needs no truncate, and
// a truncate that frees blocks costs more than the write (25 µs in a
// profile of the bench machine, whose file system discards freed blocks).
type recycler struct {
	dir string // the spool's tmp/

	mu      sync.Mutex
	free    [2][]freeFile // ready for reuse, by kind
	pending int           // names handed out by slot whose renames have not ended
	bytes   int64         // the costs of the free files and of the pending slots
	seq     uint64
}

// freeFile is a file waiting for reuse, its size (0: unknown), and what it
// counts against maxFreeBytes (its size or the estimate it came with).
type freeFile struct {
	path string
	size int64
	cost int64
}

// Kinds of spool files, for the recycler.
const (
	kindBody = iota
	kindEnvelope
)

// take returns a file of the kind to overwrite, or a zero freeFile if none
// is free.
func (r *recycler) take(kind int) freeFile {
	r.mu.Lock()
	defer r.mu.Unlock()
	free := r.free[kind]
	if len(free) == 0 {
		return freeFile{}
	}
	f := free[len(free)-1]
	r.free[kind] = free[:len(free)-1]
	r.bytes -= f.cost
	return f
}

// slot returns a new name in tmp/ for a file of size bytes (an estimate
// will do) to be renamed to, or "" if it should be removed instead (too
// big, or enough are waiting). The caller reports the rename's outcome
// with done, passing the same size as cost.
func (r *recycler) slot(size int64) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if size > maxRecycleBytes || len(r.free[0])+len(r.free[1])+r.pending >= maxFree || r.bytes+size > maxFreeBytes {
		return ""
	}
	r.pending++
	r.bytes += size
	r.seq++
	return filepath.Join(r.dir, fmt.Sprintf("recycled-%d", r.seq))
}

// done ends a slot taken for cost bytes: with ok, the file of the kind
// and size (0: unknown) is now at path and may be reused.
func (r *recycler) done(path string, kind int, cost, size int64, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending--
	if !ok {
		r.bytes -= cost
		return
	}
	r.free[kind] = append(r.free[kind], freeFile{path, size, cost})
}

// openTmp opens a file in tmp/ to write a new spool file of the kind into:
// a recycled one if any is free (reused.path says so, and reused.size is
// what it held: what is written must be cut to its own length), else
// tmp/<name>, created.
func (q *Queue) openTmp(name string, kind int) (f File, path string, reused freeFile, err error) {
	for r := q.recycle.take(kind); r.path != ""; r = q.recycle.take(kind) {
		if f, err := q.fs.Reuse(r.path); err == nil {
			return f, r.path, r, nil
		}
		q.fs.Remove(r.path) // gone or unusable: try the next one, then create
	}
	path = filepath.Join(q.opts.Dir, dirTmp, name)
	f, err = q.fs.Create(path)
	return f, path, freeFile{}, err
}

// dispose takes a delivered message's file of the kind out of q/: renamed
// into tmp/ for reuse when the recycler has room for a file of size bytes
// (an estimate unless exact), else removed.
func (q *Queue) dispose(path string, kind int, size int64, exact bool) error {
	if slot := q.recycle.slot(size); slot != "" {
		err := q.fs.Rename(path, slot)
		known := size
		if !exact {
			known = 0
		}
		q.recycle.done(slot, kind, size, known, err == nil)
		if err == nil {
			return nil
		}
	}
	return q.fs.Remove(path)
}
