package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/smtptest"
)

// The shipped relay.yaml passes check with its env vars set, names a
// missing variable, and never prints a secret.
func TestCheckShippedConfig(t *testing.T) {
	const secret = "s3cret-value-for-check"
	for _, k := range []string{"SES_USER", "SES_PASSWORD", "QQ_USER", "QQ_AUTH_CODE"} {
		t.Setenv(k, secret)
	}
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"check", "-config", "relay.yaml"}, &out, &errb); err != nil {
		t.Fatalf("check relay.yaml: %v\n%s", err, errb.String())
	}
	if strings.Contains(out.String()+errb.String(), secret) {
		t.Fatalf("check printed a secret:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "QQ_AUTH_CODE") {
		t.Fatalf("effective config does not say where the password comes from:\n%s", out.String())
	}

	unsetEnv(t, "QQ_AUTH_CODE")
	out.Reset()
	errb.Reset()
	err := run(context.Background(), []string{"check", "-config", "relay.yaml"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "QQ_AUTH_CODE") || !strings.Contains(err.Error(), "relay.yaml:") {
		t.Fatalf("check with QQ_AUTH_CODE unset = %v, want an error naming relay.yaml:LINE and the variable", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("error printed a secret: %v", err)
	}
}

func TestDemoOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb smtptest.LogBuffer
	if err := run(ctx, []string{"demo", "-once"}, &out, &errb); err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nlog:\n%s", err, out.String(), errb.String())
	}
	for _, want := range []string{"queued as ", "upstream: delivered", "TLS 1.3", "Hello through tlsrelay"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"frobnicate"}, &out, &errb); err == nil ||
		!strings.Contains(errb.String(), `unknown command "frobnicate"`) {
		t.Fatalf("err=%v stderr=%q", err, errb.String())
	}
}
