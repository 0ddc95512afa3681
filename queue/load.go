package queue

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
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
func (q *Queue) load() error {
	if err := q.clearTmp(); err != nil {
		return err
	}
	qdir := filepath.Join(q.opts.Dir, dirQueue)
	ents, err := os.ReadDir(qdir)
	if err != nil {
		return fmt.Errorf("queue: read spool: %w", err)
	}
	bodies := map[string]bool{}
	var envelopes []string
	for _, e := range ents {
		name := e.Name()
		id, ext := strings.TrimSuffix(name, filepath.Ext(name)), filepath.Ext(name)
		switch {
		case !idPattern.MatchString(id) || (ext != ".eml" && ext != ".json"):
			q.log.Warn("unexpected file in spool, left alone", "file", filepath.Join(qdir, name))
		case ext == ".eml":
			bodies[id] = true
		default:
			envelopes = append(envelopes, id)
		}
	}
	dead := q.deadEnvelopes()
	for _, l := range q.readEnvelopes(envelopes, bodies) {
		delete(bodies, l.id)
		if l.err != nil {
			q.quarantine(l.id, l.err)
			continue
		}
		q.items[l.id] = &entry{item: l.it}
		q.bytes += l.it.Size
		// A requeue that crashed after its commit leaves a stale dead letter.
		if dead[l.id] {
			q.fs.Remove(q.path(dirDead, l.id, ".json"))
		}
	}
	for id := range bodies {
		q.orphanBody(id)
	}
	if len(q.items) > 0 {
		q.log.Info("spool loaded", "items", len(q.items), "bytes", q.bytes)
	}
	return nil
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

// readEnvelopes reads and checks envelopes in parallel (a start with
// 100,000 queued messages is mostly file reads and JSON decoding); the
// caller applies the results alone, in order.
func (q *Queue) readEnvelopes(ids []string, bodies map[string]bool) []loaded {
	out := make([]loaded, len(ids))
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 2*runtime.GOMAXPROCS(0); w++ {
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
	b, err := os.ReadFile(q.path(dirQueue, id, ".json"))
	if err != nil {
		return loaded{id: id, err: err}
	}
	it, err := decodeItem(b, id)
	if err != nil {
		return loaded{id: id, err: err}
	}
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
