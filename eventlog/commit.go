package eventlog

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// How appends are committed.
//
// Appends queue to one commit loop, which gathers whatever is waiting into
// a group, checks expectations against its view of every stream, assigns
// versions and publishes the group without waiting: single events as
// plain publishes, and a group holding any multi-event append as one
// atomic batch. The sole writer asks JetStream to acknowledge only a
// group's last unit (settle says why that is enough). A finisher collects
// the acknowledgements of each group in order, makes every group it has
// collected durable with one fsync (strict) and answers the callers.
// While the finisher waits, the loop publishes the next groups (up to
// flightDepth), so the disk and the CPU overlap. The package doc
// ("Concurrency") says how the writes in flight are guarded; any failure
// marks the view stale, and the loop then waits for the groups in
// flight, rebuilds the view from the log, and retries what was refused.
//
// This file holds the loop: gathering appends into groups, checking and
// versioning them, and publishing. The loop's view of the streams is in
// view.go, the finisher in finish.go, the acknowledgements and
// JetStream's error codes in ack.go, and the memory of caller-chosen IDs
// in dedupe.go.

// commitState is the commit loop's and the finisher's state.
type commitState struct {
	// Owned by the commit loop.
	backlog   []*appendReq      // appends gathered but not yet launched, in arrival order
	free      []*msgBuf         // buffers of messages published, to reuse
	flying    map[string]uint64 // caller-chosen IDs published, by round
	arrivals  uint64
	view      map[string]head // each stream's last event, counting groups in flight
	predicted uint64          // sequence of the last message published
	round     uint64
	lastPrune time.Time

	flights chan *flight

	// Shared between the loop and the finisher.
	stale    atomic.Bool // a group failed: rebuild the view before the next
	doneMu   sync.Mutex
	doneCond *sync.Cond
	doneRnd  uint64 // the last round the finisher completed

	retryMu   sync.Mutex
	retryQ    []*appendReq
	retryShut bool
	kick      chan struct{}

	flightMu sync.Mutex
	inflight map[uint64]*flight

	recentMu sync.Mutex
	recent   map[string]recentID // caller-chosen IDs stored within DuplicateWindow

	ackSub    *nats.Subscription
	ackPrefix string
	syncer    *blockSyncer

	// Shutting down (Close).
	senders  atomic.Int64  // appends between AppendAsync's closed check and the queue
	backoffs atomic.Int64  // retries waiting out a backoff before they queue
	abort    chan struct{} // closed when Close's context ends first
	cut      struct {
		unknown, unsent atomic.Int64 // appends answered because Close's context ended
	}

	stats struct {
		appends, events, groups, batches, fsyncs, retries, rebuilds, resent atomic.Uint64
	}
}

// Stats counts what the log's commit loop has done since Open. They say
// how well group commit works (Events per Fsync) and how often writes
// were refused and retried.
type Stats struct {
	Appends      uint64 // appends written (not duplicates or refusals)
	Events       uint64 // events those appends wrote
	Groups       uint64 // groups published: a group is gathered, versioned and published at once
	Batches      uint64 // groups published as one JetStream atomic batch
	Fsyncs       uint64 // fsyncs of the stream by the log (strict durability)
	Retries      uint64 // appends published again after a write was refused
	ViewRebuilds uint64 // times the commit loop read its view of the streams from the log again
	// Resent counts appends sent again, with the same IDs, because
	// JetStream did not answer within ResendInterval (a stream leader
	// lost, say; only when other writers may exist).
	Resent uint64
	// Malformed counts the messages that are not valid events (written
	// around the kernel: bad envelope, data that is not JSON, a version
	// out of sequence) that readers and the commit loop came across,
	// each once; LastMalformed shows the newest.
	Malformed uint64
}

// Stats returns the commit loop's counters.
func (l *Log) Stats() Stats {
	s := &l.stats
	st := Stats{
		Appends: s.appends.Load(), Events: s.events.Load(), Groups: s.groups.Load(), Batches: s.batches.Load(),
		Fsyncs: s.fsyncs.Load(), Retries: s.retries.Load(), ViewRebuilds: s.rebuilds.Load(), Resent: s.resent.Load(),
	}
	l.seen.mu.Lock()
	st.Malformed = l.seen.count
	l.seen.mu.Unlock()
	return st
}

// flightDepth is how many published groups may queue for the finisher
// while it finishes one: all of them then share one fsync.
const flightDepth = 3

// maxTries bounds how often an append overtaken by other writers is
// retried before the caller gets ErrUnavailable.
const maxTries = 50

func (l *Log) startCommitter(ctx context.Context) error {
	l.soleWriter = l.srv != nil && l.Cluster == nil && !(l.Listen != "" && l.ListenWritable) && l.Replicas <= 1
	l.notify = make(chan struct{})
	l.doneCond = sync.NewCond(&l.doneMu)
	l.kick = make(chan struct{}, 1)
	l.inflight = map[uint64]*flight{}
	if err := l.resetView(ctx); err != nil {
		return err
	}
	last, err := l.LastSeq(ctx)
	if err != nil {
		return err
	}
	l.storedSeq.Store(last)
	// The IDs callers chose in the last DuplicateWindow are not read back
	// from the log, which would make a start after a burst re-read the
	// burst (1.2-1.9 s per 200k events): a retry of an ID made before
	// Open is looked up in its stream when it comes (findExisting), and
	// JetStream's own dedupe table, rebuilt when the stream started,
	// backs that up.
	l.recent = make(map[string]recentID)
	l.flying = map[string]uint64{}
	if l.srv != nil && l.Durability == Strict && l.Cluster == nil {
		dir := filepath.Join(l.srv.JetStreamConfig().StoreDir, l.accountName(), "streams", l.StreamName, "msgs")
		var err error
		if l.syncer, err = newBlockSyncer(dir); err != nil {
			return err
		}
	}
	l.ackPrefix = l.nc.NewRespInbox() + "."
	sub, err := l.nc.Subscribe(l.ackPrefix+">", l.onAck)
	if err != nil {
		return fmt.Errorf("subscribe for acknowledgements: %w", err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	l.ackSub = sub
	l.reqs = make(chan *appendReq, 4096)
	l.done = make(chan struct{})
	l.abort = make(chan struct{})
	l.flights = make(chan *flight, flightDepth) // groups queued for the finisher
	l.wg.Add(2)
	go l.commitLoop()
	go l.finishLoop()
	return nil
}

// waitIdle waits until the finisher has completed every group published.
func (l *Log) waitIdle() {
	l.doneMu.Lock()
	for l.doneRnd < l.round {
		l.doneCond.Wait()
	}
	l.doneMu.Unlock()
}

func (l *Log) commitLoop() {
	defer l.wg.Done()
	defer close(l.flights)
	for {
		group := l.gather()
		if group == nil || l.aborted() {
			l.stop(group)
			return
		}
		if f := l.launch(group); f != nil {
			l.flights <- f
			if f.batch {
				l.stats.batches.Add(1)
				// JetStream stages an atomic batch in a store of its own,
				// which costs milliseconds whatever its size: let the
				// appends that arrive meanwhile gather into one next
				// group rather than into several small batches.
				l.waitIdle()
			}
		}
	}
}

// gather takes the appends held back earlier, then every one queued, up
// to MaxBatch events. It returns nil when the log has closed and nothing
// is left to commit (drained), and an empty group when retries are
// waiting (launch takes them).
func (l *Log) gather() []*appendReq {
	queue := l.backlog
	l.backlog = nil
	var group []*appendReq
	n := 0
	var ids map[string]bool // caller-chosen IDs in the group
	add := func(r *appendReq) bool {
		if len(group) > 0 && (r.alone || group[0].alone || n+len(r.events) > l.MaxBatch || r.ownIDs && hasAny(ids, r.events)) {
			// The group is full, or r must go alone, or two appends
			// with one ID go in turn.
			return false
		}
		if r.ownIDs {
			if ids == nil {
				ids = map[string]bool{}
			}
			for _, e := range r.events {
				if e.ID != "" {
					ids[e.ID] = true
				}
			}
		}
		group = append(group, r)
		n += len(r.events)
		return true
	}
	for i, r := range queue {
		if !add(r) {
			l.backlog = queue[i:]
			return group
		}
	}
	if len(group) == 0 {
		select {
		case r := <-l.reqs:
			l.arrived(r)
			add(r)
		case <-l.kick:
			return []*appendReq{}
		case <-l.done:
			if l.drained() {
				return nil
			}
			return []*appendReq{}
		}
	}
	for n < l.MaxBatch {
		select {
		case r := <-l.reqs:
			l.arrived(r)
			if !add(r) {
				l.backlog = append(l.backlog, r)
				return group
			}
		default:
			return group
		}
	}
	return group
}

// arrived numbers an append in the order the loop received it: appends
// retried after a failed write go back in that order, so that one
// caller's appends land in the order they were made.
func (l *Log) arrived(r *appendReq) {
	l.arrivals++
	r.order = l.arrivals
	if l.resends() {
		r.deadline = time.Now().Add(l.ackTimeout())
	}
}

func hasAny(ids map[string]bool, events []Event) bool {
	for _, e := range events {
		if e.ID != "" && ids[e.ID] {
			return true
		}
	}
	return false
}

// drained reports, once Close has begun, whether nothing is left to
// commit: no append queued or on its way to the queue, every flight
// answered, no retry waiting. Close's context ending makes it true at
// once (stop fails what is left). It waits for the flights, whose answers
// may queue retries, and for the appends that passed AppendAsync's check
// before Close: those are committed too.
func (l *Log) drained() bool {
	for !l.aborted() {
		if len(l.reqs) > 0 {
			return false
		}
		if l.senders.Load() > 0 {
			runtime.Gosched() // an append is a moment from the queue
			continue
		}
		l.waitIdle()
		l.retryMu.Lock()
		retries := len(l.retryQ) > 0
		l.retryMu.Unlock()
		if retries {
			return false
		}
		if l.backoffs.Load() > 0 {
			select {
			case <-l.kick: // retry queues it and kicks
			case <-l.abort:
			}
			return false
		}
		return len(l.reqs) == 0 && l.senders.Load() == 0
	}
	return true
}

// stop ends the loop. After drained nothing is left; when Close's context
// ended first, the appends the loop still holds (queued, held back,
// waiting for a retry) were never sent: they fail with ErrClosed, and
// nothing of them is written.
func (l *Log) stop(group []*appendReq) {
	l.retryMu.Lock()
	l.retryShut = true
	q := l.retryQ
	l.retryQ = nil
	l.retryMu.Unlock()
	for _, r := range slices.Concat(group, l.backlog, q) {
		l.failUnsent(r)
	}
	l.backlog = nil
	for {
		select {
		case r := <-l.reqs:
			l.failUnsent(r)
			continue
		default:
		}
		// An append that passed AppendAsync's check before Close is a
		// moment from the queue: it must find someone to answer it.
		if l.senders.Load() == 0 && len(l.reqs) == 0 {
			return
		}
		runtime.Gosched()
	}
}

// errUnsent answers the appends still queued when Close's context ended.
var errUnsent = fmt.Errorf("%w: the append was still queued when Close's context ended; nothing of it was written", ErrClosed)

// failUnsent answers r, which was never sent, at a Close cut short.
func (l *Log) failUnsent(r *appendReq) {
	l.cut.unsent.Add(1)
	r.res <- appendResp{err: errUnsent}
}

// aborted reports whether Close's context has ended: nothing waits for
// JetStream any more.
func (l *Log) aborted() bool {
	select {
	case <-l.abort:
		return true
	default:
		return false
	}
}

func (l *Log) retry(r *appendReq) {
	l.stats.retries.Add(1)
	l.retryMu.Lock()
	if l.retryShut {
		l.retryMu.Unlock()
		l.failUnsent(r) // the loop has stopped: Close's context ended
		return
	}
	l.retryQ = append(l.retryQ, r)
	l.retryMu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

func (l *Log) takeRetries() []*appendReq {
	l.retryMu.Lock()
	defer l.retryMu.Unlock()
	q := l.retryQ
	l.retryQ = nil
	return q
}

// flight is one published group, waiting for its acknowledgements.
type flight struct {
	round     uint64
	batch     bool // a unit is an atomic batch
	prefix    string
	units     []unit
	acks      []unitAck
	remaining int
	complete  chan struct{}
	deadline  time.Time
	// copies of each unit's messages, to send again when JetStream does
	// not answer (only with other writers: see resend).
	copies [][]*nats.Msg
}

// unit is what JetStream stores as one: one event, or one atomic batch.
type unit struct {
	reqs  []*appendReq
	msgs  []*msgBuf // until published: the buffers are reused after
	n     int       // messages
	last  uint64    // the sequence predicted for the last message
	asked bool      // JetStream is asked to acknowledge it
}

// unitAck is JetStream's answer for one unit.
type unitAck struct {
	seq       uint64 // of the unit's last message
	duplicate bool
	err       error
}

// An unanswered unit's acknowledgement is errNoAck until JetStream
// answers, and errUnasked when JetStream was not asked to answer: the
// finisher then settles it from the chain (settle).
var (
	errNoAck     = errors.New("no acknowledgement")
	errUnasked   = errors.New("not acknowledged on its own")
	errNotStored = errors.New("not stored: a write before it in the chain failed")
)

// launch checks and publishes a group. It returns the flight to finish,
// or nil when every append was answered without writing.
func (l *Log) launch(group []*appendReq) *flight {
	ctx, cancel := context.WithTimeout(context.Background(), l.RequestTimeout)
	defer cancel()
	l.pruneRecent()

	if l.copiesInFlight(group) {
		// An append retried while its original is still in flight waits
		// for the original's answer: sent, JetStream would drop it as a
		// duplicate and break the chain of every write behind it.
		l.waitIdle()
	}
	if !l.soleWriter || l.stale.Load() || len(l.view) > maxView {
		// Other writers may move any stream at any time, so predictions
		// are worthless: one group in flight, guarded by what the log
		// confirmed. A failed write (stale) waits for every group in
		// flight, which fail after it and queue their retries.
		l.waitIdle()
	}
	if retries := l.takeRetries(); len(retries) > 0 {
		// A failure is always marked stale before its retries are queued,
		// so after the wait above every retry of a failure is here.
		all := slices.Concat(retries, group, l.backlog)
		slices.SortStableFunc(all, func(a, b *appendReq) int { return cmp.Compare(a.order, b.order) })
		l.backlog = all
		return nil
	}
	if l.stale.Load() || len(l.view) > maxView {
		l.Logger.Debug("rebuilding the commit view from the log", "stale", l.stale.Load(), "streams", len(l.view))
		if err := l.resetView(ctx); err != nil {
			for _, r := range group {
				l.failBeforeSending(r, err)
			}
			return nil
		}
		l.stale.Store(false)
		l.stats.rebuilds.Add(1)
	}

	// Check expectations against the view and assign versions.
	var ok []*appendReq
	versions := map[string]uint64{}
	var written map[string]bool // streams an append of the group writes
	if !l.soleWriter {
		written = map[string]bool{}
	}
	for _, r := range group {
		if r.ownIDs && l.answerRecent(r) {
			continue
		}
		var err error
		for _, s := range r.streams {
			if _, known := versions[s]; known {
				continue
			}
			var h head
			if h, err = l.viewOf(ctx, s); err != nil {
				break
			}
			versions[s] = h.version
		}
		if err == nil {
			for _, s := range r.streams {
				x, has := r.expect[s]
				if !has || x.holds(versions[s]) {
					continue
				}
				if written != nil && !written[s] {
					// Other writers may have moved the stream since the
					// view read it (a release after a claim, say): read
					// its end again before refusing.
					var h head
					if h, err = l.freshHead(ctx, s, x); err != nil {
						break
					}
					l.view[s], versions[s] = h, h.version
					if x.holds(h.version) {
						continue
					}
				}
				err = &ConflictError{Stream: s, Expected: x, Actual: versions[s]}
				break
			}
		}
		var conflict *ConflictError
		switch {
		case errors.As(err, &conflict) && (r.ownIDs || r.sent):
			// A retry of an append that landed moved its own stream
			// (the caller's retry, or the log's own after a write it
			// had no answer for): answer with the original positions,
			// not a conflict.
			l.answerDuplicateOr(ctx, r, err, false)
			continue
		case err != nil:
			l.failBeforeSending(r, err)
			continue
		}
		for i := range r.events {
			s := r.events[i].Stream
			if written != nil {
				written[s] = true
			}
			versions[s]++
			r.events[i].Version = versions[s]
		}
		ok = append(ok, r)
	}
	if len(ok) == 0 {
		return nil
	}

	// The sole writer pipelines a group of single events, one publish
	// each; a group with a multi-event append goes as one atomic batch,
	// since a batch costs about the same for 2 events as for 1000. With
	// other writers the whole group is one unit.
	var units []unit
	multi := !l.soleWriter && len(ok) > 1
	for _, r := range ok {
		multi = multi || len(r.events) > 1
	}
	if multi {
		units = []unit{{reqs: ok}}
	} else {
		units = make([]unit, len(ok))
		for u, r := range ok {
			units[u] = unit{reqs: []*appendReq{r}}
		}
	}
	l.round++
	var guarded map[string]bool // streams already written in the unit
	if !l.soleWriter {
		guarded = map[string]bool{}
	}
	for u := range units {
		for _, r := range units[u].reqs {
			for i := range r.events {
				e := &r.events[i]
				if e.ID == "" {
					e.ID = l.NewID()
				} else if r.ownIDs {
					l.flying[e.ID] = l.round
				}
				b := l.msgBuf()
				// With other writers every event carries Nats-Msg-Id, so
				// that the append can be sent again when no answer comes
				// (a leader lost): JetStream stores it once.
				m := e.message(r.ownIDs || !l.soleWriter, b)
				switch {
				case l.soleWriter && len(units[u].msgs) == 0:
					// Nothing but this log writes events, so it knows every
					// sequence in advance: a unit that expects the log's
					// last sequence is refused if any write before it
					// failed, and so can never skip or reuse a version.
					// JetStream checks this in O(1). (In a batch only the
					// first message may carry it.)
					m.Header[headerExpLastSeq] = []string{strconv.FormatUint(l.predicted, 10)}
				case !l.soleWriter && !guarded[e.Stream]:
					// Guard each stream with the position the log confirmed
					// (nothing is in flight): if another writer moved it,
					// the unit is refused and retried on a fresh view.
					m.Header[headerExpLastSub] = []string{strconv.FormatUint(l.view[e.Stream].seq, 10)}
					guarded[e.Stream] = true
				}
				if l.mangle != nil {
					l.mangle(m)
				}
				l.predicted++
				l.view[e.Stream] = head{seq: l.predicted, version: e.Version}
				units[u].msgs = append(units[u].msgs, b)
			}
			r.sent = r.sent || !l.soleWriter
		}
		units[u].last = l.predicted
		units[u].n = len(units[u].msgs)
		// The chain makes one acknowledgement, the last unit's, vouch for
		// the whole flight (settle). A retried append is asked on its
		// own, so that a write JetStream refuses gets its own reason.
		units[u].asked = u == len(units)-1 || !l.soleWriter || slices.ContainsFunc(units[u].reqs, func(r *appendReq) bool { return r.tries > 0 })
	}
	return l.publish(units)
}

// publish sends every unit back to back without waiting.
func (l *Log) publish(units []unit) *flight {
	f := &flight{
		round:    l.round,
		prefix:   l.ackPrefix + strconv.FormatUint(l.round, 10) + ".",
		units:    units,
		acks:     make([]unitAck, len(units)),
		complete: make(chan struct{}),
		deadline: time.Now().Add(l.ackTimeout()),
	}
	l.stats.groups.Add(1)
	for u := range f.acks {
		f.batch = f.batch || units[u].n > 1
		f.acks[u].err = errUnasked
		if units[u].asked {
			f.acks[u].err = errNoAck
			f.remaining++
		}
	}
	l.flightMu.Lock()
	l.inflight[f.round] = f
	l.flightMu.Unlock()
	for u, un := range units {
		msgs := un.msgs
		last := &msgs[len(msgs)-1].msg
		if un.asked {
			last.Reply = f.prefix + strconv.Itoa(u)
		}
		if len(msgs) > 1 {
			var b [12]byte
			_, _ = rand.Read(b[:])
			batchID := hex.EncodeToString(b[:])
			for i, b := range msgs {
				b.h.Set(headerBatchID, batchID)
				b.h.Set(headerBatchSeq, strconv.Itoa(i+1))
			}
			last.Header.Set(headerBatchCommit, "1")
		}
		if l.resends() {
			cp := make([]*nats.Msg, len(msgs))
			for i, b := range msgs {
				cp[i] = &nats.Msg{Subject: b.msg.Subject, Reply: b.msg.Reply, Header: cloneHeader(b.msg.Header), Data: b.msg.Data}
			}
			f.copies = append(f.copies, cp)
		}
		var err error
		for _, b := range msgs {
			// Staged batch messages go without a reply: the commit's
			// answer covers the whole batch.
			if err = l.nc.PublishMsg(&b.msg); err != nil {
				break
			}
		}
		if err != nil {
			l.flightMu.Lock()
			for v := u; v < len(units); v++ {
				if units[v].asked {
					f.remaining--
				}
				f.acks[v].err = fmt.Errorf("%w: publish: %w", ErrUnavailable, err)
			}
			if f.remaining == 0 {
				close(f.complete)
			}
			l.flightMu.Unlock()
			break
		}
	}
	for u := range units {
		l.free = append(l.free, units[u].msgs...)
		units[u].msgs = nil
	}
	return f
}

// failBeforeSending answers r, not sent because of err. When Close's
// context has ended, err is likely the closed connection's, and r was
// never sent: ErrClosed. A read that failed while a cluster elects a
// leader is tried again later (retryLater).
func (l *Log) failBeforeSending(r *appendReq, err error) {
	if l.retryLater(r, err) {
		return
	}
	if l.aborted() {
		l.failUnsent(r)
		return
	}
	r.res <- appendResp{err: err}
}

// msgBuf returns a message buffer for the commit loop to fill.
func (l *Log) msgBuf() *msgBuf {
	if n := len(l.free); n > 0 {
		b := l.free[n-1]
		l.free = l.free[:n-1]
		return b
	}
	return newMsgBuf()
}

// cloneHeader copies h, values too (a msgBuf's values share one array
// that is reused).
func cloneHeader(h nats.Header) nats.Header {
	c := make(nats.Header, len(h))
	for k, v := range h {
		c[k] = slices.Clone(v)
	}
	return c
}

// freshHead reads a stream's end again for an expectation x that failed
// against the view. A replica reads a moment behind the leader (more so
// just after a leader was lost): a stream found short of the version x
// names is read again for a while before the expectation is refused,
// since versions never go back.
func (l *Log) freshHead(ctx context.Context, stream string, x Expectation) (head, error) {
	for try := 1; ; try++ {
		h, err := l.streamHead(ctx, stream)
		if err != nil || x.holds(h.version) || x.Kind != ExpectExactVersion || h.version > x.Version || l.Replicas <= 1 || try == maxTornReads {
			return h, err
		}
		select {
		case <-ctx.Done():
			return h, nil
		case <-time.After(time.Duration(try) * 10 * time.Millisecond):
		}
	}
}

// retryLater queues r again after a moment when err leaves it without an
// answer for now (JetStream unavailable: a cluster electing a stream
// leader answers neither writes nor some reads) and the log resends
// (resends), until r's deadline, FailoverTimeout after the commit loop
// first took it. It reports whether it did. Sent again, r lands once:
// every event of it carries Nats-Msg-Id.
func (l *Log) retryLater(r *appendReq, err error) bool {
	if !l.resends() || !errors.Is(err, ErrUnavailable) || r.deadline.IsZero() || time.Now().After(r.deadline) || l.aborted() {
		return false
	}
	if r.sent && !r.resent {
		r.resent = true // found stored later, it is its own write
		l.stats.resent.Add(1)
	}
	l.backoffs.Add(1)
	time.AfterFunc(l.ResendInterval/4, func() {
		l.retry(r)
		l.backoffs.Add(-1)
	})
	return true
}
