package upstream

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// errCorruptBody means the spooled body breaks the invariant that only
// clean CRLF text leaves the relay: a bare CR, a bare LF or a NUL. The
// inbound guard never spools such a body; this is defence in depth, so
// that a corrupted or hand-edited spool file cannot smuggle a line ending
// the provider would read differently (security.md T12). A "." line is
// fine: go-smtp's DATA writer dot-stuffs it.
var errCorruptBody = errors.New("5.6.0 the spooled message has a bare CR, bare LF or NUL; " +
	"refusing to send it (check the spool file; the inbound side never writes one)")

// bodyState scans bytes for the invariant and for 8-bit octets. It keeps
// state across calls, so a CR at the end of one buffer and its LF at the
// start of the next are one line ending.
type bodyState struct {
	prevCR   bool
	eightBit bool
}

func (s *bodyState) scan(p []byte) error {
	for _, b := range p {
		switch {
		case s.prevCR && b != '\n':
			return errCorruptBody
		case b == '\n' && !s.prevCR, b == 0:
			return errCorruptBody
		}
		s.prevCR = b == '\r'
		s.eightBit = s.eightBit || b >= 0x80
	}
	return nil
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
