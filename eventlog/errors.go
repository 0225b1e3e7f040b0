package eventlog

import (
	"errors"
	"fmt"
)

// The error vocabulary of the log. Callers test with errors.Is; the
// concrete types below carry the details.
var (
	// ErrConflict: an expectation on a stream's version did not hold (a
	// *ConflictError with the actual version), or an event ID is already
	// in the log for another event (an *IDConflictError).
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the input is malformed (bad name, type, ID, size, JSON).
	ErrInvalid = errors.New("invalid")
	// ErrNotFound: the stream or event does not exist.
	ErrNotFound = errors.New("not found")
	// ErrMalformed: a message in the log is not a valid event, for example
	// one published into NATS around the kernel. Readers stop there with a
	// *DecodeError; it is the log's problem, not the caller's.
	ErrMalformed = errors.New("malformed event in the log")
	// ErrClosed: the log has been closed.
	ErrClosed = errors.New("event log closed")
	// ErrUnavailable: the log could not be reached or did not answer in
	// time; the outcome of an append is unknown and retrying it with the
	// same event IDs is safe.
	ErrUnavailable = errors.New("event log unavailable")
	// ErrInsufficientStorage: the append was refused, and nothing of it
	// written, because the log's storage is full: the disk is down to its
	// reserve (Log.DiskReserve) or JetStream's storage limit
	// (Log.MaxStore) is reached. Appends work again once space returns;
	// the error says which limit was hit. The error is a *StorageError.
	ErrInsufficientStorage = errors.New("insufficient storage")
)

// ConflictError reports a failed expectation.
type ConflictError struct {
	Stream   string
	Expected Expectation
	Actual   uint64 // the stream's version when the append was tried; 0 if it has no events
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("conflict on stream %q: expected %s, stream is at version %d", e.Stream, e.Expected.describe(), e.Actual)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// invalidf returns an ErrInvalid with a message that says what is wrong.
func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

type invalidError struct{ msg string }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

// IDConflictError reports an event whose ID is already in the log for
// another event: another stream, type or data. A retry must resend the
// same event; a new event needs a new ID.
type IDConflictError struct {
	ID     string
	Seq    uint64 // where the original is
	Stream string // the original's stream
	What   string // how it differs, e.g. "in another stream"
}

func (e *IDConflictError) Error() string {
	return fmt.Sprintf("event ID %s is already in the log at seq %d in stream %s, %s: a retry must send the same event (stream, type and data); give a new event a new ID", e.ID, e.Seq, e.Stream, e.What)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *IDConflictError) Is(target error) bool { return target == ErrConflict }
