package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tlsrelay/tlsrelay/policy"
)

// queueFlags are the flags of every queue subcommand.
type queueFlags struct {
	config, dir string
	json, all   bool
	wait        bool
	timeout     time.Duration
	id          string
}

func parseQueueFlags(sub string, args []string, stderr io.Writer) (*queueFlags, error) {
	f := &queueFlags{}
	fs := newFlagSet("queue "+sub, stderr)
	fs.StringVar(&f.config, "config", "relay.yaml", "config file (for queue.dir)")
	fs.StringVar(&f.dir, "dir", "", "spool directory (instead of -config)")
	fs.BoolVar(&f.json, "json", false, "print JSON")
	if sub == "retry" {
		fs.BoolVar(&f.all, "all", false, "retry every queued message")
	}
	if sub == "flush" {
		fs.BoolVar(&f.wait, "wait", false, "wait until the queue is empty")
		fs.DurationVar(&f.timeout, "timeout", 60*time.Second, "with -wait: give up after this long (exit 1)")
	}
	if err := fs.Parse(args); err != nil {
		return nil, errUsage
	}
	needID := sub == "show" || sub == "delete" || sub == "requeue" || (sub == "retry" && !f.all)
	switch {
	case needID && fs.NArg() != 1:
		fmt.Fprintf(stderr, "tlsrelay queue %s: want one message ID\n\n%s", sub, queueUsage)
		return nil, errUsage
	case !needID && fs.NArg() != 0:
		fmt.Fprintf(stderr, "tlsrelay queue %s: unexpected argument %q\n", sub, fs.Arg(0))
		return nil, errUsage
	}
	f.id = fs.Arg(0)
	return f, nil
}

// spoolDir is -dir, or queue.dir of the config.
func (f *queueFlags) spoolDir() (string, error) {
	if f.dir != "" {
		return f.dir, nil
	}
	cfg, err := policy.Load(f.config, os.LookupEnv)
	if err != nil {
		return "", fmt.Errorf("%s is not valid (or use -dir SPOOL):\n%w", f.config, err)
	}
	return cfg.Queue.Dir, nil
}
