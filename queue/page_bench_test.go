package queue

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkPage lists a queue of 100,000 items page by page, as
// `tlsrelay queue list` does through the admin API.
func BenchmarkPage(b *testing.B) {
	q := &Queue{items: map[string]*entry{}}
	for i := range 100000 {
		id := fmt.Sprintf("%016x-%012x", rand.Uint64(), i)
		q.items[id] = &entry{item: &Item{ID: id}}
	}
	for b.Loop() {
		after, n := "", 0
		for {
			items, more := q.Page(after, 1000)
			n += len(items)
			if !more {
				break
			}
			after = items[len(items)-1].ID
		}
		if n != 100000 {
			b.Fatalf("listed %d", n)
		}
	}
}
