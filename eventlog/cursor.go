package eventlog

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Cursor reads the log in order through one ordered JetStream consumer,
// for catching up over many events: batched direct gets make the server
// rewrite every message's headers, while a consumer streams them as
// stored. A cursor holds an ephemeral consumer (in memory, removed when
// closed or idle), so use Read for small reads and Cursor for long ones.
// A Cursor is not safe for concurrent use.
type Cursor struct {
	f     Filter
	it    jetstream.MessagesContext
	pos   uint64 // the last sequence delivered (or the start's after)
	ended bool   // nothing matched after pos when the consumer started
	l     *Log
}

// OpenCursor returns a cursor positioned after sequence after, reading
// the events that pass f. Close it when done. Errors: ErrInvalid for a
// bad filter, ErrUnavailable, ErrClosed.
func (l *Log) OpenCursor(ctx context.Context, after uint64, f Filter) (*Cursor, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	if err := checkAfter(after); err != nil {
		return nil, err
	}
	cfg := jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   after + 1,
	}
	for _, c := range f.Categories {
		cfg.FilterSubjects = append(cfg.FilterSubjects, CategorySubject(c))
	}
	c, err := l.openCursor(ctx, cfg)
	if err != nil {
		return nil, err
	}
	c.f, c.pos, c.l = f, after, l
	return c, nil
}

// openCursor starts an ordered consumer with cfg.
func (l *Log) openCursor(ctx context.Context, cfg jetstream.OrderedConsumerConfig) (*Cursor, error) {
	l.mu.Lock()
	s, closed := l.rstream, l.closed
	l.mu.Unlock()
	if s == nil || closed {
		return nil, ErrClosed
	}
	cons, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: open cursor: %w", ErrUnavailable, err)
	}
	c := &Cursor{}
	if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
		c.ended = true
		return c, nil
	}
	// Buffered by bytes, not messages: 2000 messages of the largest size
	// the server takes would hold gigabytes.
	it, err := cons.Messages(jetstream.PullMaxBytes(l.cursorBuffer()))
	if err != nil {
		return nil, fmt.Errorf("%w: open cursor: %w", ErrUnavailable, err)
	}
	c.it = it
	return c, nil
}

// cursorBuffer is how many bytes a cursor's consumer buffers ahead:
// DefaultCursorBuffer, or room for two of the largest messages the server
// takes when that is more (a message larger than the buffer is never
// delivered).
func (l *Log) cursorBuffer() int {
	return max(DefaultCursorBuffer, 2*int(l.rc.MaxPayload())+64<<10)
}

// DefaultCursorBuffer is the most a cursor reads ahead of its caller.
const DefaultCursorBuffer = 16 << 20

// next returns the next message, or nil at the end of the log as it was
// when the last message was delivered.
func (c *Cursor) next(ctx context.Context) (jetstream.Msg, *jetstream.MsgMetadata, error) {
	if c.ended {
		return nil, nil, nil
	}
	m, err := c.it.Next(jetstream.NextContext(ctx))
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("%w: cursor: %w", ErrUnavailable, err)
	}
	md, err := m.Metadata()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: cursor: %w", ErrUnavailable, err)
	}
	if md.NumPending == 0 {
		c.ended = true // until more is appended; a new cursor sees it
	}
	return m, md, nil
}

// Pos is the last sequence the cursor has examined.
func (c *Cursor) Pos() uint64 { return c.pos }

// Next returns up to limit entries after Pos, like Read: a page with
// fewer than limit entries means the cursor has reached the end of the
// log as it was when the last message was delivered. Page.LastSeq is the
// new Pos. A message that is not a valid event is an entry with
// Malformed set; the cursor goes on past it.
func (c *Cursor) Next(ctx context.Context, limit int) (Page, error) {
	return c.NextUpTo(ctx, limit, 0)
}

// NextUpTo is Next with a bound on the page's size as well, like
// Log.ReadUpTo: the page ends once the data of its entries reach
// maxBytes, and holds one entry at least. maxBytes <= 0: no bound.
func (c *Cursor) NextUpTo(ctx context.Context, limit, maxBytes int) (Page, error) {
	p := Page{Events: []Event{}, LastSeq: c.pos}
	if limit <= 0 {
		return p, invalidf("limit %d: want a positive number", limit)
	}
	size := 0
	for len(p.Events) < limit && (maxBytes <= 0 || size < maxBytes) {
		m, md, err := c.next(ctx)
		if err != nil || m == nil {
			return p, err
		}
		// The sequence, subject and time are JetStream's delivery
		// metadata: headers stored in the message are data.
		e := decodeAt(m.Subject(), m.Headers(), m.Data(), md.Sequence.Stream, md.Timestamp, false)
		if e.Malformed != nil && c.l != nil {
			c.l.noteMalformed(&e)
		}
		c.pos, p.LastSeq = e.Seq, e.Seq
		if c.f.Match(&e) {
			p.Events = append(p.Events, e)
			size += len(e.Data)
		}
		if c.ended {
			break
		}
	}
	return p, nil
}

// Close removes the cursor's consumer.
func (c *Cursor) Close() {
	if c.it != nil {
		c.it.Stop()
	}
}
