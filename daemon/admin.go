package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tlsrelay/tlsrelay/admin"
)

// registerGauges adds the metrics read at scrape time: queue depth and
// age, and each provider's certificate expiry.
func (a *Daemon) registerGauges() {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tlsrelay_" + name, Help: help}, f)
	}
	a.metrics.MustRegister(
		gauge("queue_messages", "Messages in the spool.", func() float64 {
			s := a.q.Stats()
			return float64(s.Items + s.Loading) // those not read yet at start count too
		}),
		gauge("queue_bytes", "Bytes of the messages in the spool.", func() float64 { return float64(a.q.Stats().Bytes) }),
		gauge("queue_oldest_age_seconds", "Age of the oldest message in the spool; 0 when empty.", func() float64 {
			if o := a.q.Stats().Oldest; !o.IsZero() {
				return time.Since(o).Seconds()
			}
			return 0
		}),
	)
	a.metrics.MustRegister(certExpiry{a: a, desc: prometheus.NewDesc("tlsrelay_upstream_cert_expiry_days",
		"Days until the provider's certificate expires, as seen at the last handshake (no sample before one).",
		[]string{"provider"}, nil)})
}

// certExpiry reports each provider's certificate expiry, and nothing for a
// provider not yet connected to (a 0 would read as "expired").
type certExpiry struct {
	a    *Daemon
	desc *prometheus.Desc
}

func (c certExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c certExpiry) Collect(ch chan<- prometheus.Metric) {
	for name := range c.a.live.Load().Providers {
		if t, ok := c.a.up.CertExpiry(name); ok {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, time.Until(t).Hours()/24, name)
		}
	}
}

// ready is /readyz: listening, not draining, the spool takes writes, and
// (only if admin.ready_max_queue is set) the queue is not over it.
func (a *Daemon) ready() error {
	switch {
	case !a.listening.Load():
		return errors.New("not listening yet")
	case a.draining.Load():
		return errors.New("shutting down")
	}
	if err := a.q.CheckWritable(); err != nil {
		return err
	}
	s := a.q.Stats()
	if n, max := s.Items+s.Loading, a.cfg.Admin.ReadyMaxQueue; max > 0 && n > max {
		return fmt.Errorf("%d messages queued, more than admin.ready_max_queue (%d)", n, max)
	}
	return nil
}

// adminHandler is the whole API, served on the control socket.
func (a *Daemon) adminHandler() http.Handler {
	return admin.Handler(a.adminOptions())
}

func (a *Daemon) adminOptions() admin.Options {
	return admin.Options{Queue: a.q, Metrics: a.metrics, Ready: a.ready}
}

// serveAdmin serves the monitoring plane on admin.addr, if set, and the
// queue API there too when admin has a token, until stop.
func (a *Daemon) serveAdmin() (stop func(), err error) {
	if a.cfg.Admin.Addr == "" {
		return func() {}, nil
	}
	l, err := net.Listen("tcp", a.cfg.Admin.Addr)
	if err != nil {
		return nil, fmt.Errorf("admin endpoint on %s (admin.addr): %w", a.cfg.Admin.Addr, err)
	}
	a.adminAddr = l.Addr().String()
	tcp, _ := l.Addr().(*net.TCPAddr)
	h := admin.PublicHandler(admin.PublicOptions{
		Options:  a.adminOptions(),
		Token:    a.cfg.Admin.Token.Reveal(),
		Loopback: tcp != nil && tcp.IP.IsLoopback(),
		Log:      a.log,
	})
	a.log.Info("admin endpoint", "addr", a.adminAddr, "queue_api", a.cfg.Admin.Token != "")
	return admin.Serve(l, h, admin.Limits{Log: a.log}), nil
}
