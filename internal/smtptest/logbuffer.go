package smtptest

import (
	"bytes"
	"sync"
)

// LogBuffer collects log output for assertions; it is safe for the
// concurrent writers of a running relay (the one buffer for every
// package's tests).
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
