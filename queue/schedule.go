package queue

import (
	"math"
	"time"
)

// Retry is the backoff policy: the n-th wait is Initial*Factor^(n-1),
// capped at Max, then spread by +-Jitter (a fraction of the wait).
type Retry struct {
	Initial time.Duration
	Max     time.Duration
	Factor  float64
	Jitter  float64
}

// DefaultRetry is Postfix-like: start at 30s, double, cap at 30m, 20% jitter.
var DefaultRetry = Retry{Initial: 30 * time.Second, Max: 30 * time.Minute, Factor: 2, Jitter: 0.2}

// Backoff returns the wait before retry number n (n >= 1) of a recipient.
// rnd is a number in [0, 1) from the caller's random source, so the function
// is pure: the same inputs give the same wait. The result is never below
// Initial*(1-Jitter) nor above Max*(1+Jitter), and never negative.
func Backoff(r Retry, n int, rnd float64) time.Duration {
	if n < 1 {
		n = 1
	}
	d := float64(r.Initial)
	if r.Factor > 1 {
		// Exponent capped so that the product cannot overflow float64.
		d *= math.Pow(r.Factor, math.Min(float64(n-1), 64))
	}
	if r.Max > 0 && d > float64(r.Max) {
		d = float64(r.Max)
	}
	if r.Jitter > 0 {
		if rnd < 0 || rnd >= 1 {
			rnd = 0.5
		}
		d += d * r.Jitter * (2*rnd - 1)
	}
	if d < 0 {
		return 0
	}
	if d > float64(math.MaxInt64) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(d)
}
