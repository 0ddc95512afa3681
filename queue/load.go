package queue

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// load rebuilds the in-memory index from q/ after a start. Partial writes in
// tmp/ were never acknowledged and are removed. An envelope that cannot be
// read goes to quarantine/ with its body. A body without an envelope was
// never acknowledged (the envelope is the commit marker) and is removed,
// unless its envelope is in dead/, in which case a dead-lettering was
// interrupted and is finished.
//
// q/ is listed before load returns; with background, the envelopes are then
// read by a goroutine (q.loading is closed when it is done), so that a
// relay restarted on a large queue takes new mail at once: reading 100,000
// envelopes with a cold page cache took 12 s on the bench machine, bound by
// the disk. Messages enqueued meanwhile are not in the listing.
func (q *Queue) load(background bool) error {
	if err := q.clearTmp(); err != nil {
		return err
	}
	l, err := q.listSpool()
	if err != nil {
		return err
	}
	for _, id := range l.orphans {
		q.orphanBody(id)
	}
	if !background || len(l.envelopes) == 0 {
		q.loadListed(l)
		return nil
	}
	q.unloaded = len(l.envelopes)
	q.loading = make(chan struct{})
	q.log.Info("loading the spool in the background", "envelopes", len(l.envelopes))
	go func() {
		defer close(q.loading)
		q.loadListed(l)
	}()
	return nil
}

// listing is what a start found in q/.
type listing struct {
	envelopes []string        // IDs with an envelope, oldest first
	bodies    map[string]bool // IDs with a body
	orphans   []string        // IDs with a body and no envelope
	dead      map[string]bool // IDs with an envelope in dead/
}

func (q *Queue) listSpool() (*listing, error) {
	qdir := filepath.Join(q.opts.Dir, dirQueue)
	ents, err := os.ReadDir(qdir) // sorted by name: IDs are time-ordered
	if err != nil {
		return nil, fmt.Errorf("queue: read spool: %w", err)
	}
	l := &listing{bodies: map[string]bool{}}
	hasEnvelope := map[string]bool{}
	for _, e := range ents {
		name := e.Name()
		id, ext := strings.TrimSuffix(name, filepath.Ext(name)), filepath.Ext(name)
		switch {
		case !idPattern.MatchString(id) || (ext != ".eml" && ext != ".json"):
			q.log.Warn("unexpected file in spool, left alone", "file", filepath.Join(qdir, name))
		case ext == ".eml":
			l.bodies[id] = true
		default:
			l.envelopes = append(l.envelopes, id)
			hasEnvelope[id] = true
		}
	}
	for id := range l.bodies {
		if !hasEnvelope[id] {
			l.orphans = append(l.orphans, id)
		}
	}
	l.dead = q.deadEnvelopes()
	return l, nil
}

// loadHook, when set (tests only), runs before each chunk is read.
var loadHook func()

// loadChunk is how many envelopes are read before they are added to the
// queue, so that delivery of the oldest can start during a background load.
const loadChunk = 4096

// loadListed reads the listed envelopes, oldest first, and adds them to the
// queue chunk by chunk. It stops early once Close was called.
func (q *Queue) loadListed(l *listing) {
	for start := 0; start < len(l.envelopes) && !q.stopLoad.Load(); start += loadChunk {
		if loadHook != nil {
			loadHook()
		}
		chunk := l.envelopes[start:min(start+loadChunk, len(l.envelopes))]
		for _, r := range q.readEnvelopes(chunk, l.bodies) {
			if r.err != nil {
				q.quarantine(r.id, r.err)
			} else if l.dead[r.id] {
				// A requeue that crashed after its commit leaves a stale dead letter.
				q.fs.Remove(q.path(dirDead, r.id, ".json"))
			}
			q.mu.Lock()
			if r.err == nil {
				e := &entry{item: r.it}
				q.items[r.id] = e
				q.indexLocked(e)
				q.bytes += r.it.Size
			}
			q.unloaded = max(q.unloaded-1, 0)
			q.mu.Unlock()
		}
		q.mu.Lock()
		q.notifyLocked()
		q.mu.Unlock()
	}
	q.mu.Lock()
	n, b, left := len(q.items), q.bytes, q.unloaded // left > 0 only when stopped
	q.mu.Unlock()
	switch {
	case q.stopLoad.Load() && left > 0:
		q.log.Info("spool load stopped by shutdown; the rest stays on disk", "items", n, "not_read", left)
	case n > 0:
		q.log.Info("spool loaded", "items", n, "bytes", b)
	}
}

func (q *Queue) clearTmp() error {
	dir := filepath.Join(q.opts.Dir, dirTmp)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("queue: read spool: %w", err)
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if err := q.fs.Remove(p); err != nil {
			q.log.Warn("cannot remove partial file", "file", p, "error", err)
		}
	}
	return nil
}

// loaded is one envelope read at start, or why it cannot be used.
type loaded struct {
	id  string
	it  *Item
	err error
}

// loadReaders is how many envelopes are read at once at start. Not tied to
// the CPUs: with a cold page cache each read waits on the disk (an inode and
// a data block per envelope, an inode per body), and disks that serve many
// requests at once get them. On the bench machine's virtio disk 4 readers
// and 64 took the same 12-14 s for 100,000 cold envelopes (it serves about
// 8,000 such reads a second either way), which is why that load runs in the
// background (load).
const loadReaders = 64

// readEnvelopes reads and checks envelopes in parallel (a start with
// 100,000 queued messages is mostly file reads and JSON decoding); the
// caller applies the results alone, in order.
func (q *Queue) readEnvelopes(ids []string, bodies map[string]bool) []loaded {
	out := make([]loaded, len(ids))
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < loadReaders; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(ids)); i = next.Add(1) - 1 {
				out[i] = q.readEnvelope(ids[i], bodies[ids[i]])
			}
		}()
	}
	wg.Wait()
	return out
}

// readEnvelope reads one envelope and checks it against its body.
func (q *Queue) readEnvelope(id string, hasBody bool) loaded {
	b, err := readOwned(q.path(dirQueue, id, ".json"))
	if err != nil {
		return loaded{id: id, err: err}
	}
	it, err := decodeItem(b, id)
	if err != nil {
		return loaded{id: id, err: err}
	}
	it.envSize = int64(len(b))
	if !hasBody {
		return loaded{id: id, err: fmt.Errorf("envelope %s.json has no body %s.eml", id, id)}
	}
	fi, err := os.Stat(q.path(dirQueue, id, ".eml"))
	if err != nil || fi.Size() != it.Size {
		return loaded{id: id, err: fmt.Errorf("body %s.eml does not have the %d bytes its envelope records", id, it.Size)}
	}
	return loaded{id: id, it: it}
}

// deadEnvelopes lists the IDs with an envelope in dead/.
func (q *Queue) deadEnvelopes() map[string]bool {
	ents, _ := os.ReadDir(filepath.Join(q.opts.Dir, dirDead))
	ids := map[string]bool{}
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok {
			ids[id] = true
		}
	}
	return ids
}

func (q *Queue) orphanBody(id string) {
	src := q.path(dirQueue, id, ".eml")
	if _, err := os.Stat(q.path(dirDead, id, ".json")); err == nil {
		if err := q.fs.Rename(src, q.path(dirDead, id, ".eml")); err != nil {
			q.log.Error("cannot finish moving to dead letters", "id", id, "error", err)
		}
		return
	}
	if err := q.fs.Remove(src); err != nil {
		q.log.Warn("cannot remove unacknowledged body", "file", src, "error", err)
		return
	}
	q.log.Info("removed unacknowledged body", "id", id)
}

// sortItems orders items by ID, which is by arrival time.
func sortItems(items []Item) {
	slices.SortFunc(items, func(a, b Item) int { return strings.Compare(a.ID, b.ID) })
}
