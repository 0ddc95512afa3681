package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/loadgen"
	"github.com/tlsrelay/tlsrelay/internal/smtptest"
)

// tlsrelay bench drives a real relay (STARTTLS+AUTH upstream) and every
// message it counts as sent reaches the upstream.
func TestBenchCommand(t *testing.T) {
	up := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	r := startRelay(t, relayConfig(t, up, "starttls", filepath.Join(t.TempDir(), "spool")))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	args := []string{"-server", r.addr, "-n", "20", "-c", "4", "-size", "4k", "-to", "b@example.net", "-timeout", "20s", "-json"}
	if err := run(ctx, append([]string{"bench"}, args...), &out, &errOut); err != nil {
		t.Fatalf("bench: %v\n%s%s", err, out.String(), errOut.String())
	}
	var res loadgen.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	if res.OK != 20 || res.Failed != 0 || res.MsgPerSec <= 0 || res.Latency.P50 <= 0 ||
		res.Latency.P50 > res.Latency.P99 || res.Latency.P99 > res.Latency.Max {
		t.Errorf("result %+v", res)
	}
	msgs := waitMessages(t, up, 20)
	for _, m := range msgs {
		if n := len(stripReceived(t, m.Data)); n < 4000 || n > 4096 {
			t.Errorf("message of %d bytes, want about 4 KiB", n)
		}
	}
}

// A relay that is not there: every message fails, the command says so and
// returns (bounded), instead of hanging or retrying.
func TestBenchCommandNoServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, []string{"bench", "-server", smtptest.ClosedAddr(t), "-n", "5", "-c", "2"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "5 of 5 messages failed") {
		t.Errorf("err = %v, want 5 of 5 failed\n%s", err, out.String())
	}
}
