package queue

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// smallest picks what a full sort would, for every cursor and limit.
func TestSmallestMatchesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 7, 100, 1000} {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("%08x", r.Uint32()%5000) // some repeat; the heap must keep them all
		}
		sorted := slices.Clone(ids)
		slices.Sort(sorted)
		for _, after := range []string{"", "00000800", "ffffffff"} {
			for _, limit := range []int{1, 3, 10, 1000, 5000} {
				var want []string
				for _, id := range sorted {
					if id > after {
						want = append(want, id)
					}
				}
				more := len(want) > limit
				if more {
					want = want[:limit]
				}
				var s smallest
				for _, id := range ids {
					if id > after {
						s.add(id, limit)
					}
				}
				got := s.sorted()
				if !slices.Equal(got, want) || (s.seen > len(got)) != more {
					t.Fatalf("n=%d after=%q limit=%d: got %d ids (more %v), want %d (more %v)",
						n, after, limit, len(got), s.seen > len(got), len(want), more)
				}
			}
		}
	}
}

// Paging through a queue yields every item once, in ID order.
func TestPageWalksTheQueue(t *testing.T) {
	q := &Queue{items: map[string]*entry{}}
	for i := range 2500 {
		id := fmt.Sprintf("id-%05d", (i*7919)%2500) // every id once, not in order
		q.items[id] = &entry{item: &Item{ID: id}}
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("more pages than 2500 items at 1000 a page need")
		}
		items, more := q.Page(after, 1000)
		for _, it := range items {
			got = append(got, it.ID)
		}
		if !more {
			break
		}
		after = items[len(items)-1].ID
	}
	if len(got) != 2500 || !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != 2500 {
		t.Fatalf("walked %d items (sorted %v), want 2500 distinct in order", len(got), slices.IsSorted(got))
	}
}
