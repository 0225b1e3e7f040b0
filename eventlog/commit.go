package eventlog

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	mathrand "math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
// flightDepth), so the disk and the CPU overlap. The package doc ("Concurrency") says how the writes in flight
// are guarded; any failure marks the view stale, and the loop then waits
// for the groups in flight, rebuilds the view from the log, and retries
// what was refused.

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

	stats struct {
		appends, events, groups, batches, fsyncs, retries, rebuilds atomic.Uint64
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
		Fsyncs: s.fsyncs.Load(), Retries: s.retries.Load(), ViewRebuilds: s.rebuilds.Load(),
	}
	l.seen.mu.Lock()
	st.Malformed = l.seen.count
	l.seen.mu.Unlock()
	return st
}

// recentID is where a caller-chosen ID was stored, and when, with what
// a retry must match: the type and a fingerprint of the data.
type recentID struct {
	pos Position
	at  time.Time
	typ string
	sum uint64
}

// head is where a stream ends.
type head struct {
	seq     uint64 // the last message on its subject (valid or not)
	version uint64 // its last valid event's version
}

const maxView = 100_000 // streams remembered before the view is rebuilt

// flightDepth is how many published groups may queue for the finisher
// while it finishes one: all of them then share one fsync.
const flightDepth = 3

// maxTries bounds how often an append overtaken by other writers is
// retried before the caller gets ErrUnavailable.
const maxTries = 50

func (l *Log) startCommitter(ctx context.Context) error {
	l.soleWriter = l.srv != nil && !(l.Listen != "" && l.ListenWritable) && l.Replicas <= 1
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
	if l.srv != nil && l.Durability == Strict {
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
	l.flights = make(chan *flight, flightDepth) // groups queued for the finisher
	l.wg.Add(2)
	go l.commitLoop()
	go l.finishLoop()
	return nil
}

// resetView forgets every stream and reads the log's tail again.
func (l *Log) resetView(ctx context.Context) error {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("%w: event stream info: %v", ErrUnavailable, err)
	}
	l.view = map[string]head{}
	l.predicted = info.State.LastSeq
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
		if group == nil {
			l.shutRetries()
			l.drain()
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
// to MaxBatch events. It returns nil when the log closes, and an empty
// group when retries are waiting (launch takes them).
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
			return nil
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
}

func hasAny(ids map[string]bool, events []Event) bool {
	for _, e := range events {
		if e.ID != "" && ids[e.ID] {
			return true
		}
	}
	return false
}

// drain fails appends still queued at Close.
func (l *Log) drain() {
	for {
		select {
		case r := <-l.reqs:
			r.res <- appendResp{err: ErrClosed}
		default:
			return
		}
	}
}

func (l *Log) retry(r *appendReq) {
	l.stats.retries.Add(1)
	l.retryMu.Lock()
	if l.retryShut {
		l.retryMu.Unlock()
		r.res <- appendResp{err: ErrClosed}
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

func (l *Log) shutRetries() {
	l.retryMu.Lock()
	l.retryShut = true
	q := l.retryQ
	l.retryQ = nil
	l.retryMu.Unlock()
	for _, r := range q {
		r.res <- appendResp{err: ErrClosed}
	}
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
				r.res <- appendResp{err: err}
			}
			return nil
		}
		l.stale.Store(false)
		l.stats.rebuilds.Add(1)
	}

	// Check expectations against the view and assign versions.
	var ok []*appendReq
	versions := map[string]uint64{}
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
				if x, has := r.expect[s]; has && !x.holds(versions[s]) {
					err = &ConflictError{Stream: s, Expected: x, Actual: versions[s]}
					break
				}
			}
		}
		var conflict *ConflictError
		switch {
		case errors.As(err, &conflict) && r.ownIDs:
			// A retry of an append that landed moved its own stream:
			// answer with the original positions, not a conflict.
			l.answerDuplicateOr(ctx, r, err, false)
			continue
		case err != nil:
			r.res <- appendResp{err: err}
			continue
		}
		for i := range r.events {
			s := r.events[i].Stream
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
				m := e.message(r.ownIDs, b)
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
	subj := subjectOf(stream)
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

// publish sends every unit back to back without waiting.
func (l *Log) publish(units []unit) *flight {
	f := &flight{
		round:    l.round,
		prefix:   l.ackPrefix + strconv.FormatUint(l.round, 10) + ".",
		units:    units,
		acks:     make([]unitAck, len(units)),
		complete: make(chan struct{}),
		deadline: time.Now().Add(l.RequestTimeout),
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
				b.h.Set("Nats-Batch-Id", batchID)
				b.h.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
			}
			last.Header.Set("Nats-Batch-Commit", "1")
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
				f.acks[v].err = fmt.Errorf("%w: publish: %v", ErrUnavailable, err)
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

// msgBuf returns a message buffer for the commit loop to fill.
func (l *Log) msgBuf() *msgBuf {
	if n := len(l.free); n > 0 {
		b := l.free[n-1]
		l.free = l.free[:n-1]
		return b
	}
	return newMsgBuf()
}

// onAck files an acknowledgement with its flight.
func (l *Log) onAck(m *nats.Msg) {
	rest, ok := strings.CutPrefix(m.Subject, l.ackPrefix)
	if !ok {
		return
	}
	rs, us, ok := strings.Cut(rest, ".")
	round, err1 := strconv.ParseUint(rs, 10, 64)
	u, err2 := strconv.Atoi(us)
	if !ok || err1 != nil || err2 != nil {
		return
	}
	l.flightMu.Lock()
	defer l.flightMu.Unlock()
	f := l.inflight[round]
	if f == nil || u < 0 || u >= len(f.units) || f.acks[u].err != errNoAck {
		return // late, after the flight timed out
	}
	f.acks[u] = parseAck(m.Data, f.units[u].n)
	if f.remaining--; f.remaining == 0 {
		close(f.complete)
	}
}

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
							f.acks[i].err = fmt.Errorf("%w: fsync of the log failed, the append may not be durable: %v", ErrUnavailable, err)
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
// readers what was stored.
func (l *Log) await(f *flight) {
	timer := time.NewTimer(time.Until(f.deadline))
	select {
	case <-f.complete:
	case <-timer.C:
	}
	timer.Stop()
	l.flightMu.Lock()
	delete(l.inflight, f.round)
	for u := range f.acks {
		if f.acks[u].err == errNoAck {
			f.acks[u].err = fmt.Errorf("%w: no acknowledgement from JetStream within %v; the append may or may not have landed, retry it with the same IDs", ErrUnavailable, l.RequestTimeout)
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
			f.acks[u].err = fmt.Errorf("%w: the append may or may not have landed, retry it with the same IDs: %v", ErrUnavailable, err)
		case f.units[u].last <= last:
			f.acks[u] = unitAck{seq: f.units[u].last}
		case answered:
			f.acks[u].err = errNotStored
		default:
			f.acks[u].err = fmt.Errorf("%w: no acknowledgement from JetStream within %v; the append may or may not have landed, retry it with the same IDs", ErrUnavailable, l.RequestTimeout)
		}
	}
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
			l.answerDuplicate(ctx, un.reqs[0])
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
				r.res <- appendResp{err: a.err}
				continue
			}
			switch je.code {
			case errCodeBatchDuplicate, errCodeDupConflict:
				l.answerDuplicate(ctx, r)
			case errCodeWrongLastSeq, errCodeWrongLastSeqConst:
				if !l.mayRetry(r, a.err) {
					continue
				}
				if r.tries == 1 || l.soleWriter {
					// For the sole writer this is only the chain: a write
					// before it failed. Retried at once, it keeps its place.
					l.retry(r)
					continue
				}
				// Writers racing for the same streams back off, at random,
				// so that one of them gets through.
				time.AfterFunc(time.Duration(mathrand.Int64N(int64(min(r.tries, 20))*int64(time.Millisecond))), func() { l.retry(r) })
			default:
				r.res <- appendResp{err: a.err}
			}
		}
	}
	l.doneMu.Lock()
	l.doneRnd = f.round
	l.doneCond.Broadcast()
	l.doneMu.Unlock()
}

// mayRetry counts a try of r after a refused write and reports whether
// r may be retried; past maxTries it answers r with ErrUnavailable.
func (l *Log) mayRetry(r *appendReq, refused error) bool {
	if r.tries++; r.tries <= maxTries {
		return true
	}
	r.res <- appendResp{err: fmt.Errorf("%w: the append was refused %d times, the last: %v", ErrUnavailable, maxTries, refused)}
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

// pubAck is JetStream's answer to a publish or a batch commit.
type pubAck struct {
	Stream    string `json:"stream"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Count     int    `json:"count,omitempty"`
	Error     *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error,omitempty"`
}

// JetStream error codes the committer reacts to.
const (
	errCodeWrongLastSeq      = 10071
	errCodeWrongLastSeqConst = 10164
	errCodeBatchDuplicate    = 10201
	errCodeDupConflict       = 10158
	// Lack of storage: the server's limit, the storage tier's, the account's.
	errCodeInsufficientResources = 10023
	errCodeStorageExceeded       = 10047
	errCodeAccountExceeded       = 10002
)

// jsError is an error answered by JetStream.
type jsError struct {
	code int
	desc string
}

func (e *jsError) Error() string {
	if e.Is(ErrInsufficientStorage) {
		return fmt.Sprintf("the event log's storage is full: JetStream refused the write (%s, error %d); free disk space or raise --store-limit, then retry", e.desc, e.code)
	}
	return fmt.Sprintf("jetstream: %s (error %d)", e.desc, e.code)
}

// Is makes the refusals for lack of storage errors.Is(err,
// ErrInsufficientStorage): JetStream refuses such a write whole.
func (e *jsError) Is(target error) bool {
	return target == ErrInsufficientStorage && (e.code == errCodeInsufficientResources || e.code == errCodeStorageExceeded || e.code == errCodeAccountExceeded)
}

func parseAck(data []byte, n int) unitAck {
	if a, ok := parseAckFast(data, n); ok {
		return a
	}
	var ack pubAck
	if err := json.Unmarshal(data, &ack); err != nil {
		return unitAck{err: fmt.Errorf("%w: unreadable acknowledgement %q", ErrUnavailable, data)}
	}
	if ack.Error != nil {
		return unitAck{err: &jsError{code: ack.Error.ErrCode, desc: ack.Error.Description}}
	}
	if n > 1 && ack.Count != n && !ack.Duplicate {
		return unitAck{err: fmt.Errorf("%w: batch of %d acknowledged with count %d", ErrUnavailable, n, ack.Count)}
	}
	return unitAck{seq: ack.Seq, duplicate: ack.Duplicate}
}

// parseAckFast reads the common successful acknowledgement,
// {"stream":"S","seq":N} or, for a batch, {...,"batch":"B","count":C},
// without the cost of encoding/json; anything else goes the slow way.
func parseAckFast(data []byte, n int) (unitAck, bool) {
	if bytes.Contains(data, []byte(`"error"`)) || bytes.Contains(data, []byte(`"duplicate"`)) {
		return unitAck{}, false
	}
	seq, ok := jsonUint(data, `"seq":`)
	if !ok {
		return unitAck{}, false
	}
	if n > 1 {
		if c, ok := jsonUint(data, `"count":`); !ok || c != uint64(n) {
			return unitAck{}, false
		}
	}
	return unitAck{seq: seq}, true
}

func jsonUint(data []byte, key string) (uint64, bool) {
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := data[i+len(key):]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	if j == 0 || j > 19 {
		return 0, false
	}
	v, err := strconv.ParseUint(string(rest[:j]), 10, 64)
	return v, err == nil
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
	switch {
	case err != nil:
		r.res <- appendResp{err: err}
	case len(pos) == 0 && otherwise != nil:
		r.res <- appendResp{err: otherwise}
	case len(pos) < len(r.events):
		r.res <- appendResp{err: invalidf("%d of the %d events are already in the log and the others are not; an append is retried whole, with the same events", len(pos), len(r.events))}
	default:
		res := resultOf(r.events, pos)
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

func ptr[T any](v T) *T { return &v }

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
