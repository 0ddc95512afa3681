package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/tlsrelay/tlsrelay/internal/textesc"
)

// The admin address (admin.addr) is the monitoring plane: Prometheus
// scrapes it, probes ask it, and in a cluster it is often reachable by every
// pod. So it serves GET/HEAD of /metrics, /healthz and /readyz only (other
// methods 405, other paths 404) and never lists, reads or changes mail.
// The queue API is there only when a bearer token is configured, and every
// queue request must then carry it. The control socket (owner-only) stays
// the CLI's way in and needs no token.

// PublicOptions configure the handler of admin.addr.
type PublicOptions struct {
	Options
	// Token, when not empty, turns the queue API on: each request to it
	// needs "Authorization: Bearer <Token>".
	Token string
	// Loopback says the listener is on a loopback address: then the Host
	// header must name a loopback host too, so that a web page cannot reach
	// the API through DNS rebinding.
	Loopback bool
	Log      *slog.Logger // refused requests; nil = not logged
}

// PublicHandler is the handler of admin.addr.
func PublicHandler(o PublicOptions) http.Handler {
	monitor := http.NewServeMux()
	monitorRoutes(monitor, o.Options)
	var api http.Handler
	if o.Token != "" {
		api = Handler(o.Options)
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	want := sha256.Sum256([]byte(o.Token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o.Loopback && !loopbackHost(r.Host) {
			refuse(log, r, "host header is not a loopback name")
			http.Error(w, "the admin endpoint answers only requests for a loopback host (Host: 127.0.0.1, [::1] or localhost)", http.StatusMisdirectedRequest)
			return
		}
		if !isQueuePath(r.URL.Path) {
			monitor.ServeHTTP(w, r)
			return
		}
		if api == nil {
			writeJSON(w, http.StatusNotFound, errorBody{"the queue API is not served on admin.addr: use `tlsrelay queue` on the relay's host " +
				"(control socket), or set admin.token_env or admin.token_file to serve it here with a bearer token"})
			return
		}
		if reason := checkBearer(r, want); reason != "" {
			refuse(log, r, reason)
			w.Header().Set("WWW-Authenticate", `Bearer realm="tlsrelay"`)
			writeJSON(w, http.StatusUnauthorized, errorBody{"the queue API needs the header Authorization: Bearer <token> (admin.token_env or token_file): " + reason})
			return
		}
		api.ServeHTTP(w, r)
	})
}

// monitorRoutes registers the monitoring plane (GET patterns match HEAD too;
// ServeMux answers 405 with Allow for the other methods).
func monitorRoutes(mux *http.ServeMux, o Options) {
	mux.HandleFunc("GET "+PathHealthz, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET "+PathReadyz, func(w http.ResponseWriter, r *http.Request) { ready(w, o.Ready) })
	if o.Metrics != nil {
		mux.Handle("GET "+PathMetrics, o.Metrics.HTTPHandler())
	}
}

func isQueuePath(p string) bool {
	for _, root := range []string{PathQueue, PathDead} {
		if p == root || strings.HasPrefix(p, root+"/") {
			return true
		}
	}
	return false
}

// checkBearer compares the request's bearer token with want (a SHA-256, so
// that the comparison takes the same time whatever the lengths); it returns
// why the request is refused, or "".
func checkBearer(r *http.Request, want [32]byte) string {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "no Authorization header"
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "not a Bearer token"
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return "wrong token"
	}
	return ""
}

// refuse logs a refused request: who, what, why; never the token.
func refuse(log *slog.Logger, r *http.Request, reason string) {
	log.Warn("admin request refused", "remote", r.RemoteAddr, "method", r.Method, "path", textesc.Escape(r.URL.Path),
		"host", textesc.Escape(r.Host), "reason", reason)
}

// loopbackHost reports whether a Host header names a loopback host.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
