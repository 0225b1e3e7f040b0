package eventlog

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
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
	MultiLast []string   `json:"multi_last,omitempty"`
	UpToSeq   uint64     `json:"up_to_seq,omitempty"`
	// MaxBytes ends a batch once the messages sent reach it (the server
	// always sends one); 0: the server's max_pending.
	MaxBytes int `json:"max_bytes,omitempty"`
}

const readBatch = 1000

func (l *Log) directSubject() string { return jsAPI + "DIRECT.GET." + l.StreamName }

// status is the status of a direct get answer: "" for a stored message.
// A stored message always carries the Nats-Sequence JetStream adds, and a
// status answer never does; so a "Status" header stored inside a message
// by its publisher is never taken for the server's.
func status(m *nats.Msg) string {
	if directSeq(m) > 0 {
		return ""
	}
	return cmp.Or(lastValue(m.Header, headerStatus), "500")
}

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
		return nil, fmt.Errorf("%w: direct get: %w", ErrUnavailable, err)
	}
	switch st := status(m); st {
	case "":
		return m, nil
	case "404":
		return nil, ErrNotFound
	default:
		return nil, fmt.Errorf("%w: direct get: status %s %s", ErrUnavailable, st, m.Header.Get(headerDescription))
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
			last = directSeq(m) // JetStream's, never one stored in the message
			cont, err := fn(m)
			if err != nil {
				return err
			}
			stop = !cont
			return nil
		}, &more)
		if err != nil || stop || !more || last == 0 || last == math.MaxUint64 {
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
	ch := make(chan *nats.Msg, max(req.Batch, 1)+2)
	sub, err := l.rc.ChanSubscribe(inbox, ch)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer sub.Unsubscribe()
	body, _ := json.Marshal(req)
	if err := l.rc.PublishRequest(l.directSubject(), inbox, body); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	for {
		var m *nats.Msg
		select {
		case m = <-ch:
		case <-ctx.Done():
			if c := context.Cause(ctx); c != nil && !errors.Is(c, context.DeadlineExceeded) {
				return c
			}
			return fmt.Errorf("%w: batched read: %w", ErrUnavailable, ctx.Err())
		}
		switch st := status(m); st {
		case "":
			if err := fn(m); err != nil {
				return err
			}
		case "204": // end of batch
			np, _ := strconv.ParseUint(lastValue(m.Header, headerNumPending), 10, 64)
			*more = np > 0
			return nil
		case "404":
			*more = false
			return nil
		default:
			return fmt.Errorf("%w: batched read: status %s %s", ErrUnavailable, st, m.Header.Get(headerDescription))
		}
	}
}

// ReadStream returns up to limit events of one stream, from version from
// (1 is the first event) on. It returns ErrNotFound when the stream's
// subject holds no message at all.
//
// Messages on the stream's subject that are not valid events (see
// Malformed), and events whose version is out of sequence (see "Wire
// form" in the package doc), are not part of the stream's history: they
// have no version, and ReadStream passes over them, as the commit loop
// does when it numbers the next event. ReadStreamEntries shows them.
func (l *Log) ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]Event, error) {
	p, err := l.readStream(ctx, stream, from, limit, false)
	return p.Events, err
}

// StreamPage is a page of one stream's entries.
type StreamPage struct {
	// Events holds the stream's events and, in log order among them,
	// entries with Malformed set for the messages on its subject that are
	// not part of its history.
	Events []Event `json:"events"`
	// Omitted counts malformed entries left out of this page: at most
	// limit of them are shown per page.
	Omitted int `json:"malformed_omitted,omitempty"`
}

// ReadStreamEntries is ReadStream for showing a stream: limit counts its
// events, and the page also holds, as entries with Malformed set, the
// messages on its subject that are not part of its history (at most
// limit of them; Omitted counts the others). A stream whose messages
// are all malformed returns only those.
func (l *Log) ReadStreamEntries(ctx context.Context, stream string, from uint64, limit int) (StreamPage, error) {
	return l.readStream(ctx, stream, from, limit, true)
}

func (l *Log) readStream(ctx context.Context, stream string, from uint64, limit int, entries bool) (StreamPage, error) {
	p := StreamPage{Events: []Event{}}
	if err := ValidateStream(stream); err != nil {
		return p, err
	}
	if limit <= 0 {
		return p, invalidf("limit %d: want a positive number", limit)
	}
	from = max(from, 1)
	subj := SubjectOf(stream)
	lastMsg, err := l.directGet(ctx, directRequest{LastFor: subj})
	if errors.Is(err, ErrNotFound) {
		return p, fmt.Errorf("stream %s: %w", stream, ErrNotFound)
	}
	if err != nil {
		return p, err
	}
	// Start after the event of version from-1, found by binary search;
	// from the start of the stream if it cannot be found (a version out
	// of sequence misleads the search), skipping the events before from.
	start, at := uint64(1), uint64(0)
	if from > 1 {
		seq, ok, err := l.seqOfVersion(ctx, subj, from-1, directSeq(lastMsg))
		if err != nil {
			return p, err
		}
		if ok {
			start, at = seq+1, from-1
		}
	}
	malformed := 0
	err = l.scan(ctx, directRequest{Seq: start, NextFor: subj, Batch: min(limit, readBatch)}, func(m *nats.Msg) (bool, error) {
		e := decode(m)
		if e.Malformed == nil && e.Version != at+1 {
			e = outOfSequence(m, e, at)
		}
		if e.Malformed != nil {
			l.noteMalformed(&e)
			switch {
			case !entries || at+1 < from:
			case malformed < limit:
				malformed++
				p.Events = append(p.Events, e)
			default:
				p.Omitted++
			}
			return true, nil
		}
		at = e.Version
		if e.Version < from {
			return true, nil
		}
		p.Events = append(p.Events, e)
		return len(p.Events)-malformed < limit, nil
	})
	return p, err
}

// outOfSequence turns an event whose version does not follow the
// stream's last (at) into a malformed entry. Only the log numbers
// versions; a stored Fazt-Version that goes back or jumps was written
// around it, and counting it would reuse or skip versions.
func outOfSequence(m *nats.Msg, e Event, at uint64) Event {
	reason := fmt.Sprintf("version %d is out of sequence: the stream's event before it is at version %d, so this one would be %d", e.Version, at, at+1)
	return Event{Seq: e.Seq, Stream: e.Stream, Time: e.Time,
		Malformed: malformedOf(m.Subject, m.Header, m.Data, true, []string{"version"}, reason)}
}

// seqOfVersion finds the global sequence of a stream's event with the
// given version by binary search over the log: versions grow with
// sequences, so O(log n) reads find it. Malformed messages are stepped
// over. ok is false when no message states that version.
func (l *Log) seqOfVersion(ctx context.Context, subj string, version, hi uint64) (seq uint64, ok bool, err error) {
	lo := uint64(1)
	hi++ // the search is over [lo, hi): hi is past the stream's last message
	for lo < hi {
		mid := lo + (hi-lo)/2
		e, found, err := l.nextValid(ctx, subj, mid, hi)
		if err != nil {
			return 0, false, err
		}
		switch {
		case !found || e.Version > version:
			hi = mid
		case e.Version == version:
			return e.Seq, true, nil
		default:
			lo = e.Seq + 1
		}
	}
	return 0, false, nil
}

// nextValid returns the first well-formed event on subj at or after seq
// and before hi.
func (l *Log) nextValid(ctx context.Context, subj string, seq, hi uint64) (e Event, found bool, err error) {
	err = l.scan(ctx, directRequest{Seq: seq, NextFor: subj, Batch: 16}, func(m *nats.Msg) (bool, error) {
		d := decode(m)
		if d.Seq >= hi {
			return false, nil
		}
		if d.Malformed == nil {
			e, found = d, true
			return false, nil
		}
		return true, nil
	})
	return e, found, err
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

// Match reports whether e passes the filter. A malformed entry has no
// type that can be trusted: it passes unless the filter's categories
// leave its stream out.
func (f Filter) Match(e *Event) bool {
	return (len(f.Types) == 0 || e.Malformed != nil || slices.Contains(f.Types, e.Type)) &&
		(len(f.Categories) == 0 || slices.Contains(f.Categories, e.Category()))
}

// subject narrows the read server-side when a single category is asked.
func (f Filter) subject() string {
	if len(f.Categories) == 1 {
		return CategorySubject(f.Categories[0])
	}
	return ""
}

// Page is a slice of the whole log.
type Page struct {
	// Events holds the events, and the malformed entries (Malformed set)
	// for messages that are not valid events, in log order.
	Events []Event `json:"events"`
	// LastSeq is the last sequence examined; pass it as after to continue.
	// With a filter it can be past the last event returned.
	LastSeq uint64 `json:"last_seq"`
}

// checkAfter refuses a position that no sequence can follow: after+1
// would wrap to the start of the log.
func checkAfter(after uint64) error {
	if after == math.MaxUint64 {
		return invalidf("after %d: no sequence can follow it", after)
	}
	return nil
}

// Read returns up to limit entries with sequence greater than after that
// pass the filter. A message in the log that is not a valid event is an
// entry with Malformed set, at its sequence; reading goes on past it.
// Versions are checked by ReadStream, not here: a version out of
// sequence needs the stream's history.
func (l *Log) Read(ctx context.Context, after uint64, limit int, f Filter) (Page, error) {
	return l.ReadUpTo(ctx, after, limit, 0, f)
}

// ReadUpTo is Read with a bound on the page's size as well: the page
// ends once the data of its entries reach maxBytes (see Page.DataBytes),
// and holds one entry at least, however large. maxBytes <= 0: no bound.
// A page that ends at limit or at maxBytes may have more after it; one
// that ends before both has reached the end of the log.
func (l *Log) ReadUpTo(ctx context.Context, after uint64, limit, maxBytes int, f Filter) (Page, error) {
	if limit <= 0 {
		return Page{}, invalidf("limit %d: want a positive number", limit)
	}
	if err := f.validate(); err != nil {
		return Page{}, err
	}
	if err := checkAfter(after); err != nil {
		return Page{}, err
	}
	p := Page{Events: []Event{}, LastSeq: after}
	req := directRequest{Seq: after + 1, NextFor: f.subject(), Batch: readBatch, MaxBytes: max(maxBytes, 0)}
	if len(f.Types) == 0 && len(f.Categories) <= 1 {
		req.Batch = min(limit, readBatch)
	}
	size := 0
	err := l.scan(ctx, req, func(m *nats.Msg) (bool, error) {
		e := decode(m)
		p.LastSeq = e.Seq
		if e.Malformed != nil {
			l.noteMalformed(&e)
		}
		if f.Match(&e) {
			p.Events = append(p.Events, e)
			size += len(e.Data)
		}
		return len(p.Events) < limit && (maxBytes <= 0 || size < maxBytes), nil
	})
	return p, err
}

// DataBytes is the size of the page's event data (Event.Data), what
// ReadUpTo and Cursor.NextUpTo bound.
func (p Page) DataBytes() int {
	n := 0
	for i := range p.Events {
		n += len(p.Events[i].Data)
	}
	return n
}

// Subscribe calls fn for every entry with sequence greater than after
// that passes the filter, in order: first those already in the log, then
// new ones as they are appended. Malformed entries are passed to fn like
// events (check Event.Malformed). It creates no JetStream consumer: it
// reads with batched direct gets from its own position, woken by this
// log's appends and, when other writers may exist, by polling every
// PollInterval; so it never misses or repeats an entry. It returns when
// ctx ends (with ctx's error) or when fn returns an error (that error).
func (l *Log) Subscribe(ctx context.Context, after uint64, f Filter, fn func(Event) error) error {
	if err := f.validate(); err != nil {
		return err
	}
	if err := checkAfter(after); err != nil {
		return err
	}
	var tick <-chan time.Time
	if !l.soleWriter {
		t := time.NewTicker(l.PollInterval)
		defer t.Stop()
		tick = t.C
	}
	pos := after
	for {
		woken := l.stored() // before reading, so no append is missed
		for pos < math.MaxUint64 {
			p, err := l.Read(ctx, pos, readBatch, f)
			for _, e := range p.Events {
				if err := fn(e); err != nil {
					return err
				}
			}
			if err != nil {
				return err
			}
			pos = p.LastSeq
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

// malformedSeen remembers the malformed messages readers came across.
type malformedSeen struct {
	mu    sync.Mutex
	seqs  map[uint64]struct{}
	count uint64
	last  Event
}

// maxSeenSeqs bounds the sequences remembered to count each malformed
// message once; past it, a message read again may be counted again.
const maxSeenSeqs = 100_000

// noteMalformed counts a malformed entry (once per sequence) for Stats,
// and logs the first ones.
func (l *Log) noteMalformed(e *Event) {
	s := &l.seen
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seqs[e.Seq]; ok {
		return
	}
	if s.seqs == nil {
		s.seqs = map[uint64]struct{}{}
	}
	if len(s.seqs) < maxSeenSeqs {
		s.seqs[e.Seq] = struct{}{}
	}
	s.count++
	if e.Seq >= s.last.Seq {
		s.last = Event{Seq: e.Seq, Stream: e.Stream, Malformed: &Malformed{Subject: e.Malformed.Subject, Reason: e.Malformed.Reason, Fields: e.Malformed.Fields}}
	}
	if s.count <= 100 || s.count%1000 == 0 {
		l.Logger.Warn("the log holds a message that is not a valid event, written around the kernel; readers show it as a malformed entry and go past it",
			"seq", e.Seq, "subject", e.Malformed.Subject, "reason", e.Malformed.Reason, "malformed_seen", s.count)
	}
}

// LastMalformed returns the newest malformed entry readers have come
// across since Open (without its raw bytes), and false if none.
func (l *Log) LastMalformed() (Event, bool) {
	l.seen.mu.Lock()
	defer l.seen.mu.Unlock()
	return l.seen.last, l.seen.count > 0
}
