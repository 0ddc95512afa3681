package admin

import "net/url"

// The control API's paths, spelled once: Handler routes them and Client
// requests them.
const (
	PathHealthz  = "/healthz"
	PathReadyz   = "/readyz"
	PathMetrics  = "/metrics"
	PathQueue    = "/queue"       // GET: the queued messages; PathQueue/{id}: one
	PathRetryAll = "/queue/retry" // POST: make every message due now
	PathFlush    = "/queue/flush" // POST ?wait=D: retry all and wait for an empty queue
	PathDead     = "/dead"        // GET: the dead letters; PathDead/{id}: one

	suffixRetry   = "/retry"   // POST PathQueue/{id}/retry
	suffixRequeue = "/requeue" // POST PathDead/{id}/requeue

	idPattern = "/{id}"
)

// queueItem and deadItem are the paths of one message and one dead letter.
func queueItem(id string) string { return PathQueue + "/" + url.PathEscape(id) }
func deadItem(id string) string  { return PathDead + "/" + url.PathEscape(id) }
