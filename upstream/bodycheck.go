package upstream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/tlsrelay/tlsrelay/internal/crlf"
)

// errCorruptBody means the spooled body breaks the invariant that only
// clean CRLF text leaves the relay: a bare CR, a bare LF or a NUL. The
// inbound guard never spools such a body; this is defence in depth, so
// that a corrupted or hand-edited spool file cannot smuggle a line ending
// the provider would read differently (security.md T12). A "." line is
// fine: the DATA writer (dotstuff.go) dot-stuffs it.
var errCorruptBody = errors.New("5.6.0 the spooled message has a bare CR, bare LF or NUL; " +
	"refusing to send it (check the spool file; the inbound side never writes one)")

// bodyState scans bytes for the invariant and for 8-bit octets. It keeps
// state across calls, so a CR at the end of one buffer and its LF at the
// start of the next are one line ending.
type bodyState struct {
	prevCR   bool
	eightBit bool
}

// scan checks p, the next bytes of the body, a buffer at a time
// (internal/crlf; NUL and 8-bit octets eight bytes at a time).
func (s *bodyState) scan(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	ok, trailingCR := crlf.Check(p, s.prevCR)
	if !ok || bytes.IndexByte(p, 0) >= 0 {
		return errCorruptBody
	}
	s.prevCR = trailingCR
	s.eightBit = s.eightBit || !isASCIIBytes(p)
	return nil
}

// isASCIIBytes reports whether p has no octet >= 0x80, eight at a time.
func isASCIIBytes(p []byte) bool {
	for len(p) >= 8 {
		if binary.LittleEndian.Uint64(p)&0x8080808080808080 != 0 {
			return false
		}
		p = p[8:]
	}
	for _, b := range p {
		if b >= 0x80 {
			return false
		}
	}
	return true
}

// end reports a CR left at the very end.
func (s *bodyState) end() error {
	if s.prevCR {
		return errCorruptBody
	}
	return nil
}

// scanBufs holds the 32 KiB buffers of preScan and of the body's copy to
// the server: new ones per delivery were most of the bytes a delivery
// allocated (allocation profiles under the bench rig's load and of
// BenchmarkDeliver).
var scanBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// preScan reads a seekable body once, before anything is sent, and seeks
// back: it tells whether the body has 8-bit octets (for 8BITMIME) and
// refuses a corrupt one while nothing is on the wire yet. ok is false for a
// body that cannot seek; checkedBody still guards it on the way out.
func preScan(r io.Reader) (eightBit, ok bool, err error) {
	rs, isSeeker := r.(io.ReadSeeker)
	if !isSeeker {
		return false, false, nil
	}
	start, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return false, false, nil
	}
	var s bodyState
	bp := scanBufs.Get().(*[]byte)
	defer scanBufs.Put(bp)
	buf := *bp
	for {
		n, rerr := rs.Read(buf)
		if err := s.scan(buf[:n]); err != nil {
			return false, true, err
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return false, true, fmt.Errorf("reading the spooled message: %w", rerr)
		}
	}
	if err := s.end(); err != nil {
		return false, true, err
	}
	if _, err := rs.Seek(start, io.SeekStart); err != nil {
		return false, true, fmt.Errorf("rewinding the spooled message: %w", err)
	}
	return s.eightBit, true, nil
}

// checkedBody passes the body through and fails on the invariant, so that
// the DATA writer never sends the offending bytes and never sends the
// final dot: the provider discards the truncated message.
type checkedBody struct {
	r io.Reader
	s bodyState
}

func (c *checkedBody) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if serr := c.s.scan(p[:n]); serr != nil {
		return 0, serr
	}
	if err == io.EOF {
		if serr := c.s.end(); serr != nil {
			return n, serr
		}
	}
	return n, err
}
