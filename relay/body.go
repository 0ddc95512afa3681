package relay

import (
	"bytes"
	"io"
	"sync"

	"github.com/tlsrelay/tlsrelay/internal/crlf"
)

const (
	// maxHeaderBytes caps the message header (up to the first empty line):
	// 552 5.3.4 past it.
	maxHeaderBytes = 1 << 20
	// maxReceived is how many Received: fields a message may carry in:
	// past it the mail is looping (RFC 5321 6.3), 554 5.4.6.
	maxReceived = 100
)

// bodyReader passes a message body to the spool, checked on the way:
//
//   - a bare CR is errBareCR; a bare LF is errBareLF or, with fix
//     (line_endings fix, DATA only), becomes CRLF. So only CRLF is spooled,
//     whatever the client sent (G3). The connection guard has refused a
//     bare CR before go-smtp saw it; this is the second line of defence.
//   - the header is at most maxHeaderBytes and has at most maxReceived
//     Received: fields.
//
// It keeps the first error it returned other than io.EOF, whether it came
// from a check or from the reader below, and eof once it returned io.EOF.
//
// head, our Received header, is handed up first, unchecked and not counted
// in n. It used to come through io.MultiReader, whose WriteTo allocates a
// 32 KiB buffer for every message an io.Copy reads (BenchmarkSession).
type bodyReader struct {
	head   string // not yet returned
	r      io.Reader
	fix    bool
	bufs   *bodyBufs // from bodyPool, from the first Read until the last
	out    []byte    // checked output not yet returned
	prevCR bool
	hdr    headerScan
	n      int64 // body bytes returned
	err    error
	eof    bool
}

// bodyBufs are a bodyReader's input buffer and the storage of its output.
// They come from bodyPool: allocating them for every message was 48 KiB a
// message in BenchmarkSession.
type bodyBufs struct {
	in  [16 << 10]byte
	out [32 << 10]byte
}

var bodyPool = sync.Pool{New: func() any { return new(bodyBufs) }}

func newBodyReader(head string, r io.Reader, fix bool) *bodyReader {
	b := &bodyReader{head: head, r: r, fix: fix, hdr: headerScan{lineStart: true, in: true}}
	b.hdr.name = b.hdr.nameBuf[:0] // no allocation per message for the field names
	return b
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if len(b.head) > 0 {
		n := copy(p, b.head)
		b.head = b.head[n:]
		return n, nil
	}
	for len(b.out) == 0 {
		switch {
		case b.err != nil:
			b.release()
			return 0, b.err
		case b.eof:
			b.release()
			return 0, io.EOF
		}
		if b.bufs == nil {
			b.bufs = bodyPool.Get().(*bodyBufs)
			b.out = b.bufs.out[:0]
		}
		n, err := b.r.Read(b.bufs.in[:])
		b.out = b.out[:0]
		if e := b.process(b.bufs.in[:n]); e != nil {
			b.err = e
			b.release()
			return 0, e
		}
		switch {
		case err == io.EOF && b.prevCR:
			b.err = errBareCR
		case err == io.EOF:
			b.eof = len(b.out) == 0
			if !b.eof {
				b.r = eofReader{}
			}
		case err != nil:
			b.err = err
			return 0, err
		}
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	b.n += int64(n)
	return n, nil
}

// release puts the buffers back into bodyPool once Read has returned its
// last bytes: every later Read returns b.err or io.EOF without touching
// them, and the reader below must not keep what it was given. Reads come
// one at a time (io.Reader), so nothing else refers to them. A reader that
// is never read to its end leaves its buffers to the garbage collector.
func (b *bodyReader) release() {
	b.out = nil
	if b.bufs != nil {
		bodyPool.Put(b.bufs)
		b.bufs = nil
	}
}

// eofReader replaces the reader below once it has returned io.EOF.
type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// process checks in and appends it, converted, to b.out. A buffer whose
// line endings are all CRLF (what clients send) is appended at once,
// checked a buffer at a time (internal/crlf); any other is taken apart
// line by line (processLines), which converts and finds the first error.
func (b *bodyReader) process(in []byte) error {
	if b.prevCR && len(in) > 0 && in[0] == '\n' { // the LF of the CR that ended the last buffer
		b.prevCR = false
		if err := b.emit(crlfBytes); err != nil {
			return err
		}
		in = in[1:]
	}
	if ok, trailingCR := crlf.Check(in, b.prevCR); ok && len(in) > 0 {
		n := len(in)
		if trailingCR {
			n-- // held back until its LF comes
		}
		b.prevCR = trailingCR
		return b.emit(in[:n])
	}
	return b.processLines(in)
}

var crlfBytes = []byte("\r\n")

// processLines is process a line at a time.
func (b *bodyReader) processLines(in []byte) error {
	for len(in) > 0 {
		if b.prevCR {
			if in[0] != '\n' {
				return errBareCR
			}
			b.prevCR = false
			if err := b.emit(crlfBytes); err != nil {
				return err
			}
			in = in[1:]
			continue
		}
		i := bytes.IndexAny(in, "\r\n")
		if i < 0 {
			return b.emit(in)
		}
		if err := b.emit(in[:i]); err != nil {
			return err
		}
		switch {
		case in[i] == '\r':
			b.prevCR = true
		case !b.fix:
			return errBareLF
		default:
			if err := b.emit(crlfBytes); err != nil {
				return err
			}
		}
		in = in[i+1:]
	}
	return nil
}

// emit appends clean output (CRLF line ends only) and scans the header.
func (b *bodyReader) emit(p []byte) error {
	if b.hdr.in {
		if err := b.hdr.scan(p); err != nil {
			return err
		}
	}
	b.out = append(b.out, p...)
	return nil
}

// headerScan follows the message header in the clean output: it ends at
// the first empty line, or at the first line that is neither a header
// field ("Name:") nor the continuation of one.
type headerScan struct {
	in        bool // still in the header
	lineStart bool
	naming    bool   // reading a field name
	name      []byte // its first bytes, lowercase; storage in nameBuf
	nameBuf   [len("received") + 1]byte
	bytes     int
	received  int
}

func (h *headerScan) scan(p []byte) error {
	for _, c := range p {
		if !h.in {
			return nil
		}
		if h.bytes++; h.bytes > maxHeaderBytes {
			return errHeaderTooBig
		}
		switch {
		case h.lineStart && c == '\r':
			h.in = false // the empty line: the body follows
		case h.lineStart && (c == ' ' || c == '\t'):
			h.lineStart = false // a continuation line
		case h.lineStart:
			h.lineStart, h.naming, h.name = false, true, h.name[:0]
			h.nameByte(c)
		case c == '\n':
			h.lineStart = true
		case h.naming:
			if err := h.nameByte(c); err != nil {
				return err
			}
		}
	}
	return nil
}

// nameByte takes one byte of a field name: ':' ends it; a byte that cannot
// be in one ends the header.
func (h *headerScan) nameByte(c byte) error {
	switch {
	case c == ':':
		h.naming = false
		if string(h.name) == "received" {
			if h.received++; h.received > maxReceived {
				return errMailLoop
			}
		}
	case c > ' ' && c < 0x7f:
		if len(h.name) < len("received")+1 {
			h.name = append(h.name, c|0x20)
		}
	default:
		h.in, h.naming = false, false
	}
	return nil
}
