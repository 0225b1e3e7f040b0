package schemas

import (
	"errors"
	"fmt"
)

// ErrEDDViolation: a change would shrink or rewrite storage (drop,
// rename, retype, a constraint an old row cannot meet). Evolutionary
// Database Design allows storage only to grow. The message names the
// table or event type, the column or property, and the change.
var ErrEDDViolation = errors.New("EDD violation")

// ErrIncompatible: a new event schema version is not a compatible
// extension of the previous one. It is also an ErrEDDViolation.
var ErrIncompatible = fmt.Errorf("incompatible schema change: %w", ErrEDDViolation)

// violation returns an ErrEDDViolation with a message that says what to do.
func violation(format string, args ...any) error {
	return &eddError{msg: fmt.Sprintf(format, args...), kind: ErrEDDViolation}
}

// incompatible returns an ErrIncompatible (and so ErrEDDViolation).
func incompatible(format string, args ...any) error {
	return &eddError{msg: fmt.Sprintf(format, args...), kind: ErrIncompatible}
}

type eddError struct {
	msg  string
	kind error
}

func (e *eddError) Error() string { return e.msg }
func (e *eddError) Unwrap() error { return e.kind }
