package projections

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"runtime/debug"
)

// Batch returns the state of type T that Apply keeps across the events
// of one fold transaction: a new zero T at the transaction's first call,
// the same *T at every later call in it. It lets Apply accumulate what
// many events change (a count per key, say) and write it once per key
// instead of once per event.
//
// If *T has a method Flush(ctx context.Context, tx *sql.Tx) error (see
// [Flusher]), the runner calls it once per transaction, after the last
// Apply and before it writes the checkpoint, in the same transaction.
// Flush must write in an order that does not depend on map iteration
// (sort the keys). Apply checks each event, so that a bad one halts the
// projection at that event; an error from Flush is taken as a problem of
// the file (like a full disk): the transaction is rolled back and the
// batch folded again after RetryInterval, Status.Error showing why.
//
// The state is dropped with its transaction, committed or not: a batch
// folded again (after a failure, or the events before a failing one on
// their own) starts from a new zero T, so the rows never count an event
// twice. Batch returns nil when ctx and tx are not those of a fold
// transaction (Apply called directly, in a test say): Apply then makes
// its own state and flushes it before it returns.
//
// T is best a type of the projection's own package: states are told
// apart by type.
func Batch[T any](ctx context.Context, tx *sql.Tx) *T {
	b, ok := ctx.Value(batchKey{}).(*txBatch)
	if !ok || b.tx != tx {
		return nil
	}
	t := reflect.TypeFor[T]()
	for _, s := range b.states {
		if s.typ == t {
			return s.v.(*T)
		}
	}
	v := new(T)
	b.states = append(b.states, batchState{t, v})
	return v
}

// Flusher is batch state with writes left for the end of its
// transaction (see [Batch]).
type Flusher interface {
	Flush(ctx context.Context, tx *sql.Tx) error
}

// txBatch holds the Batch states of one fold transaction, in the order
// they were made, which is the order they are flushed in.
type txBatch struct {
	tx     *sql.Tx
	states []batchState
}

type batchState struct {
	typ reflect.Type
	v   any
}

type batchKey struct{}

// withBatch returns ctx carrying a new batch state for tx.
func withBatch(ctx context.Context, tx *sql.Tx) (context.Context, *txBatch) {
	b := &txBatch{tx: tx}
	return context.WithValue(ctx, batchKey{}, b), b
}

// flush calls Flush on the states that have it, turning a panic into an
// error like apply does.
func (g *gen) flush(ctx context.Context, tx *sql.Tx, b *txBatch) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in Flush: %v", p)
			g.pr.r.Logger.Error("projection Flush panicked", "projection", g.pr.p.Name, "panic", p, "stack", string(debug.Stack()))
		}
	}()
	for _, s := range b.states {
		if f, ok := s.v.(Flusher); ok {
			if err := f.Flush(ctx, tx); err != nil {
				return fmt.Errorf("projection %s: flush %s: %w", g.pr.p.Name, s.typ, err)
			}
		}
	}
	return nil
}
