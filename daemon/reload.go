package daemon

import (
	"context"
	"os"
	"os/signal"
	"reflect"
	"sort"
	"syscall"

	"gopkg.in/yaml.v3"

	"github.com/tlsrelay/tlsrelay/policy"
)

// ReloadOnHUP reloads the config file on each SIGHUP until ctx ends or
// stop is called.
func (a *Daemon) ReloadOnHUP(ctx context.Context, path string, env func(string) (string, bool)) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
				a.Reload(path, env)
			case <-ctx.Done():
				return
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}

// Reload loads path again (credential files and environment variables
// included) and applies it to new work: providers (hosts, TLS policy,
// credentials) for the next delivery attempt, routes and default for the
// next recipient; each provider's max_connections and rate, and
// queue.workers, for the next attempt. Deliveries in flight finish as they
// started. A file that does not load is logged and the running
// configuration stays. Settings that need a restart (listen, the rest of
// queue, admin, log) are named in a warning and keep their running values.
func (a *Daemon) Reload(path string, env func(string) (string, bool)) {
	cfg, err := policy.Load(path, env)
	if err != nil {
		a.log.Error("reload failed; the running configuration stays", "file", path, "error", err)
		return
	}
	for _, w := range cfg.Warnings() {
		a.log.Warn("config", "warning", w)
	}
	if keys := restartOnly(a.cfg, cfg); len(keys) > 0 {
		a.log.Warn("reload: these settings changed but need a restart; their running values stay", "keys", keys)
	}
	a.up.SetProviders(cfg.Providers)
	conns, rates := providerLimits(cfg)
	a.q.SetLimits(cfg.Queue.Workers, conns, rates)
	a.live.Store(cfg)
	a.log.Info("reloaded", "file", path, "providers", len(cfg.Providers), "routes", len(cfg.Routes))
}

// restartOnly lists the settings that differ between the running and the
// new configuration and that a reload does not apply.
func restartOnly(old, cur *policy.Config) []string {
	o, n := sections(old), sections(cur)
	for _, s := range []map[string]any{o, n} {
		if q, ok := s["queue"].(map[string]any); ok {
			delete(q, "workers") // applied by the reload
		}
	}
	var keys []string
	for _, k := range []string{"listen", "queue", "admin", "log"} {
		if !reflect.DeepEqual(o[k], n[k]) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// sections is the effective configuration as a map, section by section.
func sections(c *policy.Config) map[string]any {
	var m map[string]any
	yaml.Unmarshal(c.Effective(), &m)
	return m
}
