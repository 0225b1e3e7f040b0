package eventlog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"slices"
	"time"
)

// The finisher: it awaits each published group's acknowledgements in
// order, settles the units JetStream was not asked to acknowledge, makes
// what landed durable with one fsync for every group it has collected
// (strict), wakes the readers, and answers the callers: results,
// duplicates, retries or errors.

func (l *Log) finishLoop() {
	defer l.wg.Done()
	for f := range l.flights {
		batch := []*flight{f}
		l.await(f)
		// Flights queued behind this one are acknowledged moments later:
		// wait for them too, so that one fsync covers them all.
	fold:
		for len(batch) <= cap(l.flights) {
			select {
			case g, ok := <-l.flights:
				if !ok {
					break fold
				}
				l.await(g)
				batch = append(batch, g)
			default:
				break fold
			}
		}
		if l.syncer != nil && slices.ContainsFunc(batch, func(f *flight) bool { return anySucceeded(f.acks) }) {
			l.stats.fsyncs.Add(1)
			if err := l.syncer.sync(); err != nil {
				l.Logger.Error("fsync of the event log failed: appends are answered with ErrUnavailable; check the disk", "dir", l.syncer.dir, "err", err)
				for _, f := range batch {
					for i := range f.acks {
						if f.acks[i].err == nil {
							f.acks[i].err = fmt.Errorf("%w: fsync of the log failed, the append may not be durable: %w", ErrUnavailable, err)
						}
					}
				}
			}
		}
		for _, f := range batch {
			l.answer(f)
		}
	}
}

// await waits for a flight's acknowledgements, or its deadline, and tells
// readers what was stored. With other writers it sends the flight again
// every ResendInterval until JetStream answers (resend).
func (l *Log) await(f *flight) {
	for waiting := true; waiting; {
		wait, again := time.Until(f.deadline), false
		if f.copies != nil && wait > l.ResendInterval {
			wait, again = l.ResendInterval, true
		}
		timer := time.NewTimer(wait)
		select {
		case <-f.complete:
			waiting = false
		case <-timer.C:
			waiting = again
			if again {
				l.resend(f)
			}
		case <-l.abort: // Close's context ended: wait no longer
			waiting = false
		}
		timer.Stop()
	}
	l.flightMu.Lock()
	delete(l.inflight, f.round)
	for u := range f.acks {
		if f.acks[u].err == errNoAck {
			f.acks[u].err = l.noAck()
		}
	}
	l.flightMu.Unlock()
	l.settle(f)
	// Stored is readable: wake readers now, so that they fold the events
	// while the fsync runs rather than after it.
	if anySucceeded(f.acks) {
		l.noteStored(f.acks)
		l.wake()
	}
}

// resends reports whether flights are sent again when JetStream does not
// answer: only with other writers, where one group is in flight, each of
// its units guarded per stream and every event carrying Nats-Msg-Id. A
// stream leader that dies with the group in flight answers nothing; the
// same messages sent again reach the new leader once it is elected, and
// land once: JetStream drops a copy of what it stored (Nats-Msg-Id,
// within DuplicateWindow), and the guards refuse a copy in any case, so
// at most one copy lands. Whichever answer comes first is the
// flight's: a copy refused as a duplicate, or by its guard, is answered
// from the log (the original positions), not as a conflict.
func (l *Log) resends() bool { return !l.soleWriter && l.ResendInterval > 0 }

// ackTimeout is how long a flight waits for JetStream's answers in all:
// RequestTimeout, or FailoverTimeout when the log resends (within half
// of DuplicateWindow, so that JetStream still knows every ID sent).
func (l *Log) ackTimeout() time.Duration {
	if !l.resends() {
		return l.RequestTimeout
	}
	return max(l.RequestTimeout, min(l.FailoverTimeout, l.DuplicateWindow/2))
}

// resend publishes the units of f not yet answered again, a batch under
// a new batch ID (the old one may be half staged on a leader that died).
func (l *Log) resend(f *flight) {
	l.flightMu.Lock()
	var todo []int
	for u := range f.units {
		if f.acks[u].err == errNoAck {
			todo = append(todo, u)
		}
	}
	l.flightMu.Unlock()
	for _, u := range todo {
		for _, r := range f.units[u].reqs {
			if !r.resent {
				r.resent = true
				l.stats.resent.Add(1)
			}
		}
		msgs := f.copies[u]
		if len(msgs) > 1 {
			var b [12]byte
			_, _ = rand.Read(b[:])
			id := hex.EncodeToString(b[:])
			for _, m := range msgs {
				m.Header.Set(headerBatchID, id)
			}
		}
		for _, m := range msgs {
			if err := l.nc.PublishMsg(m); err != nil {
				l.Logger.Debug("resending an append", "err", err)
				break
			}
		}
	}
	l.Logger.Debug("no answer from JetStream: append sent again with the same IDs", "round", f.round, "units", len(todo))
}

// settle fills in the acknowledgements of the units JetStream was not
// asked to acknowledge. Every unit of the sole writer expects the log's
// last sequence to be the one predicted, so what landed is a prefix of
// what was published, at the predicted sequences. When the last unit
// landed where predicted, so did every unit before it. Otherwise the
// log's last sequence says which units landed; the others are retried
// when JetStream has answered for the whole flight, and reported as
// unknown when it has not.
func (l *Log) settle(f *flight) {
	n := len(f.units)
	unasked := 0
	for u := range f.acks {
		if f.acks[u].err == errUnasked {
			unasked++
		}
	}
	if unasked == 0 {
		return
	}
	if a := f.acks[n-1]; a.err == nil && !a.duplicate && a.seq == f.units[n-1].last {
		for u := range f.acks {
			if f.acks[u].err == errUnasked {
				f.acks[u] = unitAck{seq: f.units[u].last}
			}
		}
		return
	}
	// JetStream answered for every unit it was asked about, so it has
	// processed the whole flight, in order; after a timeout it may still
	// be storing it.
	answered := true
	for u := range f.acks {
		if f.units[u].asked && errors.Is(f.acks[u].err, ErrUnavailable) {
			answered = false
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.RequestTimeout)
	last, err := l.LastSeq(ctx)
	cancel()
	for u := range f.acks {
		if f.acks[u].err != errUnasked {
			continue
		}
		switch {
		case err != nil:
			f.acks[u].err = fmt.Errorf("%w: the append may or may not have landed, retry it with the same IDs: %w", ErrUnavailable, err)
		case f.units[u].last <= last:
			f.acks[u] = unitAck{seq: f.units[u].last}
		case answered:
			f.acks[u].err = errNotStored
		default:
			f.acks[u].err = l.noAck()
		}
	}
}

// noAck is the answer for a unit JetStream has not acknowledged, in time
// or before Close's context ended: its outcome is unknown.
func (l *Log) noAck() error {
	if l.aborted() {
		return fmt.Errorf("%w: the log closed (Close's context ended) before JetStream acknowledged the append; it may or may not have landed: read the log, or retry it with the same IDs", ErrUnavailable)
	}
	return fmt.Errorf("%w: no acknowledgement from JetStream within %v (a cluster without a stream leader, or an unreachable server); the append may or may not have landed, retry it with the same IDs", ErrUnavailable, l.ackTimeout())
}

// answer answers a finished flight's appends: results, duplicates,
// retries or errors.
func (l *Log) answer(f *flight) {
	ctx, cancel := context.WithTimeout(context.Background(), l.RequestTimeout)
	defer cancel()
	for u, un := range f.units {
		a := f.acks[u]
		if a.err != nil || a.duplicate || a.seq != un.last {
			// Whatever follows was built on this unit landing where it
			// was predicted.
			l.stale.Store(true)
		}
		switch {
		case a.err == nil && a.duplicate:
			for _, r := range un.reqs {
				l.answerDuplicate(ctx, r)
			}
		case a.err == nil:
			seq := a.seq - uint64(un.n)
			for _, r := range un.reqs {
				res := Result{Events: make([]Position, len(r.events))}
				for i, e := range r.events {
					seq++
					res.Events[i] = Position{ID: e.ID, Stream: e.Stream, Seq: seq, Version: e.Version}
				}
				res.LastSeq = seq
				if r.ownIDs {
					l.remember(r.events, res.Events)
				}
				l.stats.appends.Add(1)
				l.stats.events.Add(uint64(len(r.events)))
				r.res <- appendResp{res: res}
			}
		case errors.Is(a.err, errNotStored):
			// The write was refused because one before it was: try it
			// again, with its own acknowledgement.
			for _, r := range un.reqs {
				if l.mayRetry(r, a.err) {
					l.retry(r)
				}
			}
		case errors.Is(a.err, ErrUnavailable):
			// The outcome is unknown: the unit may have landed. Sent
			// again, events with IDs the log made would be stored twice,
			// so the callers are told and decide.
			for _, r := range un.reqs {
				l.fail(r, a.err)
			}
		case len(un.reqs) > 1:
			// A shared batch was refused: retrying each append on its own
			// finds the one that caused it.
			for _, r := range un.reqs {
				if l.mayRetry(r, a.err) {
					r.alone = true
					l.retry(r)
				}
			}
		default:
			r := un.reqs[0]
			var je *jsError
			if !errors.As(a.err, &je) {
				l.fail(r, a.err)
				continue
			}
			switch je.code {
			case errCodeBatchDuplicate, errCodeDupConflict:
				l.answerDuplicate(ctx, r)
			case errCodeWrongLastSeq, errCodeWrongLastSeqConst:
				if !l.mayRetry(r, a.err) {
					continue
				}
				if r.tries == 1 || l.soleWriter || l.aborted() {
					// For the sole writer this is only the chain: a write
					// before it failed. Retried at once, it keeps its place.
					l.retry(r)
					continue
				}
				// Writers racing for the same streams back off, at random,
				// so that one of them gets through. Close waits for them.
				l.backoffs.Add(1)
				time.AfterFunc(time.Duration(mathrand.Int64N(int64(min(r.tries, 20))*int64(time.Millisecond))), func() {
					l.retry(r)
					l.backoffs.Add(-1)
				})
			default:
				l.fail(r, a.err)
			}
		}
	}
	l.doneMu.Lock()
	l.doneRnd = f.round
	l.doneCond.Broadcast()
	l.doneMu.Unlock()
}

// fail answers r with err. An unknown outcome (ErrUnavailable) once
// Close's context has ended counts as cut short by it.
func (l *Log) fail(r *appendReq, err error) {
	if errors.Is(err, ErrUnavailable) && l.aborted() {
		l.cut.unknown.Add(1)
	}
	r.res <- appendResp{err: err}
}

// mayRetry counts a try of r after a refused write and reports whether
// r may be retried; past maxTries it answers r with ErrUnavailable.
func (l *Log) mayRetry(r *appendReq, refused error) bool {
	if r.tries++; r.tries <= maxTries {
		return true
	}
	// %v: the last refusal is context, not the answer's kind (one for
	// lack of storage would turn this 503 into a 507).
	l.fail(r, fmt.Errorf("%w: the append was refused %d times, the last: %v", ErrUnavailable, maxTries, refused))
	return false
}

// noteStored raises the newest stored sequence that WaitTail reports.
func (l *Log) noteStored(acks []unitAck) {
	for _, a := range acks {
		if a.err != nil || a.duplicate {
			continue
		}
		for {
			cur := l.storedSeq.Load()
			if a.seq <= cur || l.storedSeq.CompareAndSwap(cur, a.seq) {
				break
			}
		}
	}
}

func anySucceeded(acks []unitAck) bool {
	for _, a := range acks {
		if a.err == nil && !a.duplicate {
			return true
		}
	}
	return false
}

// wake tells subscribers that new events are stored.
func (l *Log) wake() {
	l.notifyMu.Lock()
	close(l.notify)
	l.notify = make(chan struct{})
	l.notifyMu.Unlock()
}

// stored returns a channel closed when new events are stored.
func (l *Log) stored() <-chan struct{} {
	l.notifyMu.Lock()
	defer l.notifyMu.Unlock()
	return l.notify
}
