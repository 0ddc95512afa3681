package sendmail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/emersion/go-smtp"
)

// Submission is one message for the relay.
type Submission struct {
	Server    string // host:port of the relay's listener
	Wait      time.Duration
	HelloName string
	From      string // "" = the null sender
	Rcpts     []string
	Msg       *Message
	Log       io.Writer // -v: what happens; nil = quiet
}

// The client's own bounds: every wait has one, whatever the relay does.
const (
	commandTimeout = time.Minute     // each reply, the greeting too
	dataTimeout    = 5 * time.Minute // the body and the reply to its end
	retryMax       = time.Second     // the longest pause between two tries to connect
)

// Submit hands the message to the relay and returns nil only once the relay
// answered 250 to its end (then it is on the relay's disk). While the relay
// is not accepting (refused, or 421 at the greeting), it tries again for up
// to Wait. Errors are *Error with the exit status.
func Submit(ctx context.Context, s Submission) error {
	c, err := connect(ctx, s)
	if err != nil {
		return err
	}
	defer c.Close()
	if limit, ok := c.MaxMessageSize(); ok && limit > 0 && len(s.Msg.Data) > limit {
		c.Quit()
		return &Error{ExDataErr, fmt.Sprintf("message is %d bytes, more than the relay at %s accepts (%d bytes, listen.max_message_bytes): not sent",
			len(s.Msg.Data), s.Server, limit)}
	}
	opts := &smtp.MailOptions{Size: int64(len(s.Msg.Data))}
	if ok, _ := c.Extension("SMTPUTF8"); ok && s.Msg.UTF8 {
		opts.UTF8 = true
	}
	if err := c.Mail(s.From, opts); err != nil {
		return replyError(s, "sender <"+s.From+">", err, false)
	}
	for _, r := range s.Rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			c.Reset() // nothing is sent when one recipient is refused
			return replyError(s, "recipient <"+r+">", err, false)
		}
	}
	w, err := c.Data()
	if err != nil {
		return replyError(s, "DATA", err, true)
	}
	if _, err := w.Write(s.Msg.Data); err != nil {
		return replyError(s, "the message", err, true)
	}
	if err := w.Close(); err != nil {
		return replyError(s, "the message", err, true)
	}
	logf(s, "accepted by the relay at %s for %d recipient(s)", s.Server, len(s.Rcpts))
	c.Quit()
	return nil
}

// connect dials the relay and reads its greeting and EHLO, trying again
// while it refuses or is not ready, until Wait has passed.
func connect(ctx context.Context, s Submission) (*smtp.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, s.Wait)
	defer cancel()
	pause := 50 * time.Millisecond
	for {
		c, err := greet(ctx, s)
		if err == nil {
			return c, nil
		}
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code/100 == 5 { // refused for good: waiting changes nothing
			return nil, replyError(s, "the connection", err, false)
		}
		logf(s, "relay at %s not accepting: %v", s.Server, err)
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, &Error{ExTempFail, fmt.Sprintf("cannot submit to the relay at %s within %s (-wait): %v; "+
				"is `tlsrelay serve` running there? (set -server, TLSRELAY_SERVER or -config)", s.Server, s.Wait, err)}
		case <-t.C:
		}
		pause = min(2*pause, retryMax)
	}
}

func greet(ctx context.Context, s Submission) (*smtp.Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.Server)
	if err != nil {
		return nil, err
	}
	c := smtp.NewClient(conn)
	c.CommandTimeout, c.SubmissionTimeout = commandTimeout, dataTimeout
	if err := c.Hello(s.HelloName); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// replyError maps the relay's answer to an exit status: 4xx and a lost
// connection are temporary (75); a 5xx is 65 for the message (its end,
// or a size or content code) and 69 for the sender or a recipient.
func replyError(s Submission, what string, err error, data bool) error {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return &Error{ExTempFail, fmt.Sprintf("relay at %s: %s: %v: try again later", s.Server, what, err)}
	}
	reply := fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
	switch {
	case se.Code/100 == 4:
		return &Error{ExTempFail, fmt.Sprintf("relay at %s deferred %s: %s", s.Server, what, reply)}
	case data || se.Code == 552 || se.EnhancedCode[1] == 6 || se.EnhancedCode == smtp.EnhancedCode{5, 3, 4}:
		return &Error{ExDataErr, fmt.Sprintf("relay at %s refused %s: %s", s.Server, what, reply)}
	}
	return &Error{ExUnavailable, fmt.Sprintf("relay at %s refused %s: %s", s.Server, what, reply)}
}

func logf(s Submission, format string, args ...any) {
	if s.Log != nil {
		fmt.Fprintf(s.Log, "sendmail: "+format+"\n", args...)
	}
}
