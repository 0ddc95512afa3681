package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/policy"
	"github.com/tlsrelay/tlsrelay/sendmail"
)

// defaultSendmailConfig is read by `tlsrelay sendmail` when it exists and
// no -config is given.
const defaultSendmailConfig = "/etc/tlsrelay/relay.yaml"

// cmdSendmail is `tlsrelay sendmail` and the binary run as sendmail: one
// message from stdin to the running relay, over SMTP. Errors are
// *sendmail.Error, whose status main exits with.
func cmdSendmail(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	o, err := sendmail.Args(args)
	if err != nil {
		return err
	}
	conf, err := submissionConfig(o.Config)
	if err != nil {
		return &sendmail.Error{Status: sendmail.ExUsage, Msg: err.Error()}
	}
	if o.ListQueue {
		return cmdQueue(ctx, []string{"list", "-dir", conf.QueueDir}, stdout, stderr)
	}
	host := hostname()
	from := envelopeSender(o, conf)
	msg, err := sendmail.Prepare(stdin, sendmail.Input{
		IgnoreDots: o.IgnoreDots, ReadRcpts: o.ReadRcpts, From: from, FullName: o.FullName,
		Hostname: host, Now: time.Now(), Limit: conf.MaxMessageBytes,
	})
	switch {
	case errors.Is(err, sendmail.ErrTooLarge):
		return &sendmail.Error{Status: sendmail.ExDataErr, Msg: "message is larger than the relay accepts (" +
			strconv.FormatInt(conf.MaxMessageBytes, 10) + " bytes, listen.max_message_bytes): not sent"}
	case err != nil:
		return &sendmail.Error{Status: sendmail.ExNoInput, Msg: "cannot read the message from standard input: " + err.Error()}
	}
	rcpts := recipients(o.Rcpts, msg.Rcpts)
	if len(rcpts) == 0 {
		return &sendmail.Error{Status: sendmail.ExUsage, Msg: "no recipients: give them as arguments, or use -t to read To, Cc and Bcc\n" + sendmail.Usage}
	}
	s := sendmail.Submission{Server: submissionServer(o, conf), Wait: o.Wait, HelloName: host, From: from, Rcpts: rcpts, Msg: msg}
	if o.Verbose {
		s.Log = stderr
	}
	return sendmail.Submit(ctx, s)
}

// submissionConfig reads the relay.yaml keys sendmail needs: from -config,
// else the default file when this user can read it (a user's cron job may
// not: then TLSRELAY_SERVER or the default address), else the defaults.
func submissionConfig(path string) (*policy.Submission, error) {
	if path == "" {
		f, err := os.Open(defaultSendmailConfig)
		if err != nil {
			return &policy.Submission{ListenAddr: policy.DefaultListenAddr, MaxMessageBytes: policy.DefaultMaxMessageBytes,
				QueueDir: policy.DefaultQueueDir}, nil
		}
		f.Close()
		path = defaultSendmailConfig
	}
	return policy.LoadSubmission(path)
}

// submissionServer is -server, else $TLSRELAY_SERVER, else listen.addr.
func submissionServer(o sendmail.Options, conf *policy.Submission) string {
	if o.Server != "" {
		return o.Server
	}
	if s := os.Getenv("TLSRELAY_SERVER"); s != "" {
		return s
	}
	return conf.ListenAddr
}

// envelopeSender is -f/-r, else sendmail.from, else $USER@host.
func envelopeSender(o sendmail.Options, conf *policy.Submission) string {
	switch {
	case o.FromSet:
		return o.From
	case conf.From != "":
		return conf.From
	}
	name := os.Getenv("USER")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	if name == "" {
		name = "nobody"
	}
	return name + "@" + hostname()
}

// recipients joins the arguments (each may be a comma-separated list) and
// those -t found, without repeats.
func recipients(args, fromHeader []string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(a string) {
		if a = strings.TrimSpace(a); a != "" && !seen[strings.ToLower(a)] {
			seen[strings.ToLower(a)] = true
			out = append(out, a)
		}
	}
	for _, a := range args {
		for _, part := range strings.Split(a, ",") {
			add(part)
		}
	}
	for _, a := range fromHeader {
		add(a)
	}
	return out
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}
