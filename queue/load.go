package queue

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
	for _, id := range envelopes {
		q.loadOne(id, bodies[id])
		delete(bodies, id)
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

func (q *Queue) loadOne(id string, hasBody bool) {
	b, err := os.ReadFile(q.path(dirQueue, id, ".json"))
	if err != nil {
		q.quarantine(id, err)
		return
	}
	it, err := decodeItem(b, id)
	if err != nil {
		q.quarantine(id, err)
		return
	}
	if !hasBody {
		q.quarantine(id, fmt.Errorf("envelope %s.json has no body %s.eml", id, id))
		return
	}
	fi, err := os.Stat(q.path(dirQueue, id, ".eml"))
	if err != nil || fi.Size() != it.Size {
		q.quarantine(id, fmt.Errorf("body %s.eml does not have the %d bytes its envelope records", id, it.Size))
		return
	}
	q.items[id] = &entry{item: it}
	q.bytes += it.Size
	// A requeue that crashed after its commit leaves a stale dead letter.
	if _, err := os.Stat(q.path(dirDead, id, ".json")); err == nil {
		q.fs.Remove(q.path(dirDead, id, ".json"))
	}
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
