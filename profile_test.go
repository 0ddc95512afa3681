package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/smtptest"
)

// serve -cpuprofile and -memprofile write pprof files (gzip) when serve
// stops; without the flags nothing is written.
func TestServeProfiles(t *testing.T) {
	dir := t.TempDir()
	host, port, _ := net.SplitHostPort(smtptest.ClosedAddr(t))
	spool := filepath.Join(dir, "spool")
	config := filepath.Join(dir, "relay.yaml")
	yaml := fmt.Sprintf("listen: {addr: 127.0.0.1:0}\nqueue: {dir: %s}\n"+
		"providers:\n  p: {host: %s, port: %s, tls: {mode: none}}\ndefault: [p]\n", spool, host, port)
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cpu, mem := filepath.Join(dir, "cpu.prof"), filepath.Join(dir, "mem.prof")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &watchWriter{want: []byte("msg=listening"), seen: make(chan struct{})}
	go func() {
		done <- run(ctx, []string{"serve", "-config", config, "-cpuprofile", cpu, "-memprofile", mem}, logs, logs)
	}()
	select {
	case <-logs.seen:
	case err := <-done:
		t.Fatalf("serve returned before listening: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not listen within 10s")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop within 10s")
	}
	for _, p := range []string{cpu, mem} {
		b, err := os.ReadFile(p)
		if err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
			t.Errorf("%s: %v, %d bytes, want a gzipped pprof profile", filepath.Base(p), err, len(b))
		}
	}
}

// watchWriter closes seen once want has been written (within one Write).
type watchWriter struct {
	mu   sync.Mutex
	want []byte
	seen chan struct{}
	done bool
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done && bytes.Contains(p, w.want) {
		w.done = true
		close(w.seen)
	}
	return len(p), nil
}
