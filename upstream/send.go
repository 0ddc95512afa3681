package upstream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/tlsrelay/tlsrelay/delivery"
)

// send runs MAIL, RCPT for each recipient and, if any was accepted, DATA.
func (d *attempt) send() error {
	if d.out == nil {
		from, body, size, err := d.envelope()
		if err != nil {
			return err
		}
		eightBit, _, err := preScan(body)
		if err != nil {
			return &Error{Op: "data", Perm: errors.Is(err, errCorruptBody), Err: err}
		}
		d.out = &outgoing{from, body, size, eightBit}
	}
	from, body := d.out.from, d.out.body
	opts := &smtp.MailOptions{Size: d.out.size}
	if err := d.mailOptions(opts, from); err != nil {
		return err
	}
	if err := d.bodyType(opts); err != nil {
		return err
	}
	d.msgs++ // counts against max_messages_per_connection, accepted or not
	pipelined := d.pipeline(from, opts, d.sendable())
	if pipelined {
		defer d.pipelineDone()
	}
	d.conn.expect("reply to MAIL FROM", d.t.Command)
	if err := d.smtp.check(d.sc.Mail(from, opts)); err != nil {
		return replyErr("mail", err)
	}
	d.mailOK = true
	accepted, err := d.rcptAll()
	if err == nil && len(accepted) == 0 && pipelined {
		d.refusedData()
	}
	if err != nil || len(accepted) == 0 {
		return err
	}
	reply, err := d.data(body)
	if err != nil {
		return err
	}
	for _, i := range accepted {
		d.set(i, delivery.Result{Reply: reply})
	}
	d.log.Debug("upstream accepted", "recipients", len(accepted), "reply", reply)
	return nil
}

// outgoing is what a delivery sends: computed once, so that a retry on a
// new connection (after a reused one failed before MAIL) sends the same,
// from a body that is still unread.
type outgoing struct {
	from     string
	body     io.Reader
	size     int64
	eightBit bool // the body has octets >= 0x80 (found by preScan)
}

// bodyType declares an 8-bit body with BODY=8BITMIME, and refuses to send
// one to a provider that does not offer 8BITMIME: the relay does not
// down-convert, and raw 8-bit octets to a 7-bit server are a protocol
// violation (security.md T10). Permanent: retrying cannot help.
func (d *attempt) bodyType(opts *smtp.MailOptions) error {
	if !d.out.eightBit {
		return nil
	}
	if ok, _ := d.sc.Extension("8BITMIME"); !ok {
		return &Error{Op: "mail", Perm: true, Err: fmt.Errorf(
			"5.6.3 conversion required but not supported: the message has 8-bit content "+
				"and provider %s does not offer 8BITMIME", d.name)}
	}
	opts.Body = smtp.Body8BitMIME
	return nil
}

// mailOptions checks the envelope sender and asks for SMTPUTF8 if any
// address needs it.
func (d *attempt) mailOptions(opts *smtp.MailOptions, from string) error {
	if err := checkAddr(from); err != nil {
		return &Error{Op: "mail", Perm: true, Err: fmt.Errorf("sender %q: %w", from, err)}
	}
	opts.UTF8 = !isASCII(from)
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
func (d *attempt) rcptAll() ([]int, error) {
	var accepted []int
	for i, to := range d.rcpts {
		if err := checkAddr(to); err != nil {
			d.set(i, delivery.Result{Err: &Error{Op: "rcpt", Perm: true, Err: fmt.Errorf("recipient %q: %w", to, err)}})
			continue
		}
		d.conn.expect("reply to RCPT TO", d.t.Command)
		if err := d.smtp.check(d.sc.Rcpt(to, nil)); err != nil {
			e := replyErr("rcpt", err)
			if e.Code == 0 {
				return nil, e // every recipient still pending gets it
			}
			d.set(i, delivery.Result{Err: e})
			continue
		}
		accepted = append(accepted, i)
	}
	return accepted, nil
}

// data sends the body and returns the server's final reply. Each write of
// the body has its own progress deadline; the reply to its end, a whole one
// of its own (RFC 5321 4.5.3.2.6), from the write of the final dot.
func (d *attempt) data(body io.Reader) (string, error) {
	d.conn.expect("reply to DATA", d.t.Command)
	w, err := d.sc.Data()
	if err = d.smtp.check(err); err != nil {
		return "", replyErr("data", err)
	}
	// Not through w, go-smtp's byte-at-a-time dot writer (dotstuff.go).
	// CopyBuffer: io.Copy would allocate 32 KiB per message.
	bp := scanBufs.Get().(*[]byte)
	_, err = io.CopyBuffer(newDotStuffer(d.smtp), &checkedBody{r: body}, *bp)
	scanBufs.Put(bp)
	if err != nil {
		// No final dot is sent: the server cannot take a truncated
		// message, and the session, still in DATA, is never reused.
		d.broken = true
		return "", &Error{Op: "data", Perm: errors.Is(err, errCorruptBody), Err: fmt.Errorf("sending the body: %w", err)}
	}
	d.conn.expect("reply to end of data", d.t.DataEnd)
	resp, err := w.CloseWithResponse()
	if err = d.smtp.check(err); err != nil {
		return "", replyErr("data", err)
	}
	d.txnDone = true
	return "250 " + cleanText(oneLine(resp.StatusText)), nil
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

// maxRewriteHeader bounds the header block read to rewrite the sender: the
// body is streamed, only the header block is held in memory.
const maxRewriteHeader = 64 << 10

// envelope returns the sender, body and size to send: the message as
// spooled, or with the provider's rewrite_sender the new envelope sender and
// header block (rewriteFrom). The spool keeps the original. The null sender
// (a bounce) is never rewritten. A header block larger than
// maxRewriteHeader, or one without an end, is sent unchanged (logged); the
// envelope sender is rewritten all the same.
func (d *attempt) envelope() (from string, body io.Reader, size int64, err error) {
	from, body, size = d.msg.From, d.msg.Body, d.msg.Size
	addr := d.p.RewriteSender
	if addr == "" || from == "" {
		return from, body, size, nil
	}
	hdr, rest, err := readHeader(body, maxRewriteHeader)
	if err != nil {
		return "", nil, 0, &Error{Op: "data", Err: fmt.Errorf("reading the spooled message: %w", err)}
	}
	if hdr == nil {
		d.log.Warn("header block larger than 64KiB or without an end: From: sent unchanged, only the envelope sender rewritten",
			"rewrite_sender", addr)
		return addr, rest, size, nil
	}
	out := rewriteFrom(hdr, addr)
	d.log.Debug("sender rewritten", "from", from, "rewrite_sender", addr)
	return addr, io.MultiReader(bytes.NewReader(out), rest), size + int64(len(out)-len(hdr)), nil
}

var crlf2 = []byte("\r\n\r\n")

// readHeader reads r up to the end of its header block, at most limit bytes.
// It returns the header block (its fields, each line ending in CRLF, without
// the empty line), and the rest of the message. hdr is nil, and rest the
// whole message, when the block is longer than limit or has no end.
func readHeader(r io.Reader, limit int) (hdr []byte, rest io.Reader, err error) {
	buf := make([]byte, 0, 8<<10)
	for eof := false; ; {
		if bytes.HasPrefix(buf, []byte("\r\n")) {
			return buf[:0], io.MultiReader(bytes.NewReader(buf), r), nil // no header fields
		}
		i := bytes.Index(buf, crlf2)
		switch {
		case i >= 0 && i+2 <= limit:
			return buf[:i+2], io.MultiReader(bytes.NewReader(buf[i+2:]), r), nil
		case i >= 0 || len(buf) > limit:
			return nil, io.MultiReader(bytes.NewReader(buf), r), nil
		case eof && bytes.HasSuffix(buf, []byte("\r\n")):
			return buf, bytes.NewReader(nil), nil // header fields only, no body
		case eof:
			return nil, bytes.NewReader(buf), nil
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, rerr := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if rerr == io.EOF {
			eof = true
		} else if rerr != nil {
			return nil, nil, rerr
		}
	}
}

// rewriteFrom returns the header block hdr with each From: field's address
// replaced by addr, keeping its display name, and, if hdr has no Reply-To:,
// a Reply-To: with the original From: value (folding and all) after the
// first From:. Other fields are kept byte for byte.
func rewriteFrom(hdr []byte, addr string) []byte {
	fields := splitFields(hdr)
	hasReplyTo := false
	for _, f := range fields {
		if name, _, ok := fieldNameValue(f); ok && strings.EqualFold(name, "Reply-To") {
			hasReplyTo = true
		}
	}
	var out bytes.Buffer
	out.Grow(len(hdr) + 2*len(addr) + 64)
	for _, f := range fields {
		name, value, ok := fieldNameValue(f)
		if !ok || !strings.EqualFold(name, "From") {
			out.Write(f)
			continue
		}
		out.WriteString("From: " + newFrom(value, addr) + "\r\n")
		if !hasReplyTo {
			out.WriteString("Reply-To:" + value)
			hasReplyTo = true
		}
	}
	return out.Bytes()
}

// splitFields splits a header block into fields, each with its folded
// continuation lines and its final CRLF.
func splitFields(hdr []byte) [][]byte {
	var fields [][]byte
	for len(hdr) > 0 {
		end := 0
		for {
			i := bytes.Index(hdr[end:], []byte("\r\n"))
			if i < 0 {
				end = len(hdr)
				break
			}
			end += i + 2
			if end >= len(hdr) || (hdr[end] != ' ' && hdr[end] != '\t') {
				break
			}
		}
		fields = append(fields, hdr[:end])
		hdr = hdr[end:]
	}
	return fields
}

// fieldNameValue splits a field into its name and raw value (everything
// after the colon: folding and the final CRLF kept).
func fieldNameValue(f []byte) (name, value string, ok bool) {
	i := bytes.IndexByte(f, ':')
	if i <= 0 {
		return "", "", false
	}
	name = strings.TrimRight(string(f[:i]), " \t")
	if name == "" || strings.ContainsAny(name, " \t\r\n") {
		return "", "", false
	}
	return name, string(f[i+1:]), true
}

// newFrom returns the From: value for addr that keeps the display name of
// the raw value v: the text before its angle-addr as written (encoded words
// and folding kept), or the name in a comment after a bare address
// ("a@b (Name)"), else addr alone.
func newFrom(v, addr string) string {
	if i := angleStart(v); i >= 0 {
		if display := strings.TrimSpace(v[:i]); display != "" {
			return display + " <" + addr + ">"
		}
		return "<" + addr + ">"
	}
	unfolded := strings.NewReplacer("\r\n", "").Replace(v)
	if a, err := mail.ParseAddress(unfolded); err == nil && a.Name != "" {
		return (&mail.Address{Name: a.Name, Address: addr}).String()
	}
	return addr
}

// angleStart returns the index of the first '<' in v outside quoted strings
// and comments, or -1.
func angleStart(v string) int {
	quoted, depth := false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\':
			i++ // a quoted-pair, in a quoted string or a comment
		case c == '"' && depth == 0:
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == '<' && depth == 0:
			return i
		}
	}
	return -1
}
