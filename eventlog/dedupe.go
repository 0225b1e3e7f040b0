package eventlog

import (
	"context"
	"hash/maphash"
	"time"
)

// The memory of caller-chosen IDs. Those stored within DuplicateWindow
// (recent) answer a retry at once, with the original positions or an
// *IDConflictError; those published in a group not yet answered (flying)
// make a retry wait for its original's answer. A retry of an older ID is
// looked up in the log (lookup), and JetStream's own dedupe by
// Nats-Msg-Id backs all of this up.

// recentID is where a caller-chosen ID was stored, and when, with what
// a retry must match: the type and a fingerprint of the data.
type recentID struct {
	pos Position
	at  time.Time
	typ string
	sum uint64
}

// answerDuplicate answers an append whose events JetStream reported as
// already stored (by Nats-Msg-Id, within its dedupe window, wherever the
// ID was used), with their original positions, or with an
// *IDConflictError when the ID holds another event.
func (l *Log) answerDuplicate(ctx context.Context, r *appendReq) {
	l.answerDuplicateOr(ctx, r, nil, true)
}

// answerDuplicateOr answers with the original positions when every event
// of r is already in the log, and with otherwise when none is. global
// looks for the IDs in the whole log, not only in their streams.
func (l *Log) answerDuplicateOr(ctx context.Context, r *appendReq, otherwise error, global bool) {
	pos, err := l.lookup(ctx, r.events, global)
	// JetStream's leader said these are duplicates, but this node reads
	// its own replica, which may not have the originals yet: look again
	// until it does.
	for try := 1; global && err == nil && len(pos) < len(r.events) && !l.soleWriter && l.Replicas > 1 && try <= maxTornReads; try++ {
		time.Sleep(time.Duration(try) * 10 * time.Millisecond)
		pos, err = l.lookup(ctx, r.events, global)
	}
	switch {
	case err != nil && l.retryLater(r, err):
	case err != nil:
		r.res <- appendResp{err: err}
	case len(pos) == 0 && otherwise != nil:
		r.res <- appendResp{err: otherwise}
	case len(pos) < len(r.events):
		r.res <- appendResp{err: invalidf("%d of the %d events are already in the log and the others are not; an append is retried whole, with the same events", len(pos), len(r.events))}
	default:
		res := resultOf(r.events, pos)
		// Found after the log sent r again itself: the original is r's
		// own first copy, not an earlier append.
		res.Duplicate = !r.resent
		l.remember(r.events, res.Events) // the next retry is answered at once
		r.res <- appendResp{res: res}
	}
}

// dataSeed keys the fingerprints of recent events' data.
var dataSeed = maphash.MakeSeed()

// remember records caller-chosen IDs that were just stored, with what a
// retry must match.
func (l *Log) remember(events []Event, ps []Position) {
	now := time.Now()
	l.recentMu.Lock()
	for i, p := range ps {
		e := &events[i]
		if e.ID == "" {
			continue
		}
		l.recent[p.ID] = recentID{pos: p, at: now, typ: e.Type, sum: maphash.Bytes(dataSeed, e.Data)}
	}
	l.recentMu.Unlock()
}

// answerRecent answers r from the IDs stored within the dedupe window,
// when they are there: with the original positions for a retry, with an
// *IDConflictError when an ID holds another event. It reports whether
// it answered.
func (l *Log) answerRecent(r *appendReq) bool {
	l.recentMu.Lock()
	pos := make(map[string]Position)
	var conflict error
	for i := range r.events {
		e := &r.events[i]
		p, ok := l.recent[e.ID]
		if !ok {
			continue
		}
		stored := Event{ID: e.ID, Stream: p.pos.Stream, Type: p.typ, Seq: p.pos.Seq, Data: e.Data}
		if p.sum != maphash.Bytes(dataSeed, e.Data) {
			stored.Data = nil // differs
		}
		if err := sameEvent(e, &stored); err != nil && conflict == nil {
			conflict = err
		}
		pos[e.ID] = p.pos
	}
	l.recentMu.Unlock()
	switch {
	case len(pos) == 0:
		return false
	case conflict != nil:
		r.res <- appendResp{err: conflict}
	case len(pos) < len(r.events):
		r.res <- appendResp{err: invalidf("%d of the %d events are already in the log and the others are not; an append is retried whole, with the same events", len(pos), len(r.events))}
	default:
		r.res <- appendResp{res: resultOf(r.events, pos)}
	}
	return true
}

// pruneRecent forgets IDs older than the dedupe window, and published
// IDs whose groups are answered, at most every few seconds.
func (l *Log) pruneRecent() {
	now := time.Now()
	if now.Sub(l.lastPrune) < 5*time.Second {
		return
	}
	l.lastPrune = now
	l.doneMu.Lock()
	done := l.doneRnd
	l.doneMu.Unlock()
	for id, round := range l.flying {
		if round <= done {
			delete(l.flying, id)
		}
	}
	l.recentMu.Lock()
	for id, r := range l.recent {
		if now.Sub(r.at) > l.DuplicateWindow {
			delete(l.recent, id)
		}
	}
	l.recentMu.Unlock()
}

// copiesInFlight reports whether an append of group carries a
// caller-chosen ID published in a group not yet answered.
func (l *Log) copiesInFlight(group []*appendReq) bool {
	if len(l.flying) == 0 {
		return false
	}
	l.doneMu.Lock()
	done := l.doneRnd
	l.doneMu.Unlock()
	for _, r := range group {
		if !r.ownIDs {
			continue
		}
		for _, e := range r.events {
			if round, ok := l.flying[e.ID]; ok && round > done {
				return true
			}
		}
	}
	return false
}
