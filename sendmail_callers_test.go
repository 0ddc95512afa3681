package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Real callers of /usr/sbin/sendmail, where installed (.ci/run installs
// php-cli and s-nail): PHP's mail() through sendmail_path, and s-nail
// through its mta variable, both finding the relay by TLSRELAY_SERVER.

// sendmailLink is a link named sendmail to the binary, as at /usr/sbin/sendmail.
func sendmailLink(t *testing.T) string {
	t.Helper()
	link := filepath.Join(t.TempDir(), "sendmail")
	if err := os.Symlink(tlsrelayBinary(t), link); err != nil {
		t.Fatal(err)
	}
	return link
}

func needProgram(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (apt-get install %s; .ci/run installs it): skipping the real-caller test", name, pkg)
	}
	return p
}

func runCaller(t *testing.T, server string, stdin string, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "TLSRELAY_SERVER="+server, "HOME="+t.TempDir())
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
}

func TestPHPMail(t *testing.T) {
	php := needProgram(t, "php", "php-cli")
	r, up := sendmailRelay(t)
	runCaller(t, r.addr, "", php, "-n", "-d", "sendmail_path="+sendmailLink(t)+" -t -i",
		"-r", `exit(mail("php@example.org", "from php", "line\n.\nafter the dot", "From: app@example.com") ? 0 : 1);`)
	m := waitMessages(t, up, 1)[0]
	data := stripReceived(t, m.Data)
	if strings.Join(m.To, ",") != "php@example.org" || !bytes.Contains(data, []byte("Subject: from php\r\n")) ||
		!bytes.Contains(data, []byte("\r\n.\r\nafter the dot")) {
		t.Fatalf("PHP mail() delivered %v %q", m.To, data)
	}
}

func TestSNail(t *testing.T) {
	snail := needProgram(t, "s-nail", "s-nail")
	r, up := sendmailRelay(t)
	runCaller(t, r.addr, "body from s-nail\n", snail, "-:/", "-S", "mta="+sendmailLink(t), "-s", "from s-nail",
		"-c", "cc@example.org", "mailx@example.org")
	m := waitMessages(t, up, 1)[0]
	data := stripReceived(t, m.Data)
	if strings.Join(m.To, ",") != "mailx@example.org,cc@example.org" || !bytes.Contains(data, []byte("Subject: from s-nail\r\n")) ||
		!bytes.Contains(data, []byte("body from s-nail")) {
		t.Fatalf("s-nail delivered %v %q", m.To, data)
	}
}
