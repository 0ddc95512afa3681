package deploy_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/tlsrelay/tlsrelay/sendmail"
)

// TestDeploySendmail: the PHP example's sendmail_path is a command line
// tlsrelay's sendmail accepts, with -t and -i, and the app image copies the
// binary from where the relay's image puts it to /usr/sbin/sendmail.
func TestDeploySendmail(t *testing.T) {
	ini, err := os.ReadFile("deploy/sendmail/php-sendmail.ini")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^sendmail_path = "([^"]+)"$`).FindSubmatch(ini)
	if m == nil {
		t.Fatal("php-sendmail.ini: no sendmail_path line")
	}
	argv := strings.Fields(string(m[1]))
	if argv[0] != "/usr/sbin/sendmail" {
		t.Errorf("sendmail_path runs %s, want /usr/sbin/sendmail", argv[0])
	}
	o, err := sendmail.Args(argv[1:])
	if err != nil || !o.ReadRcpts || !o.IgnoreDots {
		t.Errorf("sendmail_path %q: %+v %v; want -t and -i accepted", m[1], o, err)
	}
	app, _ := os.ReadFile("deploy/sendmail/Dockerfile.php")
	relay, _ := os.ReadFile("Dockerfile")
	if !strings.Contains(string(relay), "/usr/local/bin/tlsrelay\n") ||
		!strings.Contains(string(app), "COPY --from=tlsrelay /usr/local/bin/tlsrelay /usr/sbin/sendmail\n") {
		t.Error("Dockerfile.php must copy the relay image's /usr/local/bin/tlsrelay to /usr/sbin/sendmail")
	}
}
