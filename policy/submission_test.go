package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// LoadSubmission reads the keys sendmail needs and never the secrets: a
// config whose credentials are unset and unreadable still loads.
func TestLoadSubmission(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.yaml")
	os.WriteFile(path, []byte(`listen: {addr: "127.0.0.1:2600", max_message_bytes: 10MiB}
queue: {dir: /var/spool/x}
providers:
  up: {host: smtp.example.com, auth: {username_env: NOT_SET_ANYWHERE, password_file: /nonexistent/secret}}
sendmail: {from: app@example.com}
`), 0o600)
	s, err := LoadSubmission(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Submission{File: path, ListenAddr: "127.0.0.1:2600", MaxMessageBytes: 10 << 20, QueueDir: "/var/spool/x", From: "app@example.com"}
	if *s != want {
		t.Fatalf("got %+v, want %+v", *s, want)
	}
	os.WriteFile(path, []byte("providers: {up: {host: smtp.example.com}}\n"), 0o600)
	if s, err := LoadSubmission(path); err != nil || s.ListenAddr != DefaultListenAddr || s.MaxMessageBytes != DefaultMaxMessageBytes {
		t.Fatalf("defaults: %+v %v", s, err)
	}
	os.WriteFile(path, []byte("listen:\n  addr: nope\n"), 0o600)
	if _, err := LoadSubmission(path); err == nil || !strings.HasPrefix(err.Error(), path+":2: listen.addr: want host:port") {
		t.Fatalf("bad addr: %v", err)
	}
}
