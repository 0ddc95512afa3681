// Package sendmail is the /usr/sbin/sendmail interface of tlsrelay: it
// reads the sendmail family's command line (Args), prepares the message on
// standard input as Postfix's pickup would (Prepare), and submits it to the
// running relay over SMTP (Submit), so that the relay's checks, limits and
// durability apply unchanged. Failures carry the sysexits.h status that
// callers such as PHP's mail(), cron and mailx expect (Error).
package sendmail

import (
	"fmt"
	"strings"
	"time"
)

// Options is a parsed sendmail command line.
type Options struct {
	From       string // envelope sender from -f or -r; "" with FromSet = the null sender
	FromSet    bool
	FullName   string // -F: the display name of an added From:
	ReadRcpts  bool   // -t: recipients from To, Cc and Bcc too
	IgnoreDots bool   // -i, -oi: a line holding a single dot does not end the message
	Verbose    bool   // -v: say what happens on stderr
	ListQueue  bool   // -bp (or run as mailq)
	Rcpts      []string

	// tlsrelay's own flags.
	Server string        // -server ADDR
	Config string        // -config FILE
	Wait   time.Duration // -wait D: how long to keep trying while the relay is not accepting
}

// DefaultWait is -wait when not given.
const DefaultWait = 15 * time.Second

// Usage is the one-line usage printed with a command-line error.
const Usage = "usage: sendmail [-t] [-i] [-f sender] [-F name] [-server ADDR] [-config FILE] [-wait 15s] [recipient ...]"

// Flags that take a value, and those accepted and ignored: they tune
// sendmail's own delivery, which the relay does instead (as msmtp and
// Postfix's sendmail do).
const (
	valueFlags   = "frFBNRVXCLhOdp" // -fADDR or -f ADDR ...
	ignoredFlags = "mnUGv"          // booleans; -v also sets Verbose
)

// Args parses a sendmail command line (without the program name). An error
// is a *Error with status ExUsage.
func Args(args []string) (Options, error) {
	o := Options{Wait: DefaultWait}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			o.Rcpts = append(o.Rcpts, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			o.Rcpts = append(o.Rcpts, a)
			continue
		}
		next := func() (string, error) {
			if i+1 >= len(args) {
				return "", usageError("option %s needs a value", a)
			}
			i++
			return args[i], nil
		}
		if used, err := o.long(a, next); used || err != nil {
			if err != nil {
				return o, err
			}
			continue
		}
		if err := o.short(a[1:], next); err != nil {
			return o, err
		}
	}
	return o, nil
}

// long reads tlsrelay's own flags, spelled whole: -server, -config, -wait.
func (o *Options) long(a string, next func() (string, error)) (used bool, err error) {
	name, val, hasVal := strings.Cut(strings.TrimPrefix(a, "-"), "=")
	switch name {
	case "server", "config", "wait":
	default:
		return false, nil
	}
	if !hasVal {
		if val, err = next(); err != nil {
			return true, err
		}
	}
	switch name {
	case "server":
		o.Server = val
	case "config":
		o.Config = val
	case "wait":
		d, err := time.ParseDuration(val)
		if err != nil || d < 0 {
			return true, usageError("-wait: want a duration such as 15s, got %q", val)
		}
		o.Wait = d
	}
	return true, nil
}

// short reads one cluster of single-letter options, getopt style: "-ti",
// "-fme@example.com", "-oi", "-bp".
func (o *Options) short(s string, next func() (string, error)) error {
	for j := 0; j < len(s); j++ {
		c := s[j]
		switch {
		case c == 't':
			o.ReadRcpts = true
		case c == 'i':
			o.IgnoreDots = true
		case strings.IndexByte(ignoredFlags, c) >= 0:
			o.Verbose = o.Verbose || c == 'v'
		case c == 'o':
			return o.option(s[j+1:])
		case c == 'b':
			return o.mode(s[j+1:])
		case strings.IndexByte(valueFlags, c) >= 0:
			v := s[j+1:]
			if v == "" {
				var err error
				if v, err = next(); err != nil {
					return err
				}
			}
			o.value(c, v)
			return nil
		default:
			return usageError("unknown option -%c", c)
		}
	}
	return nil
}

// value stores the value of -f, -r and -F; the others are ignored.
func (o *Options) value(c byte, v string) {
	switch c {
	case 'f', 'r':
		v = strings.TrimSpace(v)
		if v == "<>" {
			v = ""
		}
		o.From, o.FromSet = strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">"), true
	case 'F':
		o.FullName = v
	}
}

// option reads -oX: -oi ignores dots; the error (-oem, -oee ...) and
// delivery (-odb, -odi ...) modes and the rest are accepted and ignored.
func (o *Options) option(s string) error {
	if s == "" {
		return usageError("option -o needs a letter, as in -oi")
	}
	if s == "i" {
		o.IgnoreDots = true
	}
	return nil
}

// mode reads -bX: -bm (deliver, the default) and -bp (list the queue);
// the other modes are not supported.
func (o *Options) mode(s string) error {
	switch s {
	case "m":
		return nil
	case "p":
		o.ListQueue = true
		return nil
	}
	return &Error{Status: ExUsage, Msg: fmt.Sprintf("mode -b%s is not supported: tlsrelay's sendmail submits messages (-bm) and lists the queue (-bp)", s)}
}

func usageError(format string, args ...any) error {
	return &Error{Status: ExUsage, Msg: fmt.Sprintf(format, args...) + "\n" + Usage}
}
