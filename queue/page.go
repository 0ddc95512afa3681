package queue

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// A page of items is how the admin API lists a queue of any size: items
// are in ID order, those after the cursor, at most limit of them; more
// reports whether any follow. Only the page's items are copied (and, for
// dead letters, read), so a listing costs memory by page, not by queue.

// Page returns up to limit queued items with IDs after after ("" = from the
// start), in ID order, and whether more follow.
func (q *Queue) Page(after string, limit int) (items []Item, more bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	ids := make([]string, 0, len(q.items))
	for id := range q.items {
		if id > after {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	if len(ids) > limit {
		ids, more = ids[:limit], true
	}
	items = make([]Item, 0, len(ids))
	for _, id := range ids {
		items = append(items, q.items[id].item.clone())
	}
	return items, more
}

// DeadPage is Page for the dead letters. An unreadable dead letter is
// logged and left out, as in Dead.
func (q *Queue) DeadPage(after string, limit int) (items []Item, more bool, err error) {
	ents, err := os.ReadDir(filepath.Join(q.opts.Dir, dirDead)) // sorted by name, so by ID
	if err != nil {
		return nil, false, err
	}
	for _, ent := range ents {
		id, ok := strings.CutSuffix(ent.Name(), ".json")
		if !ok || !idPattern.MatchString(id) || id <= after {
			continue
		}
		if len(items) == limit {
			return items, true, nil
		}
		it, err := q.readDead(id)
		if err != nil {
			q.log.Warn("unreadable dead letter", "id", id, "error", err)
			continue
		}
		items = append(items, it)
	}
	return items, false, nil
}
