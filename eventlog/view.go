package eventlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// The commit loop's view of the streams: where each one ends (its last
// message and the version of its last valid event). The loop advances it
// as it publishes, ahead of the log for the groups in flight, reads a
// stream's end from the log when the view does not hold it, and rebuilds
// the view when a write failed (stale) or it grew past maxView.

// head is where a stream ends.
type head struct {
	seq     uint64 // the last message on its subject (valid or not)
	version uint64 // its last valid event's version
}

const maxView = 100_000 // streams remembered before the view is rebuilt

// resetView forgets every stream and reads the log's tail again.
func (l *Log) resetView(ctx context.Context) error {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("%w: event stream info: %w", ErrUnavailable, err)
	}
	l.view = map[string]head{}
	l.predicted = info.State.LastSeq
	return nil
}

// viewOf returns a stream's last event as the loop sees it, reading it
// from the log when the view does not have it.
func (l *Log) viewOf(ctx context.Context, stream string) (head, error) {
	if h, ok := l.view[stream]; ok {
		return h, nil
	}
	h, err := l.streamHead(ctx, stream)
	if err != nil {
		return head{}, err
	}
	l.view[stream] = h
	return h, nil
}

// maxHeadWalk bounds how many messages streamHead reads back from the end
// of a stream.
const maxHeadWalk = 1000

// streamHead reads a stream's head from the log: the version of its last
// valid event, and the sequence of the last message on its subject (what
// JetStream compares Nats-Expected-Last-Subject-Sequence with).
//
// Messages written around the kernel do not count: one that is not a
// valid event, and one whose Fazt-Version does not follow the valid event
// before it (a version that goes back or jumps). So it reads back from
// the end, past malformed messages, until two events in a row have
// consecutive versions: the older one is taken as valid, and the events
// after it are checked forward from it, as ReadStream checks them.
func (l *Log) streamHead(ctx context.Context, stream string) (head, error) {
	for try := 1; ; try++ {
		h, err := l.readHead(ctx, stream)
		if !errors.Is(err, errTornRead) || try == maxTornReads {
			return h, err
		}
		select {
		case <-ctx.Done():
			return head{}, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
		case <-time.After(time.Duration(try) * 10 * time.Millisecond):
		}
	}
}

// errTornRead: reading a replicated stream's end back, a replica answered
// that an event's predecessors are missing. Replicas answer direct gets
// each from its own copy, and one that is catching up may answer a read
// back of the end another replica read: the head is read again.
var errTornRead = fmt.Errorf("%w: replicas answered inconsistently reading a stream's end; retry", ErrUnavailable)

const maxTornReads = 20

func (l *Log) readHead(ctx context.Context, stream string) (head, error) {
	subj := SubjectOf(stream)
	var h head
	var chain []Event // well-formed events, newest first
	var anchor Event  // the event taken as valid; zero: the stream's start
	upTo := uint64(0) // read the last message at or before it; 0: the end
walk:
	for steps := 0; ; steps++ {
		if steps == maxHeadWalk {
			return head{}, fmt.Errorf("%w: stream %s: its last %d messages are not events in sequence (written around the kernel), so the next version cannot be known; read them with GET /v1/streams/%s",
				ErrMalformed, stream, maxHeadWalk, stream)
		}
		m, err := l.lastOn(ctx, subj, upTo)
		switch {
		case errors.Is(err, ErrNotFound):
			if n := len(chain); n > 0 && chain[n-1].Version > 1 && !l.soleWriter && l.Replicas > 1 {
				// In a replicated stream only the commit loops of fazt
				// nodes write, each guarded: a first event past version
				// 1 means this read saw a replica behind the other.
				return head{}, errTornRead
			}
			break walk
		case err != nil:
			return head{}, err
		}
		e := decode(m)
		if h.seq == 0 {
			h.seq = e.Seq
		}
		if e.Malformed != nil {
			l.noteMalformed(&e)
		} else {
			if n := len(chain); n > 0 && chain[n-1].Version == e.Version+1 {
				anchor = e
				break walk
			}
			chain = append(chain, e)
		}
		if upTo = e.Seq - 1; upTo == 0 {
			break
		}
	}
	h.version = anchor.Version
	for i := len(chain) - 1; i >= 0; i-- {
		if e := chain[i]; e.Version == h.version+1 {
			h.version = e.Version
		} else {
			e.Malformed = &Malformed{Subject: subj, Fields: []string{"version"},
				Reason: fmt.Sprintf("version %d is out of sequence: the stream's event before it is at version %d", e.Version, h.version)}
			l.noteMalformed(&e)
		}
	}
	return h, nil
}

// lastOn returns the last message on subj at or before sequence upTo (0:
// the end of the log). ErrNotFound when there is none.
func (l *Log) lastOn(ctx context.Context, subj string, upTo uint64) (*nats.Msg, error) {
	if upTo == 0 {
		return l.directGet(ctx, directRequest{LastFor: subj})
	}
	var last *nats.Msg
	var more bool
	err := l.batch(ctx, directRequest{MultiLast: []string{subj}, UpToSeq: upTo, Batch: 1}, func(m *nats.Msg) error {
		last = m
		return nil
	}, &more)
	if err == nil && last == nil {
		err = ErrNotFound
	}
	return last, err
}
