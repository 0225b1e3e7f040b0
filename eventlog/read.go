package eventlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// directRequest is JetStream's direct get request. Reads use it so that
// no consumer is created per read.
type directRequest struct {
	Seq       uint64     `json:"seq,omitempty"`
	LastFor   string     `json:"last_by_subj,omitempty"`
	NextFor   string     `json:"next_by_subj,omitempty"`
	Batch     int        `json:"batch,omitempty"`
	StartTime *time.Time `json:"start_time,omitempty"`
}

const readBatch = 1000

func (l *Log) directSubject() string { return "$JS.API.DIRECT.GET." + l.StreamName }

// directGet fetches one message. ErrNotFound when there is none.
func (l *Log) directGet(ctx context.Context, req directRequest) (*nats.Msg, error) {
	body, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(ctx, l.RequestTimeout)
	defer cancel()
	m, err := l.rc.RequestWithContext(ctx, l.directSubject(), body)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: direct get: %v", ErrUnavailable, err)
	}
	switch m.Header.Get("Status") {
	case "":
		return m, nil
	case "404":
		return nil, ErrNotFound
	default:
		return nil, fmt.Errorf("%w: direct get: status %s %s", ErrUnavailable, m.Header.Get("Status"), m.Header.Get("Description"))
	}
}

// scan reads messages in batches from req onwards (req.Seq or
// req.StartTime) and calls fn for each until fn returns false, an error,
// or the end of the log.
func (l *Log) scan(ctx context.Context, req directRequest, fn func(*nats.Msg) (bool, error)) error {
	if req.Batch == 0 {
		req.Batch = readBatch
	}
	for {
		var last uint64
		var more bool
		stop := false
		err := l.batch(ctx, req, func(m *nats.Msg) error {
			if stop {
				return nil
			}
			seq, _ := strconv.ParseUint(m.Header.Get(headerSequence), 10, 64)
			last = seq
			cont, err := fn(m)
			if err != nil {
				return err
			}
			stop = !cont
			return nil
		}, &more)
		if err != nil || stop || !more || last == 0 {
			return err
		}
		req.Seq, req.StartTime = last+1, nil
	}
}

// batch runs one batched direct get. more reports whether messages remain
// after this batch.
func (l *Log) batch(ctx context.Context, req directRequest, fn func(*nats.Msg) error, more *bool) error {
	if req.Seq == 0 && req.StartTime == nil {
		req.Seq = 1
	}
	ctx, cancel := context.WithTimeout(ctx, l.RequestTimeout)
	defer cancel()
	// A channel for the batch (scan sets its size) and the end marker:
	// SubscribeSync would allocate a 64k-slot channel per read.
	inbox := l.rc.NewRespInbox()
	ch := make(chan *nats.Msg, req.Batch+2)
	sub, err := l.rc.ChanSubscribe(inbox, ch)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer sub.Unsubscribe()
	body, _ := json.Marshal(req)
	if err := l.rc.PublishRequest(l.directSubject(), inbox, body); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for {
		var m *nats.Msg
		select {
		case m = <-ch:
		case <-ctx.Done():
			if c := context.Cause(ctx); c != nil && !errors.Is(c, context.DeadlineExceeded) {
				return c
			}
			return fmt.Errorf("%w: batched read: %v", ErrUnavailable, ctx.Err())
		}
		switch m.Header.Get("Status") {
		case "":
			if err := fn(m); err != nil {
				return err
			}
		case "204": // end of batch
			np, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
			*more = np > 0
			return nil
		case "404":
			*more = false
			return nil
		default:
			return fmt.Errorf("%w: batched read: status %s %s", ErrUnavailable, m.Header.Get("Status"), m.Header.Get("Description"))
		}
	}
}

// ReadStream returns up to limit events of one stream, from version from
// (1 is the first event) on. It returns ErrNotFound when the stream has no
// events at all.
func (l *Log) ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]Event, error) {
	if err := ValidateStream(stream); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, invalidf("limit %d: want a positive number", limit)
	}
	from = max(from, 1)
	subj := subjectOf(stream)
	lastMsg, err := l.directGet(ctx, directRequest{LastFor: subj})
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("stream %s: %w", stream, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	last, err := decode(lastMsg.Subject, lastMsg.Header, lastMsg.Data)
	if err != nil {
		return nil, err
	}
	if from > last.Version {
		return []Event{}, nil
	}
	start := uint64(1)
	if from > 1 {
		if start, err = l.seqOfVersion(ctx, subj, from, last.Seq); err != nil {
			return nil, err
		}
	}
	var out []Event
	err = l.scan(ctx, directRequest{Seq: start, NextFor: subj, Batch: min(limit, readBatch)}, func(m *nats.Msg) (bool, error) {
		e, err := decode(m.Subject, m.Header, m.Data)
		if err != nil {
			return false, err
		}
		out = append(out, e)
		return len(out) < limit, nil
	})
	return out, err
}

// seqOfVersion finds the global sequence of a stream's event with the
// given version by binary search over the log: versions grow with
// sequences, so O(log n) single reads find it.
func (l *Log) seqOfVersion(ctx context.Context, subj string, version, hi uint64) (uint64, error) {
	lo := uint64(1)
	for lo < hi {
		mid := lo + (hi-lo)/2
		m, err := l.directGet(ctx, directRequest{Seq: mid, NextFor: subj})
		if err != nil {
			return 0, err
		}
		e, err := decode(m.Subject, m.Header, m.Data)
		if err != nil {
			return 0, err
		}
		if e.Version >= version {
			hi = mid
		} else {
			lo = e.Seq + 1
		}
	}
	return lo, nil
}

// Filter selects events by type and category. Empty lists match all.
type Filter struct {
	Types      []string
	Categories []string
}

func (f Filter) validate() error {
	for _, t := range f.Types {
		if err := ValidateType(t); err != nil {
			return err
		}
	}
	for _, c := range f.Categories {
		if err := ValidateCategory(c); err != nil {
			return err
		}
	}
	return nil
}

// Match reports whether e passes the filter.
func (f Filter) Match(e *Event) bool {
	return (len(f.Types) == 0 || slices.Contains(f.Types, e.Type)) &&
		(len(f.Categories) == 0 || slices.Contains(f.Categories, e.Category()))
}

// subject narrows the read server-side when a single category is asked.
func (f Filter) subject() string {
	if len(f.Categories) == 1 {
		return subjectPrefix + f.Categories[0] + ".>"
	}
	return ""
}

// Page is a slice of the whole log.
type Page struct {
	Events []Event `json:"events"`
	// LastSeq is the last sequence examined; pass it as after to continue.
	// With a filter it can be past the last event returned.
	LastSeq uint64 `json:"last_seq"`
}

// Read returns up to limit events with sequence greater than after that
// pass the filter. A message in the log that is not a valid event stops
// the read there with a *DecodeError (ErrMalformed); the events before it
// are returned in the page.
func (l *Log) Read(ctx context.Context, after uint64, limit int, f Filter) (Page, error) {
	if limit <= 0 {
		return Page{}, invalidf("limit %d: want a positive number", limit)
	}
	if err := f.validate(); err != nil {
		return Page{}, err
	}
	p := Page{Events: []Event{}, LastSeq: after}
	req := directRequest{Seq: after + 1, NextFor: f.subject(), Batch: readBatch}
	if len(f.Types) == 0 && len(f.Categories) <= 1 {
		req.Batch = min(limit, readBatch)
	}
	err := l.scan(ctx, req, func(m *nats.Msg) (bool, error) {
		e, err := decode(m.Subject, m.Header, m.Data)
		if err != nil {
			return false, err
		}
		p.LastSeq = e.Seq
		if f.Match(&e) {
			p.Events = append(p.Events, e)
		}
		return len(p.Events) < limit, nil
	})
	return p, err
}

// Subscribe calls fn for every event with sequence greater than after that
// passes the filter, in order: first those already in the log, then new
// ones as they are appended. It creates no JetStream consumer: it reads
// with batched direct gets from its own position, woken by this log's
// appends and, when other writers may exist, by polling every
// PollInterval; so it never misses or repeats an event. It returns when
// ctx ends (with ctx's error), when fn returns an error (that error), or
// with a *DecodeError (ErrMalformed) at a message that is not a valid
// event.
func (l *Log) Subscribe(ctx context.Context, after uint64, f Filter, fn func(Event) error) error {
	if err := f.validate(); err != nil {
		return err
	}
	var tick <-chan time.Time
	if !l.soleWriter {
		t := time.NewTicker(l.PollInterval)
		defer t.Stop()
		tick = t.C
	}
	next := after + 1
	for {
		woken := l.stored() // before reading, so no append is missed
		for {
			p, err := l.Read(ctx, next-1, readBatch, f)
			for _, e := range p.Events {
				if err := fn(e); err != nil {
					return err
				}
			}
			if err != nil {
				return err
			}
			next = p.LastSeq + 1
			if len(p.Events) < readBatch {
				break
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-woken:
		case <-tick:
		}
	}
}
