package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/tlsrelay/tlsrelay/admin"
)

// cmdHealth asks a running relay whether it is ready (its /readyz) through
// the spool's control socket, and exits 0 only if it is. It needs no shell
// and no port: it is the container's HEALTHCHECK.
func cmdHealth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("health", stderr)
	config := fs.String("config", "relay.yaml", "config file (for queue.dir)")
	dir := fs.String("dir", "", "spool directory (instead of -config)")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	f := &queueFlags{config: *config, dir: *dir}
	spool, err := f.spoolDir()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c := admin.NewClient(spool)
	ready, text, err := c.Ready(ctx)
	if err != nil {
		return fmt.Errorf("unhealthy: no relay answers on %s: %w", c.Path(), err)
	}
	if !ready {
		return fmt.Errorf("unhealthy: %s", text)
	}
	fmt.Fprintln(stdout, text)
	return nil
}
