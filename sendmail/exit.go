package sendmail

// Exit statuses, as sysexits.h defines them: what sendmail's callers test.
const (
	ExOK          = 0
	ExUsage       = 64 // bad command line, or no recipient
	ExDataErr     = 65 // the message was refused for its content or size
	ExNoInput     = 66 // standard input could not be read
	ExUnavailable = 69 // the relay refused the sender or a recipient (5xx)
	ExSoftware    = 70 // a bug
	ExTempFail    = 75 // the relay cannot be reached, or answered 4xx: try later
)

// Error is a failure with its exit status and the one line to print.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }
