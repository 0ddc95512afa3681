package sendmail

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"
)

// Message is a message read from standard input, ready for the wire: CRLF
// line endings (go-smtp's DATA writer does the dot-stuffing), the header
// completed, and the recipients -t found.
type Message struct {
	Data     []byte
	Rcpts    []string // from To, Cc and Bcc, with -t
	EightBit bool     // a byte over 127: BODY=8BITMIME
	UTF8     bool     // a recipient or the sender is not ASCII: SMTPUTF8
}

// Input says how to prepare a message.
type Input struct {
	IgnoreDots bool   // -i: a lone "." line does not end the message
	ReadRcpts  bool   // -t
	From       string // the envelope sender, for an added From:
	FullName   string // -F
	Hostname   string // for an added Message-ID
	Now        time.Time
	Limit      int64 // the most bytes read; more is ErrTooLarge
}

// ErrTooLarge means the input passed Input.Limit.
var ErrTooLarge = errors.New("message too large")

// Prepare reads a message and completes it as Postfix's pickup does: a
// leading "From " line (mbox) is dropped; LF or CRLF line endings become
// CRLF; without IgnoreDots a line holding a single dot ends the message;
// a missing From:, Date: or Message-ID: is added at the end of the header;
// with ReadRcpts the addresses of To, Cc and Bcc are collected and Bcc is
// removed. Nothing else is changed.
func Prepare(r io.Reader, in Input) (*Message, error) {
	lines, err := readLines(r, in)
	if err != nil {
		return nil, err
	}
	header, body := splitHeader(lines)
	m := &Message{}
	if in.ReadRcpts {
		for _, f := range header {
			switch f.name() {
			case "to", "cc", "bcc":
				m.Rcpts = append(m.Rcpts, addressList(f.value())...)
			}
		}
		header = without(header, "bcc")
	}
	header = complete(header, in)
	var b bytes.Buffer
	for _, f := range header {
		for _, l := range f {
			b.WriteString(l)
			b.WriteString("\r\n")
		}
	}
	b.WriteString("\r\n")
	for _, l := range body {
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	m.Data = b.Bytes()
	m.EightBit = !isASCII(m.Data)
	m.UTF8 = !isASCII([]byte(in.From)) || !isASCII([]byte(strings.Join(m.Rcpts, "")))
	return m, nil
}

// readLines reads the input as lines without their endings, stopping at a
// lone "." unless IgnoreDots, and refuses more than Limit bytes.
func readLines(r io.Reader, in Input) ([]string, error) {
	br := bufio.NewReader(io.LimitReader(r, in.Limit+1))
	var lines []string
	var n int64
	for {
		line, err := br.ReadString('\n')
		n += int64(len(line))
		if n > in.Limit {
			return nil, ErrTooLarge
		}
		if line != "" || err == nil {
			line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
			if !in.IgnoreDots && line == "." {
				return lines, nil
			}
			if !(len(lines) == 0 && strings.HasPrefix(line, "From ")) {
				lines = append(lines, line)
			}
		}
		if err == io.EOF {
			return lines, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// field is one header field: its first line and its continuation lines.
type field []string

func (f field) name() string {
	n, _, _ := strings.Cut(f[0], ":")
	return strings.ToLower(strings.TrimSpace(n))
}

func (f field) value() string {
	_, v, _ := strings.Cut(strings.Join(f, " "), ":")
	return strings.TrimSpace(v)
}

// splitHeader splits the lines at the first empty one. Input that does not
// start with a header field is all body (then every field is added).
func splitHeader(lines []string) (header []field, body []string) {
	for i, l := range lines {
		switch {
		case l == "":
			return header, lines[i+1:]
		case (l[0] == ' ' || l[0] == '\t') && len(header) > 0:
			header[len(header)-1] = append(header[len(header)-1], l)
		case isFieldStart(l):
			header = append(header, field{l})
		default:
			return header, lines[i:]
		}
	}
	return header, nil
}

// isFieldStart reports whether l starts a header field: a name of printable
// ASCII other than ':' and space, then ':'.
func isFieldStart(l string) bool {
	name, _, ok := strings.Cut(l, ":")
	if !ok || name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] <= ' ' || name[i] > '~' {
			return false
		}
	}
	return true
}

func without(header []field, name string) []field {
	out := header[:0]
	for _, f := range header {
		if f.name() != name {
			out = append(out, f)
		}
	}
	return out
}

func has(header []field, name string) bool {
	for _, f := range header {
		if f.name() == name {
			return true
		}
	}
	return false
}

// complete adds the From:, Date: and Message-ID: that are missing.
func complete(header []field, in Input) []field {
	if !has(header, "from") {
		from := in.From
		if from == "" {
			from = "MAILER-DAEMON@" + in.Hostname
		}
		a := &mail.Address{Name: in.FullName, Address: from}
		header = append(header, field{"From: " + a.String()})
	}
	if !has(header, "date") {
		header = append(header, field{"Date: " + in.Now.Format(time.RFC1123Z)})
	}
	if !has(header, "message-id") {
		var r [12]byte
		rand.Read(r[:])
		header = append(header, field{fmt.Sprintf("Message-ID: <%d.%s@%s>", in.Now.Unix(), hex.EncodeToString(r[:]), in.Hostname)})
	}
	return header
}

// addressList returns the addresses of a To, Cc or Bcc value. One that
// net/mail cannot parse (a bare "root", an unquoted comma) is split on
// commas, each part's <address> or the part itself: the relay answers for
// what is not an address.
func addressList(v string) []string {
	if v == "" {
		return nil
	}
	if as, err := mail.ParseAddressList(v); err == nil {
		out := make([]string, len(as))
		for i, a := range as {
			out[i] = a.Address
		}
		return out
	}
	var out []string
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if i := strings.LastIndexByte(part, '<'); i >= 0 {
			part = strings.TrimSuffix(part[i+1:], ">")
		}
		if part != "" {
			out = append(out, part)
		}
	}
	return out
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
