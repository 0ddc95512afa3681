package admin

import (
	"context"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the relay's Prometheus metrics. The counters are fed by the
// log: every event of the fixed vocabulary in docs/design.md, "Log events" (accepted, rejected,
// delivered, deferred, failed, dead, auth failed) passes through
// Metrics.Handler on its way to the log, so a metric and its log line can
// never disagree, and no stage of the relay needs to know about Prometheus.
type Metrics struct {
	reg          *prometheus.Registry
	accepted     prometheus.Counter
	acceptedSize prometheus.Counter
	rejected     *prometheus.CounterVec
	delivered    *prometheus.CounterVec
	deferred     *prometheus.CounterVec
	failed       *prometheus.CounterVec
	dead         prometheus.Counter
	authFailures *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	tls          *prometheus.CounterVec
	suppressed   *prometheus.CounterVec
	refused      *prometheus.CounterVec
}

// NewMetrics registers the counters, plus the Go runtime and process
// collectors, in a registry of its own.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "tlsrelay_" + name, Help: help})
	}
	vec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsrelay_" + name, Help: help}, labels)
	}
	m.accepted = counter("messages_accepted_total", "Messages accepted (250) and spooled.")
	m.acceptedSize = counter("accepted_bytes_total", "Bytes of the messages accepted.")
	m.rejected = vec("messages_rejected_total", "Inbound commands or connections refused, by reply code.", "code")
	m.delivered = vec("deliveries_total", "Recipients delivered, by provider.", "provider")
	m.deferred = vec("deferrals_total", "Temporary delivery failures of a recipient, by provider.", "provider")
	m.failed = vec("failures_total", "Permanent delivery failures of a recipient (5xx or expired), by provider.", "provider")
	m.dead = counter("dead_letters_total", "Messages moved to the dead-letter directory.")
	m.authFailures = vec("upstream_auth_failures_total", "Upstream AUTH refusals, by provider.", "provider")
	m.tls = vec("upstream_tls_total", "Recipients delivered, by provider, TLS version and cipher suite.", "provider", "version", "cipher")
	m.suppressed = vec("bounces_suppressed_total", "Delivery status notifications not sent (rate limit, system sender, a notice about a notice), by reason.", "reason")
	m.refused = vec("admin_requests_refused_total", "Requests to admin.addr refused (no or wrong token, foreign Host), by reason.", "reason")
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tlsrelay_delivery_latency_seconds",
		Help:    "Time from acceptance to delivery of a recipient, by provider.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 6 * 3600, 24 * 3600},
	}, []string{"provider"})
	m.reg.MustRegister(m.accepted, m.acceptedSize, m.rejected, m.delivered, m.deferred, m.failed, m.dead,
		m.authFailures, m.tls, m.latency, m.suppressed, m.refused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// MustRegister adds collectors (queue depth, certificate expiry, ...).
func (m *Metrics) MustRegister(cs ...prometheus.Collector) { m.reg.MustRegister(cs...) }

// HTTPHandler serves the registry in the Prometheus text format.
func (m *Metrics) HTTPHandler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Handler wraps a log handler: every record is counted, then passed on if
// next would log it at its level.
func (m *Metrics) Handler(next slog.Handler) slog.Handler { return &logHandler{m: m, next: next} }

type logHandler struct {
	m     *Metrics
	next  slog.Handler
	attrs []slog.Attr // from With
}

func (h *logHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	h.m.count(r, h.attrs)
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &logHandler{m: h.m, next: h.next.WithAttrs(as), attrs: append(h.attrs[:len(h.attrs):len(h.attrs)], as...)}
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	return &logHandler{m: h.m, next: h.next.WithGroup(name), attrs: h.attrs}
}

// count updates the metric of an event record.
func (m *Metrics) count(r slog.Record, preset []slog.Attr) {
	attr := func(key string) (v slog.Value) {
		found := false
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == key {
				v, found = a.Value, true
			}
			return !found
		})
		for _, a := range preset {
			if !found && a.Key == key {
				v, found = a.Value, true
			}
		}
		return v
	}
	provider := func() string { return attr("provider").String() }
	switch r.Message {
	case "accepted":
		m.accepted.Inc()
		m.acceptedSize.Add(float64(attr("size").Int64()))
	case "rejected":
		m.rejected.WithLabelValues(attr("code").String()).Inc()
	case "delivered":
		m.delivered.WithLabelValues(provider()).Inc()
		if d := attr("age").Duration(); d > 0 {
			m.latency.WithLabelValues(provider()).Observe(d.Seconds())
		}
		if version, cipher, ok := strings.Cut(attr("tls").String(), " "); ok {
			version, cipher = splitTLS(version + " " + cipher)
			m.tls.WithLabelValues(provider(), version, cipher).Inc()
		}
	case "deferred":
		m.deferred.WithLabelValues(provider()).Inc()
	case "failed":
		m.failed.WithLabelValues(provider()).Inc()
	case "dead":
		m.dead.Inc()
	case "auth failed":
		m.authFailures.WithLabelValues(provider()).Inc()
	case "notice suppressed":
		m.suppressed.WithLabelValues(attr("reason").String()).Inc()
	case "admin request refused":
		m.refused.WithLabelValues(attr("reason").String()).Inc()
	}
}

// splitTLS splits "TLS 1.3 TLS_AES_128_GCM_SHA256" into "TLS 1.3" and the suite.
func splitTLS(s string) (version, cipher string) {
	f := strings.Fields(s)
	if len(f) >= 3 && f[0] == "TLS" {
		return f[0] + " " + f[1], strings.Join(f[2:], " ")
	}
	return s, ""
}
