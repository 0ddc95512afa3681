package main

import (
	"fmt"
	"io"
	"os"

	"github.com/tlsrelay/tlsrelay/policy"
)

// cmdCheck validates a config and prints the effective configuration with
// every secret redacted. Exit status 1 on any error.
func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", stderr)
	path := fs.String("config", "relay.yaml", "config file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := policy.Load(*path, os.LookupEnv)
	if err != nil {
		return fmt.Errorf("%s is not valid:\n%w", *path, err)
	}
	stdout.Write(cfg.Effective())
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	fmt.Fprintf(stderr, "%s: OK\n", *path)
	return nil
}
