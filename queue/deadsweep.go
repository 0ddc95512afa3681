package queue

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Dead letters are bounded (Options.DeadMaxAge, DeadMaxBytes): the oldest
// are removed, logged, at start and whenever a message dies (at most once a
// minute), so that failing mail cannot fill the disk.

// deadSweepEvery bounds how often a death triggers a sweep.
const deadSweepEvery = time.Minute

type deadLetter struct {
	id   string
	died time.Time // when its envelope was written into dead/
	size int64     // envelope and body
}

// maybeSweepDead sweeps unless it did within deadSweepEvery.
func (q *Queue) maybeSweepDead() {
	now := q.now()
	q.mu.Lock()
	due := now.Sub(q.deadSwept) >= deadSweepEvery
	if due {
		q.deadSwept = now
	}
	q.mu.Unlock()
	if due {
		q.sweepDead()
	}
}

// sweepDead removes the dead letters past DeadMaxAge, then the oldest
// while dead/ holds more than DeadMaxBytes.
func (q *Queue) sweepDead() {
	if q.opts.DeadMaxAge <= 0 && q.opts.DeadMaxBytes <= 0 {
		return
	}
	letters, total := q.deadLetters()
	now := q.now()
	removed := 0
	for _, d := range letters {
		reason := ""
		switch {
		case q.opts.DeadMaxAge > 0 && now.Sub(d.died) > q.opts.DeadMaxAge:
			reason = "dead_max_age"
		case q.opts.DeadMaxBytes > 0 && total > q.opts.DeadMaxBytes:
			reason = "dead_max_bytes"
		default:
			continue
		}
		q.fs.Remove(q.path(dirDead, d.id, ".eml"))
		if err := q.fs.Remove(q.path(dirDead, d.id, ".json")); err != nil {
			q.log.Error("dead letter not removed", "id", d.id, "error", err)
			continue
		}
		total -= d.size
		removed++
		q.log.Info("dead letter removed", "id", d.id, "reason", reason, "died", d.died.UTC().Format(time.RFC3339))
	}
	if removed > 0 {
		q.fs.SyncDir(filepath.Join(q.opts.Dir, dirDead))
	}
}

// deadLetters lists dead/, oldest first, with the bytes it holds. Links and
// other non-regular files are left out (and never removed).
func (q *Queue) deadLetters() (letters []deadLetter, total int64) {
	ents, err := os.ReadDir(filepath.Join(q.opts.Dir, dirDead))
	if err != nil {
		return nil, 0
	}
	for _, ent := range ents {
		id, ok := strings.CutSuffix(ent.Name(), ".json")
		if !ok || !idPattern.MatchString(id) || !ent.Type().IsRegular() {
			continue
		}
		st, err := ent.Info()
		if err != nil {
			continue
		}
		d := deadLetter{id: id, died: st.ModTime(), size: st.Size()}
		if b, err := os.Lstat(q.path(dirDead, id, ".eml")); err == nil && b.Mode().IsRegular() {
			d.size += b.Size()
		}
		letters = append(letters, d)
		total += d.size
	}
	slices.SortFunc(letters, func(a, b deadLetter) int { return a.died.Compare(b.died) })
	return letters, total
}
