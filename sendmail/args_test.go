package sendmail

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestArgs(t *testing.T) {
	cases := []struct {
		args []string
		want Options
	}{
		{[]string{"-t", "-i"}, Options{ReadRcpts: true, IgnoreDots: true}},
		{[]string{"-ti"}, Options{ReadRcpts: true, IgnoreDots: true}},
		{[]string{"-oi", "-oem", "-odb", "-om", "-bm", "-v", "-B", "8BITMIME", "-N", "never", "a@x.example"},
			Options{IgnoreDots: true, Verbose: true, Rcpts: []string{"a@x.example"}}},
		{[]string{"-i", "-FCronDaemon", "-oem", "root"}, Options{IgnoreDots: true, FullName: "CronDaemon", Rcpts: []string{"root"}}},
		{[]string{"-f", "app@x.example", "b@y.example", "c@y.example"},
			Options{From: "app@x.example", FromSet: true, Rcpts: []string{"b@y.example", "c@y.example"}}},
		{[]string{"-fapp@x.example"}, Options{From: "app@x.example", FromSet: true}},
		{[]string{"-r", "<app@x.example>"}, Options{From: "app@x.example", FromSet: true}},
		{[]string{"-f", "<>"}, Options{From: "", FromSet: true}},
		{[]string{"-F", "Nagios Alerts", "-t"}, Options{FullName: "Nagios Alerts", ReadRcpts: true}},
		{[]string{"-bp"}, Options{ListQueue: true}},
		{[]string{"-server", "127.0.0.1:2600", "-config=/x.yaml", "-wait", "2s", "--", "-odd@x.example"},
			Options{Server: "127.0.0.1:2600", Config: "/x.yaml", Wait: 2 * time.Second, Rcpts: []string{"-odd@x.example"}}},
	}
	for _, c := range cases {
		got, err := Args(c.args)
		if c.want.Wait == 0 {
			c.want.Wait = DefaultWait
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("Args(%q) = %+v, %v\nwant %+v", c.args, got, err, c.want)
		}
	}
}

func TestArgsErrors(t *testing.T) {
	for args, want := range map[string]string{
		"-bs":        "mode -bs is not supported",
		"-bd":        "mode -bd is not supported",
		"-q":         "unknown option -q",
		"-t -x":      "unknown option -x",
		"-f":         "option -f needs a value",
		"-wait soon": "-wait: want a duration",
		"-o":         "option -o needs a letter",
	} {
		_, err := Args(strings.Fields(args))
		var e *Error
		if !errors.As(err, &e) || e.Status != ExUsage || !strings.Contains(e.Msg, want) {
			t.Errorf("Args(%q) = %v, want exit 64 with %q", args, err, want)
		}
	}
}
