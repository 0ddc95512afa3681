package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// sendOptions describe one test message.
type sendOptions struct {
	server, from, subject, body, helo string
	to                                []string
	timeout                           time.Duration
}

// cmdSend sends a test message to a relay, as a legacy app would: plain
// SMTP, no TLS, no AUTH.
func cmdSend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("send", stderr)
	o := sendOptions{}
	fs.StringVar(&o.server, "server", "127.0.0.1:2525", "relay address")
	fs.StringVar(&o.from, "from", "tlsrelay-test@localhost", "envelope sender and From header")
	to := fs.String("to", "", "recipient address (several: comma-separated)")
	fs.StringVar(&o.subject, "subject", "tlsrelay test message", "Subject header")
	fs.StringVar(&o.body, "body", "This is a test message sent by tlsrelay send.", "message text")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "give up after this long")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	for _, a := range strings.Split(*to, ",") {
		if a = strings.TrimSpace(a); a != "" {
			o.to = append(o.to, a)
		}
	}
	if len(o.to) == 0 {
		fmt.Fprintln(stderr, "tlsrelay send: -to is required, e.g. -to you@example.com")
		return errUsage
	}
	reply, err := sendMessage(ctx, o, testMessage(o))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: 250 %s\n", o.server, reply)
	return nil
}

// sendMessage delivers msg (CRLF lines, not dot-stuffed) over plain SMTP
// and returns the server's reply to the end of DATA ("queued as <id>").
func sendMessage(ctx context.Context, o sendOptions, msg string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", o.server)
	if err != nil {
		return "", fmt.Errorf("connect to the relay: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c := smtp.NewClient(conn)
	defer c.Close()
	helo := o.helo
	if helo == "" {
		helo, _ = os.Hostname()
	}
	if helo == "" {
		helo = "localhost"
	}
	if err := c.Hello(helo); err != nil {
		return "", fmt.Errorf("relay refused EHLO: %w", err)
	}
	if err := c.Mail(o.from, nil); err != nil {
		return "", fmt.Errorf("relay refused MAIL FROM:<%s>: %w", o.from, err)
	}
	for _, rcpt := range o.to {
		if err := c.Rcpt(rcpt, nil); err != nil {
			return "", fmt.Errorf("relay refused RCPT TO:<%s>: %w", rcpt, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", fmt.Errorf("relay refused DATA: %w", err)
	}
	if _, err := io.WriteString(w, msg); err != nil {
		return "", fmt.Errorf("send message: %w", err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", fmt.Errorf("relay refused the message: %w", err)
	}
	c.Quit()
	return resp.StatusText, nil
}

// testMessage builds a small RFC 5322 message with CRLF line endings.
func testMessage(o sendOptions) string {
	var id [8]byte
	rand.Read(id[:])
	host := "localhost"
	if i := strings.LastIndexByte(o.from, '@'); i >= 0 {
		host = o.from[i+1:]
	}
	lines := []string{
		"From: <" + o.from + ">",
		"To: <" + strings.Join(o.to, ">, <") + ">",
		"Subject: " + o.subject,
		"Date: " + time.Now().Format(time.RFC1123Z),
		"Message-ID: <" + hex.EncodeToString(id[:]) + "@" + host + ">",
		"MIME-Version: 1.0",
		"Content-Type: text/plain; charset=utf-8",
		"",
		o.body,
	}
	return strings.Join(lines, "\r\n") + "\r\n"
}
