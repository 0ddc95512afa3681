package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/tlsrelay/tlsrelay/daemon"
	"github.com/tlsrelay/tlsrelay/internal/mailsink"
	"github.com/tlsrelay/tlsrelay/policy"
)

// cmdDemo runs the whole path on loopback: a relay, a strict-TLS upstream
// with AUTH, and one message from app to upstream.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	once := fs.Bool("once", false, "exit after the first message is delivered")
	dir := fs.String("dir", "", "keep the spool and CA here (default: a temporary directory, removed at exit)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	work, cleanup, err := demoDir(*dir)
	if err != nil {
		return err
	}
	defer cleanup()

	var pw [12]byte
	rand.Read(pw[:])
	env := demoEnv{"DEMO_USER": "demo", "DEMO_PASSWORD": hex.EncodeToString(pw[:])}
	up, err := mailsink.New(mailsink.Options{
		Mode: mailsink.StartTLS, Users: map[string]string{env["DEMO_USER"]: env["DEMO_PASSWORD"]},
		AuthRequired: true, Domain: "upstream.demo",
	})
	if err != nil {
		return fmt.Errorf("start the demo upstream: %w", err)
	}
	defer up.Close()
	caFile := filepath.Join(work, "demo-ca.pem")
	if err := os.WriteFile(caFile, up.CACertPEM(), 0o600); err != nil {
		return err
	}
	src := fmt.Sprintf(demoConfig, filepath.Join(work, "spool"), up.Port(), caFile)
	cfg, err := policy.Parse("demo.yaml", []byte(src), env.lookup)
	if err != nil {
		return fmt.Errorf("demo config: %w", err)
	}
	return runDemo(ctx, cfg, up, *once, stdout, stderr)
}

// demoDir returns the demo's working directory and how to clean it up.
func demoDir(dir string) (string, func(), error) {
	if dir != "" {
		return dir, func() {}, os.MkdirAll(dir, 0o700)
	}
	tmp, err := os.MkdirTemp("", "tlsrelay-demo-")
	if err != nil {
		return "", nil, err
	}
	return tmp, func() { os.RemoveAll(tmp) }, nil
}

func runDemo(ctx context.Context, cfg *policy.Config, up *mailsink.Server, once bool, stdout, stderr io.Writer) error {
	a, err := daemon.New(cfg, daemon.NewLogger(cfg.Log, stderr))
	if err != nil {
		return err
	}
	l, err := daemon.Listen(ctx, cfg.Listen.Addr)
	if err != nil {
		a.Close()
		return err
	}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- a.Run(rctx, l) }()
	relayAddr := l.Addr().String()
	fmt.Fprintf(stdout, "relay:    listening on %s (plain SMTP, as a legacy app expects)\n", relayAddr)
	fmt.Fprintf(stdout, "upstream: %s (STARTTLS required, certificate from the demo CA, AUTH PLAIN)\n", up.Addr())

	err = demoSend(ctx, relayAddr, up, stdout)
	if err == nil && !once {
		fmt.Fprintf(stdout, "\nThe relay keeps running. Send more with:\n  go run . send -server %s -to someone@example.com\nPress Ctrl-C to stop.\n", relayAddr)
		demoWatch(rctx, up, stdout)
	}
	stop()
	if rerr := <-done; err == nil {
		err = rerr
	}
	return err
}

// demoSend sends one message through the relay and waits for the upstream
// to receive it.
func demoSend(ctx context.Context, relayAddr string, up *mailsink.Server, stdout io.Writer) error {
	o := sendOptions{
		server: relayAddr, from: "app@legacy.example", to: []string{"someone@example.com"},
		subject: "Hello through tlsrelay", body: "Sent in plain SMTP, delivered over verified TLS.",
		helo: "legacy-app", timeout: 10 * time.Second,
	}
	reply, err := sendMessage(ctx, o, testMessage(o))
	if err != nil {
		return fmt.Errorf("send through the relay: %w", err)
	}
	fmt.Fprintf(stdout, "app:      sent a message; the relay answered %q\n", reply)
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	msgs, err := up.WaitMessages(wctx, 1)
	if err != nil {
		return errors.New("the upstream did not receive the message within 15s; see the log above")
	}
	printDelivered(stdout, msgs[0])
	return nil
}

// demoWatch prints each further message the upstream receives until ctx ends.
func demoWatch(ctx context.Context, up *mailsink.Server, stdout io.Writer) {
	for n := 2; ; n++ {
		msgs, err := up.WaitMessages(ctx, n)
		if err != nil {
			return
		}
		printDelivered(stdout, msgs[n-1])
	}
}

func printDelivered(w io.Writer, m mailsink.Message) {
	proto := "plaintext"
	if m.TLS != nil {
		proto = tls.VersionName(m.TLS.Version) + ", " + tls.CipherSuiteName(m.TLS.CipherSuite)
	}
	fmt.Fprintf(w, "upstream: delivered from <%s> to %v over %s, AUTH as %q\n", m.From, m.To, proto, m.AuthUser)
	fmt.Fprintf(w, "---- message as the upstream received it ----\n%s---- end ----\n", m.Data)
}
