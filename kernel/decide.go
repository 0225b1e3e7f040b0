package kernel

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
)

// DefaultDecideAttempts is how many times Decide tries when other
// writers keep changing the stream.
const DefaultDecideAttempts = 5

// Store is what Decide needs: reading a stream and appending to it.
// *Kernel and *eventlog.Log implement it.
type Store interface {
	ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventlog.Event, error)
	Append(ctx context.Context, events []eventlog.Event, expect ...eventlog.Expectation) (eventlog.Result, error)
}

var (
	_ Store = (*Kernel)(nil)
	_ Store = (*eventlog.Log)(nil)
)

// Decider handles a command on one stream, the event-sourcing way:
// Evolve folds the stream's events into a state S, then Decide turns the
// state into new events or refuses (return an error, such as one made
// by Refusef).
//
// Every attempt starts from a new state made by Init, so a state that
// holds a map, a slice or a pointer can be changed in place by Evolve
// and Decide: a retry after a conflict never sees what the failed
// attempt did to it.
type Decider[S any] struct {
	// Init returns the state of a stream with no events; it is called
	// once per attempt. Nil: the zero S (enough for a bool, a number or
	// a struct of them; a map-typed state needs an Init that makes it).
	Init func() S
	// Evolve applies one past event to the state. Unknown event types
	// should be ignored, so that old code reads a grown stream.
	Evolve func(state S, e eventlog.Event) (S, error)
	// Decide returns the events the command produces (none: nothing to
	// do), given the current state and the stream's version (0: new).
	Decide func(state S, version uint64) ([]eventlog.Event, error)
	// Attempts bounds the retries on conflict (DefaultDecideAttempts).
	Attempts int
}

// Decision is what Decide did.
type Decision[S any] struct {
	// State is the state Decide saw, before the new events.
	State S
	// Version is the stream's version the decision was made at.
	Version uint64
	// Events are the new events (with the positions the log gave them);
	// empty when the command produced none.
	Events []eventlog.Event
	// Result of the append; zero when nothing was appended.
	Result eventlog.Result
	// Attempts it took, from 1.
	Attempts int
}

// Decide loads stream, folds it from d.Init with d.Evolve, asks
// d.Decide for new events and appends them expecting the version it
// read, so that a concurrent writer makes the append fail rather than
// interleave. On such a conflict it reloads from a new state and
// decides again, up to d.Attempts times, then returns the
// *eventlog.ConflictError. Events get the stream set when they leave it
// empty. Errors: the decider's own, or the store's (eventlog.ErrInvalid,
// ErrConflict, ...).
func Decide[S any](ctx context.Context, store Store, stream string, d Decider[S]) (Decision[S], error) {
	if d.Evolve == nil || d.Decide == nil {
		return Decision[S]{}, fmt.Errorf("%w: a Decider needs Evolve and Decide", eventlog.ErrInvalid)
	}
	attempts := d.Attempts
	if attempts <= 0 {
		attempts = DefaultDecideAttempts
	}
	var last error
	for attempt := 1; attempt <= attempts; attempt++ {
		state, version, err := load(ctx, store, stream, d)
		if err != nil {
			return Decision[S]{}, err
		}
		events, err := d.Decide(state, version)
		dec := Decision[S]{State: state, Version: version, Attempts: attempt}
		if err != nil || len(events) == 0 {
			return dec, err
		}
		for i := range events {
			if events[i].Stream == "" {
				events[i].Stream = stream
			}
		}
		res, err := store.Append(ctx, events, eventlog.ExpectVersion(stream, version))
		if err == nil {
			dec.Events, dec.Result = events, res
			for i := range dec.Events {
				if i < len(res.Events) {
					dec.Events[i].ID, dec.Events[i].Seq, dec.Events[i].Version = res.Events[i].ID, res.Events[i].Seq, res.Events[i].Version
				}
			}
			return dec, nil
		}
		var conflict *eventlog.ConflictError
		if !errors.As(err, &conflict) || conflict.Stream != stream {
			return dec, err
		}
		last = err
		// Someone else wrote the stream: let them finish, then decide on
		// the new state. The jitter keeps rivals from colliding again.
		select {
		case <-ctx.Done():
			return dec, ctx.Err()
		case <-time.After(time.Duration(rand.Int64N(int64(attempt) * int64(2*time.Millisecond)))):
		}
	}
	return Decision[S]{Attempts: attempts}, fmt.Errorf("gave up after %d attempts: %w", attempts, last)
}

// load folds the whole stream into a state.
func load[S any](ctx context.Context, store Store, stream string, d Decider[S]) (S, uint64, error) {
	const page = 1000
	var state S
	if d.Init != nil {
		state = d.Init()
	}
	version := uint64(0)
	for {
		events, err := store.ReadStream(ctx, stream, version+1, page)
		if err != nil && !errors.Is(err, eventlog.ErrNotFound) {
			return state, version, fmt.Errorf("load stream %s: %w", stream, err)
		}
		for _, e := range events {
			if state, err = d.Evolve(state, e); err != nil {
				return state, version, fmt.Errorf("stream %s at version %d: %w", stream, e.Version, err)
			}
			version = e.Version
		}
		if len(events) < page {
			return state, version, nil
		}
	}
}
