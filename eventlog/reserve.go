package eventlog

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Reserved categories. A program that keeps records of its own in the
// log (the kernel's schema registrations, skip decisions, parked
// events) reserves their categories: ordinary appends may then neither
// write a stream of such a category nor use a type whose first token is
// one, and only the Writer that Reserve returns appends there. Records
// that decide what a later start does can then be written only by the
// code that checks them first. A capability, not a convention: whoever
// holds the Log but not the Writer cannot forge them.
//
// A writable NATS listener's clients may not publish into the categories
// reserved when the log opened either. Other clients of an external
// server are not covered: readers of reserved categories still check
// what they read.

// reservations is the set of reserved categories, read on every append
// without a lock.
type reservations struct {
	mu   sync.Mutex               // serialises Reserve
	cats atomic.Pointer[[]string] // sorted; nil when none
}

// Writer appends events to the categories reserved for it, through the
// same commit path as Log.Append: same atomicity, expectations,
// idempotency and durability.
type Writer struct {
	l    *Log
	cats []string
}

// Reserve reserves categories for the returned Writer. It may be called
// before or after Open. Errors: ErrInvalid for a malformed category or
// none, ErrConflict for a category reserved already (by any Writer).
func (l *Log) Reserve(categories ...string) (*Writer, error) {
	if len(categories) == 0 {
		return nil, invalidf("reserve: no category")
	}
	for _, c := range categories {
		if err := ValidateCategory(c); err != nil {
			return nil, err
		}
	}
	rs := &l.reserved
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var have []string
	if p := rs.cats.Load(); p != nil {
		have = *p
	}
	next := slices.Clone(have)
	for _, c := range categories {
		if slices.Contains(next, c) {
			return nil, fmt.Errorf("%w: category %s is reserved already", ErrConflict, c)
		}
		next = append(next, c)
	}
	slices.Sort(next)
	rs.cats.Store(&next)
	return &Writer{l: l, cats: slices.Clone(categories)}, nil
}

// Reserved reports whether category is reserved.
func (l *Log) Reserved(category string) bool {
	return slices.Contains(l.reservedCats(), category)
}

func (l *Log) reservedCats() []string {
	if p := l.reserved.cats.Load(); p != nil {
		return *p
	}
	return nil
}

// checkReserved refuses event i of an append when its stream's category
// or its type's first token is reserved and w (nil for an ordinary
// append) does not hold it; a Writer's events must also be in its own
// categories.
func (l *Log) checkReserved(i int, e *Event, w *Writer) error {
	if w != nil {
		if c := e.Category(); !slices.Contains(w.cats, c) {
			return invalidf("event %d: stream %s is outside this writer's categories (%s)", i, e.Stream, strings.Join(w.cats, ", "))
		}
	}
	cats := l.reservedCats()
	if len(cats) == 0 {
		return nil
	}
	typeCat, _, _ := strings.Cut(e.Type, ".")
	for _, c := range [2]string{e.Category(), typeCat} {
		if slices.Contains(cats, c) && (w == nil || !slices.Contains(w.cats, c)) {
			return invalidf("event %d: category %s is reserved for the kernel: its streams and event types are written only by the kernel's own code (stream %s, type %s); use another category", i, c, e.Stream, e.Type)
		}
	}
	return nil
}

// Categories returns the categories w writes.
func (w *Writer) Categories() []string { return slices.Clone(w.cats) }

// Log returns the log w writes to, for reading.
func (w *Writer) Log() *Log { return w.l }

// Append is Log.Append for events whose streams are in w's categories.
// Errors: those of Log.Append; ErrInvalid for an event outside w's
// categories.
func (w *Writer) Append(ctx context.Context, events []Event, expect ...Expectation) (Result, error) {
	p, err := w.AppendAsync(ctx, events, expect...)
	if err != nil {
		return Result{}, err
	}
	return p.Wait()
}

// AppendAsync is Log.AppendAsync for events in w's categories.
func (w *Writer) AppendAsync(ctx context.Context, events []Event, expect ...Expectation) (*Pending, error) {
	return w.l.appendAsync(ctx, w, events, expect)
}
