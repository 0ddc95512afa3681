package queue

import (
	"bytes"
	"strings"
	"sync"
	"time"
)

// Backscatter guards (docs/design.md, Decisions): a relay that bounces to
// the envelope sender bounces to whoever a forger names, so notices are
// bounded: none to system senders or about a notice, and with
// BounceTo "sender" at most Bounce.RateN per RatePer per sender domain.

// systemLocalParts are senders that never get a notice (RFC 3834 2, and
// the addresses of mail software and no-reply senders).
var systemLocalParts = []string{"mailer-daemon", "postmaster", "nobody", "noreply", "no-reply", "do-not-reply", "donotreply"}

// suppressReason returns why no notice may go to to about a message with
// this header, or "".
func (q *Queue) suppressReason(to string, header []byte) string {
	local, domain, _ := strings.Cut(strings.ToLower(to), "@")
	for _, s := range systemLocalParts {
		if local == s {
			return "system sender"
		}
	}
	if isNotice(header) {
		return "message is a notice"
	}
	if q.opts.Bounce.To == "sender" && !q.bounceLimit.allow(domain, q.now(), q.opts.Bounce.RateN, q.opts.Bounce.RatePer) {
		return "rate limit"
	}
	return ""
}

// isNotice reports whether a header is a delivery status notification's
// or an automatic message's (RFC 3464 multipart/report; RFC 3834
// Auto-Submitted other than "no").
func isNotice(header []byte) bool {
	for _, line := range bytes.Split(header, []byte("\n")) {
		l := strings.ToLower(strings.TrimSpace(string(line)))
		if v, ok := strings.CutPrefix(l, "auto-submitted:"); ok && strings.TrimSpace(v) != "no" {
			return true
		}
		if strings.HasPrefix(l, "content-type:") && strings.Contains(l, "multipart/report") {
			return true
		}
	}
	return false
}

// maxBounceDomains bounds the limiter's memory: past it, the domains whose
// buckets have refilled are forgotten first.
const maxBounceDomains = 10000

// domainLimiter is a token bucket per sender domain.
type domainLimiter struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// allow takes one token from domain's bucket of n per per, if it has one.
func (l *domainLimiter) allow(domain string, now time.Time, n int, per time.Duration) bool {
	if n <= 0 || per <= 0 {
		n, per = defaultBounceRateN, defaultBounceRatePer
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buckets == nil {
		l.buckets = map[string]*bucket{}
	}
	rate := float64(n) / per.Seconds()
	b := l.buckets[domain]
	if b == nil {
		if len(l.buckets) >= maxBounceDomains {
			l.forget(now, rate, float64(n))
		}
		b = &bucket{tokens: float64(n), last: now}
		l.buckets[domain] = b
	}
	b.tokens = min(float64(n), b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// forget drops the full buckets (as good as new), or all if none is.
func (l *domainLimiter) forget(now time.Time, rate, full float64) {
	for d, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*rate >= full {
			delete(l.buckets, d)
		}
	}
	if len(l.buckets) >= maxBounceDomains {
		clear(l.buckets)
	}
}

// The default of Bounce.RateN/RatePer: policy's queue.bounce_rate default.
const (
	defaultBounceRateN   = 10
	defaultBounceRatePer = time.Hour
)
