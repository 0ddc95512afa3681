package main

import (
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/tlsrelay/tlsrelay/internal/smtptest"
)

// TestSIGHUPReload runs the real binary: a broken config on SIGHUP is
// logged and the running one keeps delivering; a good one with a rotated
// password (from a password_file) takes effect without a restart.
func TestSIGHUPReload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and signals the real binary; skipped with -short")
	}
	bin := buildBinary(t)
	up := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	addr := freeAddr(t)
	config := writeProcessConfig(t, up, addr)
	good, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	p := startProcess(t, bin, config)
	defer p.kill(t, syscall.SIGTERM)

	if err := os.WriteFile(config, append(good, []byte("bogus_key: 1\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "reload failed; the running configuration stays")
	if !strings.Contains(p.logs.String(), "bogus_key: unknown key") {
		t.Fatalf("the reload error does not name the bad key:\n%s", p.logs)
	}
	if _, err := sendRaw(addr, "app@example.com", []string{"a@example.org"}, trickyBody); err != nil {
		t.Fatalf("send after a failed reload: %v", err)
	}
	waitMessages(t, up, 1)

	// Rotate the password: the upstream now wants a new one, which the new
	// config reads from a file.
	const rotated = "rotated-Pw-77-never-logged"
	pwFile := t.TempDir() + "/password"
	if err := os.WriteFile(pwFile, []byte(rotated+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	up.SetUsers(map[string]string{"user": rotated})
	next := strings.Replace(string(good), "password_env: UP_PASSWORD", "password_file: "+pwFile, 1)
	if err := os.WriteFile(config, []byte(next), 0o600); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "msg=reloaded")
	if _, err := sendRaw(addr, "app@example.com", []string{"b@example.org"}, trickyBody); err != nil {
		t.Fatalf("send after the reload: %v", err)
	}
	waitMessages(t, up, 2)
	if strings.Contains(p.logs.String(), rotated) || strings.Contains(p.logs.String(), testPassword) {
		t.Fatal("a password appears in the log")
	}
}
