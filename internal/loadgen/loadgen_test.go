package loadgen

import (
	"testing"
	"time"
)

func TestBenchParseSizeAndPercentile(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "4k": 4096, "10m": 10 << 20, "1G": 1 << 30} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "k", "-1", "4x"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q): no error", in)
		}
	}
	lat := make([]time.Duration, 100)
	for i := range lat {
		lat[i] = time.Duration(i+1) * time.Millisecond
	}
	if pct(lat, 50) != 50*time.Millisecond || pct(lat, 99) != 99*time.Millisecond || pct(lat[:1], 99) != time.Millisecond {
		t.Errorf("pct: %v %v", pct(lat, 50), pct(lat, 99))
	}
	if n := len(benchBody(4096)) + 200; n < 4000 || n > 4096 {
		t.Errorf("benchBody(4096) gives a %d-byte message", n)
	}
}
