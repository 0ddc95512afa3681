// Package daemon runs the relay: it wires a config into the inbound server
// (relay), the spool and its workers (queue), the delivery client
// (upstream) and the admin endpoints (admin), and reloads the config on
// SIGHUP. It is the only package besides main that imports all of them
// (docs/design.md, Packages and imports).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tlsrelay/tlsrelay/admin"
	"github.com/tlsrelay/tlsrelay/delivery"
	"github.com/tlsrelay/tlsrelay/policy"
	"github.com/tlsrelay/tlsrelay/queue"
	"github.com/tlsrelay/tlsrelay/relay"
	"github.com/tlsrelay/tlsrelay/upstream"
)

// The seams between stages, checked at compile time.
var (
	_ relay.Spool        = (*queue.Queue)(nil)
	_ delivery.Deliverer = (*upstream.Client)(nil)
)

// drainTimeout bounds how long open inbound sessions may finish after a
// stop signal; the queue has its own StopTimeout for in-flight deliveries.
const drainTimeout = 30 * time.Second

// Daemon is one running relay: the inbound server, the spool and its
// workers, the admin endpoints, and the configuration in force.
type Daemon struct {
	cfg     *policy.Config
	log     *slog.Logger
	q       *queue.Queue
	srv     *relay.Server
	up      *upstream.Client
	metrics *admin.Metrics

	listening, draining atomic.Bool // for /readyz
	adminAddr           string      // where admin.addr listens, once it does

	// live is the configuration in force: cfg, or what a SIGHUP reload
	// loaded since. Routing reads it; settings that need a restart are read
	// from cfg.
	live atomic.Pointer[policy.Config]
}

// route resolves a recipient with the configuration in force.
func (a *Daemon) route(from, rcpt string) []string { return a.live.Load().Route(from, rcpt) }

// New wires the packages for cfg. It opens (and locks) the spool; Run
// serves, or Close releases the spool without serving.
func New(cfg *policy.Config, log *slog.Logger) (*Daemon, error) {
	metrics := admin.NewMetrics()
	log = slog.New(metrics.Handler(log.Handler())) // the log's events feed the counters
	for _, w := range cfg.Warnings() {
		log.Warn("config", "warning", w)
	}
	a := &Daemon{cfg: cfg, log: log, metrics: metrics}
	a.live.Store(cfg)
	a.up = &upstream.Client{
		Providers: cfg.Providers,
		HelloName: cfg.Listen.Hostname,
		Log:       log,
	}
	// The queue owns pacing: it runs at most max_connections attempts per
	// provider at once (which also bounds the upstream client's idle
	// connections) and spaces them by rate; mail over the rate waits in the
	// spool, it is never refused.
	conns, rates := providerLimits(cfg)
	q, err := queue.Open(queue.Options{
		Dir:            cfg.Queue.Dir,
		Route:          a.route,
		Retry:          queue.Retry(cfg.Queue.Retry),
		MaxAge:         cfg.Queue.MaxAge,
		MaxItems:       cfg.Queue.MaxItems,
		MaxBytes:       cfg.Queue.MaxBytes,
		Workers:        cfg.Queue.Workers,
		MaxConnections: conns,
		Rates:          rates,
		Bounce: queue.Bounce{
			To: cfg.Queue.BounceTo, Hostname: cfg.Listen.Hostname, DelayWarning: cfg.Queue.DelayWarning,
			RateN: cfg.Queue.BounceRate.N, RatePer: cfg.Queue.BounceRate.Per,
		},
		DeadMaxAge:   cfg.Queue.DeadMaxAge,
		DeadMaxBytes: cfg.Queue.DeadMaxBytes,
		Log:          log,
		// A restart on a large queue takes new mail at once; the old
		// messages join as they are read (100,000: 12 s from a cold disk).
		LoadInBackground: true,
	}, a.up)
	if err != nil {
		return nil, err
	}
	a.q = q
	a.srv, err = relay.New(relay.Options{
		Listen: cfg.Listen,
		Route:  a.route, // resolved once, at RCPT, and spooled with the recipient
		Spool:  q,
		Log:    log,
	})
	if err != nil {
		q.Close()
		return nil, err
	}
	a.registerGauges()
	return a, nil
}

// Run serves on l and delivers until ctx ends, then drains: new connections
// get 421, open sessions may finish (drainTimeout), in-flight deliveries may
// finish (the queue's StopTimeout). Mail not yet delivered stays on disk.
func (a *Daemon) Run(ctx context.Context, l net.Listener) error {
	qctx, stopQueue := context.WithCancel(context.Background())
	qdone := make(chan error, 1)
	go func() { qdone <- a.q.Run(qctx) }()
	stopWorkers := func() {
		stopQueue()
		<-qdone
		a.up.Close() // the idle upstream connections, once nothing delivers
	}
	stopControl, err := admin.ServeSocket(a.cfg.Queue.Dir, a.adminHandler(), admin.Limits{Log: a.log})
	if err != nil {
		stopWorkers()
		a.q.Close()
		return err
	}
	stopAdmin, err := a.serveAdmin()
	if err != nil {
		stopControl()
		stopWorkers()
		a.q.Close()
		return err
	}
	sdone := make(chan error, 1)
	go func() { sdone <- a.srv.Serve(l) }()
	a.listening.Store(true)
	a.log.Info("listening", "addr", l.Addr().String(), "spool", a.cfg.Queue.Dir, "queued", a.queued(),
		"control", admin.SocketPath(a.cfg.Queue.Dir))

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-sdone:
	}
	a.draining.Store(true)
	a.log.Info("stopping", "drain_timeout", drainTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	if err := a.srv.Shutdown(sctx); err != nil {
		a.log.Warn("inbound sessions did not finish in time; closed them", "error", err)
	}
	cancel()
	stopAdmin()
	stopControl()
	stopWorkers()
	err = a.q.Close()
	a.log.Info("stopped", "queued", a.queued())
	if serveErr != nil && !errors.Is(serveErr, net.ErrClosed) {
		return serveErr
	}
	return err
}

// NewLogger builds the slog logger that cfg.Log asks for.
func NewLogger(cfg policy.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(cfg.Format, "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Serve loads the config at path and runs the relay until ctx ends,
// reloading the file on SIGHUP.
func Serve(ctx context.Context, path string, stderr io.Writer) error {
	cfg, err := policy.Load(path, os.LookupEnv)
	if err != nil {
		return fmt.Errorf("%s is not valid:\n%w", path, err)
	}
	log := NewLogger(cfg.Log, stderr)
	a, err := New(cfg, log)
	if err != nil {
		return err
	}
	l, err := Listen(ctx, cfg.Listen.Addr)
	if err != nil {
		a.q.Close()
		return fmt.Errorf("listen on %s (listen.addr): %w", cfg.Listen.Addr, err)
	}
	stop := a.ReloadOnHUP(ctx, path, os.LookupEnv)
	defer stop()
	return a.Run(ctx, l)
}

// Listen listens for the apps' SMTP sessions. TCP keep-alive is off:
// every session is bounded by read_timeout and session_timeout already, and
// keep-alive costs four setsockopt calls on each accepted connection (one
// per message, for the apps that send one message per session).
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(ctx, "tcp", addr)
}

// queued is how many messages the spool holds, counting those a background
// load has not read yet.
func (a *Daemon) queued() int {
	s := a.q.Stats()
	return s.Items + s.Loading
}

// providerLimits is each provider's max_connections and rate, for the queue.
func providerLimits(cfg *policy.Config) (map[string]int, map[string]queue.Rate) {
	conns, rates := map[string]int{}, map[string]queue.Rate{}
	for name, p := range cfg.Providers {
		conns[name] = p.MaxConnections
		if p.Rate.N > 0 {
			rates[name] = queue.Rate(p.Rate)
		}
	}
	return conns, rates
}

// Close releases the spool of a Daemon that New made and Run never ran.
func (a *Daemon) Close() error { return a.q.Close() }

// Queue is the daemon's spool, for tests and the demo to watch.
func (a *Daemon) Queue() *queue.Queue { return a.q }

// AdminAddr is where admin.addr listens once Run has started it, or "".
func (a *Daemon) AdminAddr() string { return a.adminAddr }
