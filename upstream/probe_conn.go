package upstream

import (
	"net"
	"strings"
)

// replyRecorder keeps what the server sends, split at each of our writes:
// reply 0 is what came before our first write (the greeting), reply i what
// came after our i-th write (the answer to our i-th command). It never keeps
// what we send, so no credential can reach a probe report. It keeps at most
// maxReplyBytes in all; smtpConn above it bounds each reply anyway.
type replyRecorder struct {
	net.Conn
	replies [][]byte
	kept    int
}

func (r *replyRecorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	if n > 0 {
		if len(r.replies) == 0 {
			r.replies = append(r.replies, nil)
		}
		keep := min(n, maxReplyBytes-r.kept)
		last := len(r.replies) - 1
		r.replies[last] = append(r.replies[last], p[:keep]...)
		r.kept += keep
	}
	return n, err
}

func (r *replyRecorder) Write(p []byte) (int, error) {
	if len(r.replies) == 0 {
		r.replies = append(r.replies, nil)
	}
	r.replies = append(r.replies, nil)
	return r.Conn.Write(p)
}

// received returns how many bytes the server sent before our first write.
func (r *replyRecorder) received() int {
	if r == nil || len(r.replies) == 0 {
		return 0
	}
	return len(r.replies[0])
}

// lines returns reply i as lines without CRLF; i < 0 counts from the end.
func (r *replyRecorder) lines(i int) []string {
	if r == nil {
		return nil
	}
	if i < 0 {
		i += len(r.replies)
	}
	if i < 0 || i >= len(r.replies) || len(r.replies[i]) == 0 {
		return nil
	}
	s := strings.TrimRight(string(r.replies[i]), "\r\n")
	out := strings.Split(s, "\n")
	for j := range out {
		out[j] = strings.TrimSuffix(out[j], "\r")
	}
	return out
}

// text returns reply i on one line, as the server wrote it ("220 ...").
func (r *replyRecorder) text(i int) string {
	return probeText(strings.Join(r.lines(i), " "))
}

// ehloExtensions returns the extensions of a 250 EHLO reply, with their
// parameters ("AUTH PLAIN LOGIN", "SIZE 35882577"): every line after the first.
func ehloExtensions(lines []string) []string {
	ext := []string{}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "250") {
		return ext
	}
	for _, l := range lines[1:] {
		if len(l) > 4 && strings.HasPrefix(l, "250") {
			ext = append(ext, probeText(l[4:]))
		}
	}
	return ext
}

// probeText is printable (xoauth2.go) for text that goes to a terminal: no
// control characters (a hostile server's escapes), at most 2048 bytes.
func probeText(s string) string { return printable([]byte(s), 2048) }
