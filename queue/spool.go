package queue

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Spool subdirectories (docs/design.md, "Spool layout").
const (
	dirQueue      = "q"
	dirTmp        = "tmp"
	dirDead       = "dead"
	dirQuarantine = "quarantine"
)

// fullError is the error Enqueue returns when the spool is over its budget.
// The relay recognises it by its Full method and answers 452 4.3.1.
type fullError struct{ reason string }

func (e *fullError) Error() string { return "queue: spool is full: " + e.reason }

// Full reports true: the spool is over budget and new mail must wait.
func (e *fullError) Full() bool { return true }

// ErrFull matches (with errors.Is) every "spool is full" error.
var ErrFull = &fullError{reason: "over budget"}

func (e *fullError) Is(target error) bool { return target == ErrFull }

// newID returns a time-ordered, file-name safe, unique ID: the arrival time
// in nanoseconds as 16 hex digits, a dash, and 48 random bits.
func (q *Queue) newID() string {
	var r [6]byte
	if _, err := rand.Read(r[:]); err != nil {
		panic("queue: crypto/rand failed: " + err.Error()) // never happens on Linux
	}
	return fmt.Sprintf("%016x-%s", q.now().UnixNano(), hex.EncodeToString(r[:]))
}

func (q *Queue) path(sub, id, ext string) string {
	return filepath.Join(q.opts.Dir, sub, id+ext)
}

// writeFile writes data (or the stream r) to tmp/<name>, fsyncs and closes it,
// then renames it to dst. It returns the bytes written. On error nothing is
// left behind in tmp/.
func (q *Queue) writeFile(dst, name string, r io.Reader) (int64, error) {
	tmp := filepath.Join(q.opts.Dir, dirTmp, name)
	f, err := q.fs.Create(tmp)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = q.fs.Rename(tmp, dst)
	}
	if err != nil {
		q.fs.Remove(tmp)
		return n, err
	}
	return n, nil
}

// Enqueue writes one message durably and returns its ID. It returns only
// after the body and the envelope have been fsynced, renamed into q/, and q/
// itself fsynced: a nil error means the message survives a crash. The two
// file fsyncs run at the same time (docs/design.md, "Durability order": the floor is one file fsync plus
// one directory fsync per acknowledgement), and the directory fsync is
// shared with concurrent enqueues. client is the sending client's address,
// for the record. Errors reading body are returned wrapped, and nothing is
// left on disk. Each recipient's route comes from Options.Route now.
func (q *Queue) Enqueue(ctx context.Context, client, from string, to []string, body io.Reader) (string, error) {
	return q.EnqueueRouted(ctx, client, from, to, nil, body)
}

// EnqueueRouted is Enqueue with the recipients' routes already resolved:
// routes[i] is to[i]'s (the relay resolves them at RCPT, so that a reload
// before the end of DATA cannot take back an accepted recipient). A nil
// routes, or a nil routes[i], is resolved with Options.Route.
func (q *Queue) EnqueueRouted(ctx context.Context, client, from string, to []string, routes [][]string, body io.Reader) (string, error) {
	it, err := q.newItem(client, from, to, routes)
	if err != nil {
		return "", err
	}
	if err := q.reserve(); err != nil {
		return "", err
	}
	id := it.ID
	budget := &budgetReader{q: q, r: &ctxReader{ctx: ctx, r: body}}
	f, emlTmp, size, err := q.writeTmp(id+".eml", kindBody, budget)
	if err != nil {
		q.release(budget.reserved)
		return "", fmt.Errorf("queue: write message body: %w", err)
	}
	it.Size = size
	q.giveBack(budget.reserved - size) // the body now holds exactly its size
	if err := q.commit(it, f, emlTmp); err != nil {
		q.release(size)
		return "", fmt.Errorf("queue: commit message %s: %w", id, err)
	}
	q.add(it)
	// Debug: at info level the relay's "accepted" says the same for each
	// message it took in; two log lines per message (accepted, delivered)
	// instead of four keep the log readable and cheaper under load.
	q.log.Debug("queued", "id", id, "size", size, "rcpts", len(it.Rcpts), "route", it.Rcpts[0].Route)
	return id, nil
}

// writeTmp writes r into a temporary file for a spool file of the kind
// (recycled, or tmp/<name> created), unsynced, and returns it open with
// its path and size. On error nothing is left behind.
func (q *Queue) writeTmp(name string, kind int, r io.Reader) (File, string, int64, error) {
	f, tmp, reused, err := q.openTmp(name, kind)
	if err != nil {
		return nil, "", 0, err
	}
	// Buffered: the inbound reader hands up one line per Read, and a
	// write(2) per line cost more than the fsync in a profile.
	// struct{io.Writer} hides the file's ReadFrom from bufio, which would
	// otherwise hand it the copy and so write line by line again; bufio's
	// own ReadFrom then reads straight into its buffer (no 32 KiB copy
	// buffer per file, as io.Copy would allocate).
	bw := getWriter(struct{ io.Writer }{f})
	defer putWriter(bw)
	n, err := bw.ReadFrom(r)
	if err == nil && reused.path != "" {
		n, err = fit(f, bw, kind, n, reused.size)
	} else if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		f.Close()
		q.fs.Remove(tmp)
		return nil, "", n, err
	}
	return f, tmp, n, nil
}

// maxPad bounds the spaces fit writes instead of a truncate.
const maxPad = 4 << 10

// fit makes a recycled file, which held old bytes (0: unknown), end where
// the n bytes just written into bw end, flushes bw, and returns the file's
// size. A file that held no more needs nothing; an envelope is padded
// with spaces (JSON allows white space after the value) rather than
// truncated; anything else is truncated.
func fit(f File, bw *bufio.Writer, kind int, n, old int64) (int64, error) {
	if old > 0 && n < old && kind == kindEnvelope && old-n <= maxPad {
		for ; n < old; n++ {
			bw.WriteByte(' ')
		}
	}
	if err := bw.Flush(); err != nil {
		return n, err
	}
	if old > 0 && n >= old {
		return n, nil
	}
	return n, f.Truncate(n)
}

// writers holds the 64 KiB buffers of writeTmp: two per message, and
// allocating (and zeroing) them each time was a tenth of an enqueue's
// allocations.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

func getWriter(w io.Writer) *bufio.Writer {
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

func putWriter(bw *bufio.Writer) {
	bw.Reset(nil) // drop the file
	writers.Put(bw)
}

// commit makes a written body and its envelope durable: the envelope is
// written, then both are fsynced at the same time; then the body is renamed
// into q/, then the envelope (the commit marker, so an envelope in q/
// always has its body), then q/ is fsynced. On error nothing is left.
func (q *Queue) commit(it *Item, body File, bodyTmp string) error {
	id := it.ID
	emlPath, jsonPath := q.path(dirQueue, id, ".eml"), q.path(dirQueue, id, ".json")
	// The envelope is written before the body's fsync starts, not while it
	// runs: on ext4 without a journal (the bench machine) a file's first
	// fsync after it entered tmp/ also writes tmp/'s directory block, and
	// opening the envelope's file in tmp/ meanwhile waited for that write
	// (0.9 ms in an strace of one message; on the rig, without strace, the
	// ack latency moved within its noise).
	b, err := encodeItem(it)
	var env File
	var jsonTmp string
	if err == nil {
		env, jsonTmp, it.envSize, err = q.writeTmp(id+".json", kindEnvelope, bytes.NewReader(b))
	}
	if err != nil {
		body.Close()
		q.removeAll(bodyTmp)
		return err
	}
	synced := make(chan error, 1)
	go func() { synced <- syncClose(body) }()
	err = syncClose(env)
	if serr := <-synced; err == nil {
		err = serr
	}
	if err == nil {
		err = q.fs.Rename(bodyTmp, emlPath)
	}
	if err == nil {
		err = q.fs.Rename(jsonTmp, jsonPath)
	}
	if err == nil {
		err = q.qsync.Sync() // shared with concurrent enqueues (group commit)
	}
	if err != nil {
		q.removeAll(jsonPath, emlPath, jsonTmp, bodyTmp)
	}
	return err
}

// syncClose fsyncs and closes f.
func syncClose(f File) error {
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// removeAll removes each path, ignoring errors (a file not there is fine).
func (q *Queue) removeAll(paths ...string) {
	for _, p := range paths {
		q.fs.Remove(p)
	}
}

// newItem builds the envelope of a new message; every recipient gets the
// route it came with, or one from Options.Route now.
func (q *Queue) newItem(client, from string, to []string, routes [][]string) (*Item, error) {
	if len(to) == 0 {
		return nil, errors.New("queue: message has no recipients")
	}
	if routes != nil && len(routes) != len(to) {
		return nil, fmt.Errorf("queue: %d routes for %d recipients", len(routes), len(to))
	}
	now := q.now()
	it := &Item{V: envelopeVersion, ID: q.newID(), From: from, Arrived: now.UTC(), Client: client}
	for i, addr := range to {
		var route []string
		if routes != nil {
			route = routes[i]
		}
		if route == nil {
			route = q.opts.Route(from, addr)
		}
		if len(route) == 0 {
			return nil, fmt.Errorf("queue: no route for recipient %q", addr)
		}
		it.Rcpts = append(it.Rcpts, Rcpt{
			Addr: addr, Route: append([]string(nil), route...), Status: Pending, NextAttempt: now.UTC(),
		})
	}
	return it, nil
}

// ctxReader stops a body copy when the context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// persist rewrites an item's envelope atomically and durably.
func (q *Queue) persist(it *Item) error {
	b, err := encodeItem(it)
	if err != nil {
		return err
	}
	// One worker owns an item at a time, so this temp name cannot collide.
	name := it.ID + ".json.new"
	n, err := q.writeFile(q.path(dirQueue, it.ID, ".json"), name, bytes.NewReader(b))
	it.envSize = 0 // unknown, unless the new file is surely in place
	if err != nil {
		return err
	}
	it.envSize = n
	return q.qsync.Sync() // an fsync of q/ begun after the rename, shared with concurrent callers
}

// retire takes a finished item out of q/. Delivered items are removed
// (or their files recycled: recycle.go), envelope first (it is the commit marker; a body left alone is an orphan
// that the next start removes). Items with a failed recipient move to dead/,
// envelope first too (a body left in q/ whose envelope is in dead/ is moved
// there on the next start).
func (q *Queue) retire(it *Item, dead bool) error {
	jsonPath, emlPath := q.path(dirQueue, it.ID, ".json"), q.path(dirQueue, it.ID, ".eml")
	if !dead {
		env, exact := it.envSize, it.envSize > 0
		if !exact {
			env = int64(len(it.Rcpts)) * 512 // a few hundred bytes per recipient
		}
		if err := q.dispose(jsonPath, kindEnvelope, env, exact); err != nil {
			return err
		}
		q.dispose(emlPath, kindBody, it.Size, true)
		q.syncRemoval()
		return nil
	}
	if err := q.fs.Rename(jsonPath, q.path(dirDead, it.ID, ".json")); err != nil {
		return err
	}
	if err := q.fs.Rename(emlPath, q.path(dirDead, it.ID, ".eml")); err != nil {
		return err
	}
	if err := q.fs.SyncDir(filepath.Join(q.opts.Dir, dirDead)); err != nil {
		return err
	}
	return q.fs.SyncDir(filepath.Join(q.opts.Dir, dirQueue))
}

// syncRemoval makes a delivered message's removal from q/ durable with an
// fsync of q/ that the worker does not wait for, and that it does not even
// start: the next fsync of q/ covers it, which under load is an enqueue's a
// few milliseconds later, and if none begins within removalSyncDelay one
// runs then. So removals add no fsync of their own under load, and no
// removal's fsync queues in front of the next acknowledgement's on the
// disk. Waiting would not make anything safer: until that fsync ends, a
// crash can bring the message back and deliver it again, whether a worker
// waits or not (README, duplicate window 1). Run flushes before it returns.
func (q *Queue) syncRemoval() { q.qsync.Later(removalSyncDelay) }

// removalSyncDelay bounds how long a delivered message's removal may wait
// for an fsync of q/ that covers it.
const removalSyncDelay = 200 * time.Millisecond

// quarantine moves the files of a broken item out of q/ and logs why.
func (q *Queue) quarantine(id string, why error) {
	for _, ext := range []string{".json", ".eml"} {
		src := q.path(dirQueue, id, ext)
		if _, err := os.Lstat(src); err != nil {
			continue
		}
		if err := q.fs.Rename(src, q.path(dirQuarantine, id, ext)); err != nil {
			q.log.Error("quarantine failed", "id", id, "file", src, "error", err)
		}
	}
	q.log.Warn("quarantined", "id", id, "reason", why.Error(),
		"dir", filepath.Join(q.opts.Dir, dirQuarantine))
}
