package policy

import (
	"fmt"
	"os"
)

// Submission is what `tlsrelay sendmail` needs of a relay.yaml: where the
// relay listens, how large a message it takes, where its spool is (for
// -bp) and sendmail.from. LoadSubmission reads it without resolving any
// credential or reading any other file named there: the app that runs
// sendmail usually may not read the relay's secrets, and needs none.
type Submission struct {
	File            string
	ListenAddr      string
	MaxMessageBytes int64
	QueueDir        string
	From            string // sendmail.from; "" = none
}

// LoadSubmission reads those keys of the file at path, with the same
// defaults and errors (FILE:LINE: KEY: want ...) as Load; other keys are
// checked only for being known.
func LoadSubmission(path string) (*Submission, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	d := &decoder{file: path, env: os.LookupEnv, lines: map[string]int{}}
	root, err := parseYAML(data)
	if err != nil {
		d.syntaxError(err)
		return nil, d.err()
	}
	top := d.section(root, "", 1, schema[""]...)
	listen := d.child(top, "listen", schema["listen"]...)
	s := &Submission{File: path, ListenAddr: DefaultListenAddr, MaxMessageBytes: DefaultMaxMessageBytes, QueueDir: DefaultQueueDir}
	listen.hostPort("addr", &s.ListenAddr, true)
	listen.size("max_message_bytes", &s.MaxMessageBytes)
	d.child(top, "queue", schema["queue"]...).str("dir", &s.QueueDir)
	s.From = d.sendmail(d.child(top, "sendmail", schema["sendmail"]...)).From
	if err := d.err(); err != nil {
		return nil, err
	}
	return s, nil
}
