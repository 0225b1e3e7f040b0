package kernel

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/fazt-sh/fazt/eventlog"
)

var (
	// ErrRefused: a command was refused by a domain rule (a decider said
	// no). HTTP 409 with code "refused".
	ErrRefused = errors.New("refused")
	// ErrRateLimited: a public route was called too often from one
	// address. HTTP 429.
	ErrRateLimited = errors.New("rate limited")
)

// Refusef returns a domain refusal: an error wrapping ErrRefused with a
// message for the caller.
func Refusef(format string, args ...any) error {
	return &apiError{kind: ErrRefused, msg: fmt.Sprintf(format, args...)}
}

// Invalidf returns an error wrapping eventlog.ErrInvalid (HTTP 400) with
// a message for the caller.
func Invalidf(format string, args ...any) error { return invalidf(format, args...) }

// NotFoundf returns an error wrapping eventlog.ErrNotFound (HTTP 404).
func NotFoundf(format string, args ...any) error {
	return &apiError{kind: eventlog.ErrNotFound, msg: fmt.Sprintf(format, args...)}
}

// WriteError answers err as the kernel's JSON error, with the status the
// kernel's one error mapping gives it; 5xx errors are logged.
func (k *Kernel) WriteError(w http.ResponseWriter, r *http.Request, err error) { k.api.fail(w, r, err) }

// WriteJSON answers v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }

// DecodeJSON reads one JSON object from the request body into v,
// strictly: unknown fields and trailing data are ErrInvalid with a
// message saying what is wrong; the body is already size limited.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) error { return decodeBody(w, r, v) }

// CheckQuery refuses query parameters other than allowed, so that a typo
// is not silently ignored, and returns them.
func CheckQuery(r *http.Request, allowed ...string) (map[string][]string, error) {
	return parseQuery(r, allowed...)
}

func sizeString(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
