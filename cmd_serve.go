package main

import (
	"context"
	"io"

	"github.com/tlsrelay/tlsrelay/daemon"
)

// cmdServe runs the relay from a config file until SIGINT or SIGTERM.
func cmdServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	path := fs.String("config", "relay.yaml", "config file")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to this file when serve stops (for go tool pprof)")
	memProfile := fs.String("memprofile", "", "write an allocation profile to this file when serve stops")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	stopProfiles, err := startProfiles(*cpuProfile, *memProfile)
	if err != nil {
		return err
	}
	err = daemon.Serve(ctx, *path, stderr)
	if perr := stopProfiles(); perr != nil && err == nil {
		err = perr
	}
	return err
}
