package upstream

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/tlsrelay/tlsrelay/policy"
	"github.com/tlsrelay/tlsrelay/queue"
)

// auth authenticates if the provider's policy says so. go-smtp's Auth and
// go-sasl's clients check neither TLS nor what the server offers (G13): both
// are checked here, before the credentials leave.
func (d *delivery) auth() error {
	a := d.p.Auth
	if a.Mechanism == "" {
		return nil
	}
	if d.p.TLS.Mode != policy.TLSNone && !d.secure {
		return &Error{Op: "auth", Err: errors.New("refusing to send credentials without verified TLS")}
	}
	mech := strings.ToUpper(a.Mechanism)
	if !d.sc.SupportsAuth(mech) {
		offered := "no AUTH"
		if ok, mechs := d.sc.Extension("AUTH"); ok {
			offered = "AUTH " + mechs
		}
		return &Error{Op: "auth", Err: fmt.Errorf("provider %s does not offer AUTH %s; it offers %s", d.name, mech, offered)}
	}
	var client sasl.Client
	if mech == sasl.Login {
		client = sasl.NewLoginClient(a.Username, a.Password.Reveal())
	} else {
		client = sasl.NewPlainClient("", a.Username, a.Password.Reveal())
	}
	if err := d.sc.Auth(client); err != nil {
		// Temporary even for 535: a rotated password must not dead-letter
		// the queue (DESIGN.md, Upstream error classes). Said loudly.
		e := setupErr("auth", err)
		d.log.Error("auth failed", "mechanism", mech, "username", a.Username,
			"credentials_from", a.PasswordFrom, "code", e.Code, "error", err)
		return e
	}
	d.log.Debug("upstream authenticated", "mechanism", mech)
	return nil
}

// send runs MAIL, RCPT for each recipient and, if any was accepted, DATA.
func (d *delivery) send() error {
	opts := &smtp.MailOptions{Size: d.msg.Size}
	if err := d.mailOptions(opts); err != nil {
		return err
	}
	if err := d.sc.Mail(d.msg.From, opts); err != nil {
		return replyErr("mail", err)
	}
	accepted, err := d.rcptAll()
	if err != nil || len(accepted) == 0 {
		return err
	}
	reply, err := d.data()
	if err != nil {
		return err
	}
	for _, i := range accepted {
		d.set(i, queue.Result{Reply: reply})
	}
	d.log.Debug("upstream accepted", "recipients", len(accepted), "reply", reply)
	return nil
}

// mailOptions checks the envelope sender and asks for SMTPUTF8 if any
// address needs it.
func (d *delivery) mailOptions(opts *smtp.MailOptions) error {
	if err := checkAddr(d.msg.From); err != nil {
		return &Error{Op: "mail", Perm: true, Err: fmt.Errorf("sender %q: %w", d.msg.From, err)}
	}
	opts.UTF8 = !isASCII(d.msg.From)
	for _, to := range d.rcpts {
		opts.UTF8 = opts.UTF8 || !isASCII(to)
	}
	if ok, _ := d.sc.Extension("SMTPUTF8"); opts.UTF8 && !ok {
		// go-smtp would return a plain error; it is permanent (security.md a2).
		return &Error{Op: "mail", Perm: true, Err: fmt.Errorf(
			"provider %s does not support SMTPUTF8, needed for a non-ASCII address", d.name)}
	}
	return nil
}

// rcptAll returns the indexes of the accepted recipients. A refused one gets
// its outcome at once; a failure without a reply ends the session.
func (d *delivery) rcptAll() ([]int, error) {
	var accepted []int
	for i, to := range d.rcpts {
		if err := checkAddr(to); err != nil {
			d.set(i, queue.Result{Err: &Error{Op: "rcpt", Perm: true, Err: fmt.Errorf("recipient %q: %w", to, err)}})
			continue
		}
		if err := d.sc.Rcpt(to, nil); err != nil {
			e := replyErr("rcpt", err)
			if e.Code == 0 {
				return nil, e // every recipient still pending gets it
			}
			d.set(i, queue.Result{Err: e})
			continue
		}
		accepted = append(accepted, i)
	}
	return accepted, nil
}

// data sends the body and returns the server's final reply.
func (d *delivery) data() (string, error) {
	w, err := d.sc.Data()
	if err != nil {
		return "", replyErr("data", err)
	}
	if _, err := io.Copy(w, d.msg.Body); err != nil {
		// No final dot is sent: the server cannot take a truncated message.
		return "", &Error{Op: "data", Err: fmt.Errorf("sending the body: %w", err)}
	}
	d.conn.timeout = d.c.dataTimeout() // for the final dot and its reply only
	resp, err := w.CloseWithResponse()
	d.conn.timeout = d.c.timeout()
	if err != nil {
		return "", replyErr("data", err)
	}
	return "250 " + oneLine(resp.StatusText), nil
}

// checkAddr refuses what go-smtp would paste raw into "MAIL FROM:<%s>" or
// "RCPT TO:<%s>" and so break the command: go-smtp refuses only CR and LF
// (G6). Control characters and angle brackets are never in a valid path.
func checkAddr(a string) error {
	for _, r := range a {
		if r < 0x20 || r == 0x7f || r == '<' || r == '>' {
			return fmt.Errorf("invalid character %q in address", r)
		}
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
