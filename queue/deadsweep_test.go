package queue

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// At start, dead letters past dead_max_age go, then the oldest while dead/
// is over dead_max_bytes; each removal is logged; a link is left alone.
func TestDeadLettersBounded(t *testing.T) {
	dir := t.TempDir()
	dead := filepath.Join(dir, dirDead)
	os.MkdirAll(dead, 0o700)
	now := time.Now()
	ids := make([]string, 5)
	for i := range ids {
		ids[i] = fmt.Sprintf("18eeb064abd6b2c%d-1ee0249cd710", i)
		for _, ext := range []string{".json", ".eml"} {
			p := filepath.Join(dead, ids[i]+ext)
			os.WriteFile(p, []byte(strings.Repeat("x", 1000)), 0o600)
			age := time.Duration(4-i) * 24 * time.Hour // ids[0] is 4 days old, ids[4] new
			os.Chtimes(p, now.Add(-age), now.Add(-age))
		}
	}
	link := filepath.Join(dead, "18eeb064abd6b2cf-1ee0249cd710.json")
	os.Symlink("/etc/passwd", link)
	o, logs := testOptions(t, dir)
	o.DeadMaxAge = 3*24*time.Hour + time.Hour // ids[0] is past it
	o.DeadMaxBytes = 5000                     // 4 left x 2000 bytes: the two oldest go
	openQueue(t, o, nopDeliverer{})
	for i, id := range ids {
		_, err := os.Stat(filepath.Join(dead, id+".json"))
		if kept := i >= 3; kept != (err == nil) {
			t.Errorf("dead letter %d: kept=%v, stat %v", i, !kept, err)
		}
	}
	if _, err := os.Lstat(link); err != nil {
		t.Errorf("the link was removed: %v", err)
	}
	l := logs.String()
	if strings.Count(l, `reason=dead_max_age`) != 1 || strings.Count(l, `reason=dead_max_bytes`) != 2 {
		t.Errorf("removals not logged as expected:\n%s", l)
	}
}
