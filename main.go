// Command tlsrelay is a local SMTP relay for legacy programs: it accepts
// plain SMTP on loopback, writes each message durably to a spool, answers
// 250, and delivers it upstream over strict, per-provider TLS with AUTH,
// retrying and failing over until it is delivered or expires.
//
// The root package only dispatches: main.go picks the command, and each
// cmd_<name>.go parses that command's flags and calls a package. The relay
// itself is package daemon, which wires policy (config), relay (inbound
// SMTP), queue (spool and scheduler), upstream (outbound delivery) and admin
// (operator API); docs/design.md, "Packages and imports", says what each may
// import.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/tlsrelay/tlsrelay/sendmail"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

const usage = `tlsrelay: a local SMTP relay that delivers over strict TLS

Usage:
  tlsrelay demo    [-once]                     relay + built-in strict-TLS upstream; sends one message through
  tlsrelay serve   -config relay.yaml          run the relay
  tlsrelay check   -config relay.yaml          validate the config and print it (secrets redacted)
  tlsrelay probe   [-config relay.yaml] [-auth] [-json] PROVIDER | HOST:PORT   connect as the policy says; on failure, name the fix
  tlsrelay send    [-server ADDR] [-from A] -to A   send a test message to a relay
  tlsrelay bench   [-server ADDR] [-n 2000] [-c 20] [-size 4k]   load a relay; msg/s and end-of-DATA->250 latency
  tlsrelay queue   list|show|retry|delete|dead|requeue|flush   inspect and act on the spool
  tlsrelay health  [-config relay.yaml | -dir SPOOL]   exit 0 if the running relay is ready (HEALTHCHECK)
  tlsrelay sendmail [-t] [-i] [-f SENDER] [RCPT ...]   submit a message from stdin (also run as sendmail, mailq)
  tlsrelay version

Run "tlsrelay COMMAND -h" for a command's flags.
`

// errUsage means the command line was wrong; the message was already printed.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, argsByName(os.Args), os.Stdout, os.Stderr)
	stop()
	var se *sendmail.Error
	switch {
	case err == nil:
	case errors.As(err, &se): // sendmail's callers test sysexits.h statuses
		fmt.Fprintln(os.Stderr, "sendmail:", se.Msg)
		os.Exit(se.Status)
	default:
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "tlsrelay:", err)
		}
		os.Exit(1)
	}
}

// argsByName turns the command line of the binary run under another name
// into tlsrelay's: "sendmail ARGS" (a link at /usr/sbin/sendmail) is
// "tlsrelay sendmail ARGS", and "mailq" is "tlsrelay sendmail -bp".
func argsByName(argv []string) []string {
	switch filepath.Base(argv[0]) {
	case "sendmail":
		return append([]string{"sendmail"}, argv[1:]...)
	case "mailq":
		return append([]string{"sendmail", "-bp"}, argv[1:]...)
	}
	return argv[1:]
}

// run executes one command; it is main without the process around it, so
// tests can call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(ctx, args, stderr)
	case "check":
		return cmdCheck(args, stdout, stderr)
	case "probe":
		return cmdProbe(ctx, args, stdout, stderr)
	case "send":
		return cmdSend(ctx, args, stdout, stderr)
	case "bench":
		return cmdBench(ctx, args, stdout, stderr)
	case "queue":
		return cmdQueue(ctx, args, stdout, stderr)
	case "health":
		return cmdHealth(ctx, args, stdout, stderr)
	case "sendmail":
		return cmdSendmail(ctx, args, os.Stdin, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, args, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "tlsrelay %s (%s, %s/%s)\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "tlsrelay: unknown command %q\n\n%s", cmd, usage)
		return errUsage
	}
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}
