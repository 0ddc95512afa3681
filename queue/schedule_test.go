package queue

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	r := Retry{Initial: 30 * time.Second, Max: 30 * time.Minute, Factor: 2}
	tests := []struct {
		n    int
		want time.Duration
	}{
		{0, 30 * time.Second}, // n < 1 is treated as the first retry
		{1, 30 * time.Second},
		{2, time.Minute},
		{3, 2 * time.Minute},
		{6, 16 * time.Minute},
		{7, 30 * time.Minute}, // 32m capped
		{1000, 30 * time.Minute},
	}
	for _, tc := range tests {
		if got := Backoff(r, tc.n, 0.9); got != tc.want {
			t.Errorf("Backoff(n=%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

func TestBackoffJitterBounds(t *testing.T) {
	r := Retry{Initial: 10 * time.Second, Max: time.Minute, Factor: 3, Jitter: 0.2}
	for n := 1; n <= 10; n++ {
		base := Backoff(Retry{Initial: r.Initial, Max: r.Max, Factor: r.Factor}, n, 0)
		lo, hi := Backoff(r, n, 0), Backoff(r, n, 0.999999)
		if want := time.Duration(float64(base) * 0.8); lo != want {
			t.Errorf("n=%d: lowest = %v, want %v", n, lo, want)
		}
		if hi <= base || hi > time.Duration(float64(base)*1.2) {
			t.Errorf("n=%d: highest = %v, want in (%v, %v]", n, hi, base, time.Duration(float64(base)*1.2))
		}
		if mid := Backoff(r, n, 0.5); mid != base {
			t.Errorf("n=%d: rnd 0.5 gives %v, want the unjittered %v", n, mid, base)
		}
	}
	// An out-of-range random number must not produce a wild value.
	if got := Backoff(r, 1, 7); got != 10*time.Second {
		t.Errorf("rnd out of range: got %v, want 10s", got)
	}
}

func TestBackoffNoOverflow(t *testing.T) {
	r := Retry{Initial: time.Hour, Factor: 10} // no Max
	if got := Backoff(r, 1<<30, 0.5); got <= 0 {
		t.Fatalf("Backoff overflowed to %v", got)
	}
}
