package admin

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Limits bound what the clients of an admin listener can hold: idle or slow
// connections time out, and connections past MaxConns are closed as soon as
// they are accepted, so a flood cannot grow memory or file descriptors, and
// the scraper gets in again once it ends.
type Limits struct {
	MaxConns          int           // concurrent connections; 0 = DefaultMaxConns
	ReadHeaderTimeout time.Duration // a new connection's request header; 0 = 10s
	IdleTimeout       time.Duration // between two requests on one connection; 0 = 60s
	Log               *slog.Logger  // net/http's own errors, at debug; nil = dropped
}

// DefaultMaxConns is Limits.MaxConns when unset: ample for a scraper, a
// probe and an operator, small against a flood.
const DefaultMaxConns = 32

func (l Limits) withDefaults() Limits {
	if l.MaxConns <= 0 {
		l.MaxConns = DefaultMaxConns
	}
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = 10 * time.Second
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = time.Minute
	}
	if l.Log == nil {
		l.Log = slog.New(slog.DiscardHandler)
	}
	return l
}

// Serve serves h on ln within lim until stop, which waits up to 2 s for
// requests in progress (a flush still waiting is cut short; its client sees
// an error).
func Serve(ln net.Listener, h http.Handler, lim Limits) (stop func()) {
	lim = lim.withDefaults()
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		ReadTimeout:       lim.ReadHeaderTimeout + 10*time.Second, // requests have no body
		WriteTimeout:      MaxFlushWait + time.Minute,             // the longest answer is a flush
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(lim.Log.Handler(), slog.LevelDebug),
	}
	go srv.Serve(&capListener{Listener: ln, max: int64(lim.MaxConns)})
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}
}

// capListener closes, as soon as it is accepted, each connection that
// would pass max open at once.
type capListener struct {
	net.Listener
	max  int64
	open atomic.Int64
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &countedConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		c.Close()
	}
}

// countedConn gives its slot back when closed, once.
type countedConn struct {
	net.Conn
	l    *capListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}
