package eventlog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
)

// Durability says when an append is acknowledged.
type Durability int

const (
	// Strict acknowledges an append once it is fsynced. Concurrent appends
	// share one atomic batch and one fsync (group commit).
	Strict Durability = iota
	// Relaxed acknowledges an append once it is written to the operating
	// system; it is fsynced every SyncInterval. A process crash loses
	// nothing; a power loss or kernel crash can lose the appends of the
	// last SyncInterval.
	Relaxed
)

func (d Durability) String() string {
	if d == Relaxed {
		return "relaxed"
	}
	return "strict"
}

// ParseDurability reads "strict" or "relaxed".
func ParseDurability(s string) (Durability, error) {
	switch s {
	case "strict", "":
		return Strict, nil
	case "relaxed":
		return Relaxed, nil
	}
	return Strict, invalidf("durability %q: want strict or relaxed", s)
}

// Defaults for the tunables of a Log.
const (
	DefaultStreamName      = "FAZT_EVENTS"
	DefaultDuplicateWindow = 2 * time.Minute
	DefaultSyncInterval    = time.Second
	DefaultMaxBatch        = 1000
	DefaultRequestTimeout  = 10 * time.Second
	DefaultPollInterval    = 250 * time.Millisecond
)

// Log is the append-only event log on a JetStream stream.
//
// Create one with New, adjust the exported fields, then call Open. All
// methods are safe for concurrent use once Open has returned.
type Log struct {
	// Dir holds the embedded server's JetStream files (Dir/jetstream).
	Dir string
	// URL, when set, connects to an existing NATS server instead of
	// embedding one; Durability is then that server's business.
	URL string
	// NATSOptions are extra client options, used with URL (credentials, TLS).
	NATSOptions []nats.Option
	// Listen exposes the embedded server on this address ("127.0.0.1:4222")
	// so that standard NATS tools can inspect the log. Empty: no listener.
	Listen string
	// Durability of acknowledged appends; Strict by default.
	Durability Durability
	// SyncInterval is how often a Relaxed log fsyncs.
	SyncInterval time.Duration
	// DuplicateWindow is JetStream's dedupe window. Retries older than it
	// are found by scanning their stream, so idempotency never ends.
	DuplicateWindow time.Duration
	// StreamName is the JetStream stream that holds the events.
	StreamName string
	// Replicas of the stream (1 single node; 3 in a cluster).
	Replicas int
	// MaxBatch caps the events in one group commit (JetStream allows 1000).
	MaxBatch int
	// PollInterval is how often subscribers look for events written by
	// other processes (only when other writers are possible).
	PollInterval time.Duration
	// RequestTimeout bounds each round trip to JetStream.
	RequestTimeout time.Duration
	// Logger receives operational messages.
	Logger *slog.Logger

	srv    *server.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	reqs   chan *appendReq
	done   chan struct{}
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	heads  map[string]head // stream name -> last known position
	tail   uint64          // last sequence this log saw acknowledged

	// soleWriter is true when no other process can write the stream (an
	// embedded server without a listener): the commit loop's own checks
	// are then authoritative and messages need no guard headers.
	soleWriter bool

	// Only the commit loop touches these.
	acks      chan *nats.Msg
	ackPrefix string
	round     uint64
	syncer    *blockSyncer
	recent    map[string]recentID // caller-chosen IDs stored within DuplicateWindow
	lastPrune time.Time
	entropy   *ulid.MonotonicEntropy

	notifyMu sync.Mutex
	notify   chan struct{} // closed and replaced when new events are stored
	idMu     sync.Mutex
}

// recentID is where a caller-chosen ID was stored, and when.
type recentID struct {
	pos Position
	at  time.Time
}

// head is the last known event of a stream.
type head struct {
	seq     uint64
	version uint64
}

// New returns a Log that keeps its files in dir, with every tunable at
// its default.
func New(dir string) *Log {
	return &Log{
		Dir:             dir,
		Durability:      Strict,
		SyncInterval:    DefaultSyncInterval,
		DuplicateWindow: DefaultDuplicateWindow,
		StreamName:      DefaultStreamName,
		Replicas:        1,
		MaxBatch:        DefaultMaxBatch,
		RequestTimeout:  DefaultRequestTimeout,
		PollInterval:    DefaultPollInterval,
		Logger:          slog.New(slog.DiscardHandler),
	}
}

// Open starts (or connects to) NATS and makes sure the event stream
// exists with the immutable configuration.
func (l *Log) Open(ctx context.Context) error {
	if l.MaxBatch <= 0 || l.MaxBatch > 1000 {
		return invalidf("MaxBatch %d: want 1..1000", l.MaxBatch)
	}
	l.entropy = ulid.Monotonic(rand.Reader, 0)
	l.heads = make(map[string]head)
	var err error
	if l.URL == "" {
		if l.srv, err = startEmbedded(l.Dir, l.Listen, l.Durability, l.SyncInterval); err != nil {
			return err
		}
		l.nc, err = nats.Connect("", nats.InProcessServer(l.srv), nats.Name("fazt"), nats.MaxReconnects(-1))
	} else {
		opts := append([]nats.Option{nats.Name("fazt"), nats.MaxReconnects(-1)}, l.NATSOptions...)
		l.nc, err = nats.Connect(l.URL, opts...)
	}
	if err != nil {
		l.shutdownServer()
		return fmt.Errorf("connect to nats: %w", err)
	}
	if l.js, err = jetstream.New(l.nc); err != nil {
		l.closeConn()
		return err
	}
	if err := l.ensureStream(ctx); err != nil {
		l.closeConn()
		return err
	}
	if err := l.startCommitter(ctx); err != nil {
		l.closeConn()
		return err
	}
	l.reqs = make(chan *appendReq, 4096)
	l.done = make(chan struct{})
	l.wg.Add(1)
	go l.commitLoop()
	return nil
}

func (l *Log) startCommitter(ctx context.Context) error {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("event stream info: %w", err)
	}
	l.tail = info.State.LastSeq
	l.soleWriter = l.srv != nil && l.Listen == "" && l.Replicas <= 1
	l.notify = make(chan struct{})
	if err := l.loadRecent(ctx); err != nil {
		return err
	}
	l.acks = make(chan *nats.Msg, 8192)
	l.ackPrefix = l.nc.NewRespInbox() + "."
	sub, err := l.nc.ChanSubscribe(l.ackPrefix+">", l.acks)
	if err != nil {
		return fmt.Errorf("subscribe for acknowledgements: %w", err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	if l.srv != nil && l.Durability == Strict {
		dir := filepath.Join(l.srv.JetStreamConfig().StoreDir, l.srv.GlobalAccount().Name, "streams", l.StreamName, "msgs")
		if l.syncer, err = newBlockSyncer(dir); err != nil {
			return err
		}
	}
	return nil
}

func (l *Log) streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:               l.StreamName,
		Description:        "Fazt event log: immutable, append-only",
		Subjects:           []string{subjectPrefix + ">"},
		Retention:          jetstream.LimitsPolicy,
		MaxMsgs:            -1,
		MaxBytes:           -1,
		MaxAge:             0,
		MaxMsgsPerSubject:  -1,
		MaxMsgSize:         -1,
		Storage:            jetstream.FileStorage,
		Replicas:           l.Replicas,
		Duplicates:         l.DuplicateWindow,
		DenyDelete:         true,
		DenyPurge:          true,
		AllowDirect:        true,
		AllowAtomicPublish: true,
	}
}

func (l *Log) ensureStream(ctx context.Context) error {
	cfg := l.streamConfig()
	s, err := l.js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return fmt.Errorf("event stream %s: %w", cfg.Name, err)
	}
	got := s.CachedInfo().Config
	if !got.DenyDelete || !got.DenyPurge || got.MaxAge != 0 || got.MaxMsgs > 0 || got.MaxBytes > 0 {
		return fmt.Errorf("event stream %s is not immutable (deny_delete=%v deny_purge=%v max_age=%v max_msgs=%d max_bytes=%d); fix its configuration", cfg.Name, got.DenyDelete, got.DenyPurge, got.MaxAge, got.MaxMsgs, got.MaxBytes)
	}
	l.stream = s
	return nil
}

// Close stops accepting appends, finishes those already queued, and shuts
// down the embedded server.
func (l *Log) Close(ctx context.Context) error {
	l.mu.Lock()
	if l.closed || l.reqs == nil {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.done)
	l.mu.Unlock()
	finished := make(chan struct{})
	go func() { l.wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-ctx.Done():
	}
	if l.syncer != nil {
		l.syncer.close()
	}
	l.closeConn()
	return nil
}

func (l *Log) closeConn() {
	if l.nc != nil {
		l.nc.Close()
	}
	l.shutdownServer()
}

func (l *Log) shutdownServer() {
	if l.srv != nil {
		l.srv.Shutdown()
		l.srv.WaitForShutdown()
	}
}

// Server returns the embedded NATS server, or nil when connected by URL.
func (l *Log) Server() *server.Server { return l.srv }

// Conn returns the NATS connection the log uses.
func (l *Log) Conn() *nats.Conn { return l.nc }

// ClientURL is the address NATS tools can use, or "" when not listening.
func (l *Log) ClientURL() string {
	if l.srv != nil && l.Listen != "" {
		return l.srv.ClientURL()
	}
	return l.URL
}

// NewID returns a new monotonic ULID.
func (l *Log) NewID() string {
	l.idMu.Lock()
	defer l.idMu.Unlock()
	return ulid.MustNew(ulid.Now(), l.entropy).String()
}

// LastSeq returns the sequence of the newest event in the log (0 if empty).
func (l *Log) LastSeq(ctx context.Context) (uint64, error) {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: stream info: %v", ErrUnavailable, err)
	}
	return info.State.LastSeq, nil
}

// Position is where an appended event landed.
type Position struct {
	ID      string `json:"id"`
	Stream  string `json:"stream"`
	Seq     uint64 `json:"seq"`
	Version uint64 `json:"version"`
}

// Result of an Append.
type Result struct {
	// Events holds one position per appended event, in order.
	Events []Position `json:"events"`
	// LastSeq is the global sequence of the last event; pass it as
	// min_seq to read your own writes.
	LastSeq uint64 `json:"last_seq"`
	// Duplicate is true when every event was already in the log and the
	// original positions were returned.
	Duplicate bool `json:"duplicate,omitempty"`
}

type appendReq struct {
	events  []Event
	expect  map[string]Expectation
	streams []string // distinct streams in order of first appearance
	ownIDs  bool     // the caller chose the IDs, so this may be a retry
	res     chan appendResp
	tries   int
}

type appendResp struct {
	res Result
	err error
}

// Append writes events atomically: all of them, across all their streams,
// or none. Expectations are checked atomically with the write; at most one
// per stream. Events without an ID get a new ULID; an append retried with
// the same IDs returns the original positions and writes nothing, however
// late the retry comes.
//
// Errors: ErrInvalid (bad names, types, IDs, sizes, JSON, expectations),
// *ConflictError (ErrConflict) when an expectation fails, ErrUnavailable
// when JetStream cannot be reached (the outcome is unknown; retry with the
// same IDs), ErrClosed, or the context's error.
func (l *Log) Append(ctx context.Context, events []Event, expect ...Expectation) (Result, error) {
	req, clientIDs, err := l.prepare(events, expect)
	if err != nil {
		return Result{}, err
	}
	req.ownIDs = clientIDs
	// Retries from beyond JetStream's dedupe window are found by scanning
	// their stream; younger ones are caught by JetStream itself.
	if clientIDs {
		if res, found, err := l.findExisting(ctx, req.events); err != nil {
			return Result{}, err
		} else if found {
			return res, nil
		}
	}
	l.mu.Lock()
	closed := l.closed || l.reqs == nil
	l.mu.Unlock()
	if closed {
		return Result{}, ErrClosed
	}
	select {
	case l.reqs <- req:
	case <-l.done:
		return Result{}, ErrClosed
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	// Once queued the append completes or fails on its own; waiting for
	// it keeps the caller's answer truthful.
	r := <-req.res
	return r.res, r.err
}

// prepare validates an append and builds its request.
func (l *Log) prepare(events []Event, expect []Expectation) (*appendReq, bool, error) {
	if len(events) == 0 {
		return nil, false, invalidf("append has no events")
	}
	if len(events) > MaxAppendEvents {
		return nil, false, invalidf("append has %d events; the limit is %d", len(events), MaxAppendEvents)
	}
	if len(events) > l.MaxBatch {
		return nil, false, invalidf("append has %d events; this log's batch limit is %d", len(events), l.MaxBatch)
	}
	now := time.Now().UTC()
	req := &appendReq{events: make([]Event, len(events)), res: make(chan appendResp, 1)}
	copy(req.events, events)
	seen := make(map[string]bool, len(events))
	clientIDs := false
	total := 0
	inStream := map[string]bool{}
	for i := range req.events {
		e := &req.events[i]
		if err := e.validate(i, now); err != nil {
			return nil, false, err
		}
		total += len(e.Data)
		if e.ID == "" {
			e.ID = l.NewID()
		} else {
			clientIDs = true
		}
		if seen[e.ID] {
			return nil, false, invalidf("event %d: id %s appears twice in this append", i, e.ID)
		}
		seen[e.ID] = true
		e.Time, e.Seq, e.Version = time.Time{}, 0, 0
		if !inStream[e.Stream] {
			inStream[e.Stream] = true
			req.streams = append(req.streams, e.Stream)
		}
	}
	if total > MaxAppendBytes {
		return nil, false, invalidf("append carries %d bytes of data; the limit is %d", total, MaxAppendBytes)
	}
	if max := l.nc.MaxPayload(); max > 0 {
		for i := range req.events {
			if int64(len(req.events[i].Data))+1024 > max {
				return nil, false, invalidf("event %d: data is %d bytes; the NATS server allows %d per message", i, len(req.events[i].Data), max-1024)
			}
		}
	}
	for _, x := range expect {
		if err := ValidateStream(x.Stream); err != nil {
			return nil, false, invalidf("expectation: %v", err)
		}
		if !inStream[x.Stream] {
			return nil, false, invalidf("expectation on stream %q, which this append does not write", x.Stream)
		}
		if x.Kind < ExpectAnyVersion || x.Kind > ExpectExactVersion {
			return nil, false, invalidf("expectation on stream %q has an unknown kind %d", x.Stream, x.Kind)
		}
		if req.expect == nil {
			req.expect = make(map[string]Expectation, len(expect))
		}
		if _, dup := req.expect[x.Stream]; dup {
			return nil, false, invalidf("two expectations on stream %q", x.Stream)
		}
		req.expect[x.Stream] = x
	}
	return req, clientIDs, nil
}

// findExisting looks for events whose IDs are too old for JetStream's
// dedupe window. It returns found=true when every event of the append is
// already in the log, with the original positions.
func (l *Log) findExisting(ctx context.Context, events []Event) (Result, bool, error) {
	horizon := time.Now().Add(-l.DuplicateWindow + maxFutureIDSkew)
	var old []int
	for i, e := range events {
		if id, _ := ulid.ParseStrict(e.ID); ulid.Time(id.Time()).Before(horizon) {
			old = append(old, i)
		}
	}
	if len(old) == 0 {
		return Result{}, false, nil
	}
	pos, err := l.lookup(ctx, events)
	if err != nil {
		return Result{}, false, err
	}
	switch {
	case len(pos) == 0:
		return Result{}, false, nil
	case len(pos) < len(events):
		return Result{}, false, invalidf("%d of the %d events are already in the log and the others are not; an append is retried whole, with the same events", len(pos), len(events))
	}
	return resultOf(events, pos), true, nil
}

func resultOf(events []Event, pos map[string]Position) Result {
	res := Result{Events: make([]Position, len(events)), Duplicate: true}
	for i, e := range events {
		res.Events[i] = pos[e.ID]
		res.LastSeq = max(res.LastSeq, pos[e.ID].Seq)
	}
	return res
}

// lookup finds events by ID in their streams, scanning each stream from a
// little before the ID's time. It returns the positions of those found.
func (l *Log) lookup(ctx context.Context, events []Event) (map[string]Position, error) {
	byStream := map[string]map[string]bool{}
	since := map[string]time.Time{}
	for _, e := range events {
		if byStream[e.Stream] == nil {
			byStream[e.Stream] = map[string]bool{}
		}
		byStream[e.Stream][e.ID] = true
		id, _ := ulid.ParseStrict(e.ID)
		t := ulid.Time(id.Time()).Add(-maxFutureIDSkew)
		if s, ok := since[e.Stream]; !ok || t.Before(s) {
			since[e.Stream] = t
		}
	}
	found := map[string]Position{}
	for stream, ids := range byStream {
		start := since[stream]
		req := directRequest{NextFor: subjectOf(stream), StartTime: &start}
		err := l.scan(ctx, req, func(m *nats.Msg) (bool, error) {
			id := m.Header.Get(headerID)
			if !ids[id] {
				return true, nil
			}
			e, err := decode(m.Subject, m.Header, m.Data)
			if err != nil {
				return false, err
			}
			found[id] = Position{ID: id, Stream: stream, Seq: e.Seq, Version: e.Version}
			delete(ids, id)
			return len(ids) > 0, nil
		})
		if err != nil {
			return nil, err
		}
	}
	return found, nil
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
)

// jsError is an error answered by JetStream.
type jsError struct {
	code int
	desc string
}

func (e *jsError) Error() string { return fmt.Sprintf("jetstream: %s (error %d)", e.desc, e.code) }

func (l *Log) commitLoop() {
	defer l.wg.Done()
	var carry *appendReq
	for {
		var first *appendReq
		if carry != nil {
			first, carry = carry, nil
		} else {
			select {
			case first = <-l.reqs:
			case <-l.done:
				l.drain()
				return
			}
		}
		group := []*appendReq{first}
		n := len(first.events)
		ids := map[string]bool{}
		for _, e := range first.events {
			ids[e.ID] = true
		}
	gather:
		for n < l.MaxBatch {
			select {
			case r := <-l.reqs:
				if n+len(r.events) > l.MaxBatch || hasAny(ids, r.events) {
					carry = r
					break gather
				}
				for _, e := range r.events {
					ids[e.ID] = true
				}
				group = append(group, r)
				n += len(r.events)
			default:
				break gather
			}
		}
		l.commit(group)
	}
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

func hasAny(ids map[string]bool, events []Event) bool {
	for _, e := range events {
		if ids[e.ID] {
			return true
		}
	}
	return false
}

// commit writes a group of appends. Each append is one unit: a single
// event is one publish, several events are one atomic JetStream batch.
// The units are pipelined on one connection, so the group costs one round
// trip, and in strict mode one fsync. Every message carries the last
// sequence it expects on its stream, so JetStream refuses anything written
// out of turn; a refused append is retried on its own and never fails the
// others.
func (l *Log) commit(group []*appendReq) {
	ctx, cancel := context.WithTimeout(context.Background(), l.RequestTimeout)
	defer cancel()
	l.pruneRecent()

	// Check expectations against the known heads plus what the group
	// itself writes first, and assign versions.
	heads := map[string]head{}
	var ok []*appendReq
	for _, r := range group {
		if r.ownIDs && l.answerRecent(r) {
			continue
		}
		var err error
		for _, s := range r.streams {
			if _, known := heads[s]; known {
				continue
			}
			if heads[s], err = l.head(ctx, s); err != nil {
				break
			}
		}
		if err == nil {
			for _, s := range r.streams {
				if x, has := r.expect[s]; has && !x.holds(heads[s].version) {
					err = &ConflictError{Stream: s, Expected: x, Actual: heads[s].version}
					break
				}
			}
		}
		var conflict *ConflictError
		if errors.As(err, &conflict) && r.ownIDs {
			// A retry of an append that landed moved its own stream:
			// answer with the original positions, not a conflict.
			l.answerDuplicateOr(ctx, r, err)
			continue
		}
		if err != nil {
			r.res <- appendResp{err: err}
			continue
		}
		for i := range r.events {
			h := heads[r.events[i].Stream]
			h.version++
			r.events[i].Version = h.version
			heads[r.events[i].Stream] = h
		}
		ok = append(ok, r)
	}
	if len(ok) == 0 {
		return
	}

	// Units: a group of single events is pipelined, one publish each; a
	// group with a multi-event append goes as one atomic batch, since
	// JetStream's batch costs about the same for 2 events as for 500.
	var units []unit
	multi := false
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
	// Guards: every message carries the sequence its stream's previous
	// message has. Within a pipelined group that is predicted from the
	// log's tail; a wrong prediction (another writer) only makes JetStream
	// refuse, and the append retry. In a batch only the first write to a
	// stream may carry a guard; the later ones follow it by construction.
	lastOn := map[string]uint64{}
	for _, r := range ok {
		for _, s := range r.streams {
			if _, seen := lastOn[s]; !seen {
				h, _ := l.head(ctx, s)
				lastOn[s] = h.seq
			}
		}
	}
	l.mu.Lock()
	predicted := l.tail
	l.mu.Unlock()
	for u := range units {
		guarded := map[string]bool{}
		for _, r := range units[u].reqs {
			for i := range r.events {
				e := &r.events[i]
				m := e.message(r.ownIDs)
				if !l.soleWriter && !guarded[e.Stream] {
					guarded[e.Stream] = true
					m.Header.Set(headerExpLastSub, strconv.FormatUint(lastOn[e.Stream], 10))
				}
				predicted++
				lastOn[e.Stream] = predicted
				units[u].msgs = append(units[u].msgs, m)
			}
		}
	}
	acks := l.publish(ctx, units)
	if l.syncer != nil && anySucceeded(acks) {
		if err := l.syncer.sync(); err != nil {
			for i := range acks {
				if acks[i].err == nil {
					acks[i].err = fmt.Errorf("%w: fsync of the log failed, the append may not be durable: %v", ErrUnavailable, err)
				}
			}
		}
	}
	var retry []*appendReq
	for u, un := range units {
		a := acks[u]
		switch {
		case a.err == nil && a.duplicate:
			l.answerDuplicate(ctx, un.reqs[0])
		case a.err == nil:
			seq := a.seq - uint64(len(un.msgs))
			for _, r := range un.reqs {
				res := Result{Events: make([]Position, len(r.events))}
				for i, e := range r.events {
					seq++
					res.Events[i] = Position{ID: e.ID, Stream: e.Stream, Seq: seq, Version: e.Version}
					l.setHead(e.Stream, head{seq: seq, version: e.Version})
				}
				res.LastSeq = seq
				if r.ownIDs {
					now := time.Now()
					for _, p := range res.Events {
						l.recent[p.ID] = recentID{pos: p, at: now}
					}
				}
				r.res <- appendResp{res: res}
			}
			l.mu.Lock()
			l.tail = max(l.tail, a.seq)
			l.mu.Unlock()
			l.wake()
		case len(un.reqs) > 1:
			// A shared batch was refused: find out which append caused it
			// by retrying each on its own.
			for _, r := range un.reqs {
				for _, s := range r.streams {
					l.forget(s)
				}
				retry = append(retry, r)
			}
		default:
			r := un.reqs[0]
			for _, s := range r.streams {
				l.forget(s)
			}
			var je *jsError
			if !errors.As(a.err, &je) {
				r.res <- appendResp{err: a.err}
				continue
			}
			switch je.code {
			case errCodeBatchDuplicate, errCodeDupConflict:
				l.answerDuplicate(ctx, r)
			case errCodeWrongLastSeq, errCodeWrongLastSeqConst:
				if r.tries++; r.tries > 5 {
					r.res <- appendResp{err: fmt.Errorf("%w: streams keep moving under concurrent writers: %v", ErrUnavailable, a.err)}
					continue
				}
				retry = append(retry, r)
			default:
				r.res <- appendResp{err: a.err}
			}
		}
	}
	for _, r := range retry {
		l.commit([]*appendReq{r})
	}
}

// answerRecent answers r from the IDs stored within the dedupe window,
// when they are there. It reports whether it answered.
func (l *Log) answerRecent(r *appendReq) bool {
	found := 0
	for _, e := range r.events {
		if _, ok := l.recent[e.ID]; ok {
			found++
		}
	}
	switch {
	case found == 0:
		return false
	case found < len(r.events):
		r.res <- appendResp{err: invalidf("%d of the %d events are already in the log and the others are not; an append is retried whole, with the same events", found, len(r.events))}
	default:
		pos := make(map[string]Position, found)
		for _, e := range r.events {
			pos[e.ID] = l.recent[e.ID].pos
		}
		r.res <- appendResp{res: resultOf(r.events, pos)}
	}
	return true
}

// pruneRecent forgets IDs older than the dedupe window, at most every
// few seconds.
func (l *Log) pruneRecent() {
	now := time.Now()
	if now.Sub(l.lastPrune) < 5*time.Second {
		return
	}
	l.lastPrune = now
	for id, r := range l.recent {
		if now.Sub(r.at) > l.DuplicateWindow {
			delete(l.recent, id)
		}
	}
}

// loadRecent fills the recent set from the last DuplicateWindow of the
// log, so that retries across a restart are recognised.
func (l *Log) loadRecent(ctx context.Context) error {
	l.recent = make(map[string]recentID)
	if l.tail == 0 {
		return nil
	}
	start := time.Now().Add(-l.DuplicateWindow)
	return l.scan(ctx, directRequest{StartTime: &start}, func(m *nats.Msg) (bool, error) {
		if m.Header.Get(headerMsgID) == "" {
			return true, nil
		}
		e, err := decode(m.Subject, m.Header, m.Data)
		if err != nil {
			return true, nil // not ours to judge here; readers report it
		}
		l.recent[e.ID] = recentID{pos: Position{ID: e.ID, Stream: e.Stream, Seq: e.Seq, Version: e.Version}, at: e.Time}
		return true, nil
	})
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

// unit is what JetStream acknowledges once: one event, or one atomic batch.
type unit struct {
	reqs []*appendReq
	msgs []*nats.Msg
}

func anySucceeded(acks []unitAck) bool {
	for _, a := range acks {
		if a.err == nil && !a.duplicate {
			return true
		}
	}
	return false
}

// answerDuplicate answers an append whose events JetStream reported as
// already stored, with their original positions.
func (l *Log) answerDuplicate(ctx context.Context, r *appendReq) {
	l.answerDuplicateOr(ctx, r, nil)
}

// answerDuplicateOr answers with the original positions when every event
// of r is already in the log, and with otherwise when none is.
func (l *Log) answerDuplicateOr(ctx context.Context, r *appendReq, otherwise error) {
	pos, err := l.lookup(ctx, r.events)
	switch {
	case err != nil:
		r.res <- appendResp{err: err}
	case len(pos) == 0 && otherwise != nil:
		r.res <- appendResp{err: otherwise}
	case len(pos) < len(r.events):
		r.res <- appendResp{err: invalidf("%d of the %d events are already in the log and the others are not; an append is retried whole, with the same events", len(pos), len(r.events))}
	default:
		r.res <- appendResp{res: resultOf(r.events, pos)}
	}
}

// unitAck is JetStream's answer for one unit.
type unitAck struct {
	seq       uint64 // of the unit's last message
	duplicate bool
	err       error
}

// publish sends every unit back to back and collects one acknowledgement
// per unit.
func (l *Log) publish(ctx context.Context, units []unit) []unitAck {
	acks := make([]unitAck, len(units))
	l.round++
	prefix := l.ackPrefix + strconv.FormatUint(l.round, 10) + "."
	sent := 0
	for u, un := range units {
		msgs := un.msgs
		last := msgs[len(msgs)-1]
		last.Reply = prefix + strconv.Itoa(u)
		if len(msgs) > 1 {
			var b [12]byte
			_, _ = rand.Read(b[:])
			batchID := hex.EncodeToString(b[:])
			for i, m := range msgs {
				m.Header.Set("Nats-Batch-Id", batchID)
				m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
			}
			last.Header.Set("Nats-Batch-Commit", "1")
		}
		var err error
		for _, m := range msgs {
			// Staged batch messages go without a reply: the commit's
			// answer covers the whole batch.
			if err = l.nc.PublishMsg(m); err != nil {
				break
			}
		}
		if err != nil {
			for v := u; v < len(units); v++ {
				acks[v].err = fmt.Errorf("%w: publish: %v", ErrUnavailable, err)
			}
			break
		}
		sent++
	}
	got := 0
	for u := range acks[:sent] {
		acks[u].err = errNoAck
	}
	for got < sent {
		select {
		case m := <-l.acks:
			if !strings.HasPrefix(m.Subject, prefix) {
				continue // from an earlier round that timed out
			}
			u, err := strconv.Atoi(m.Subject[len(prefix):])
			if err != nil || u < 0 || u >= sent || acks[u].err != errNoAck {
				continue
			}
			got++
			acks[u] = parseAck(m.Data, len(units[u].msgs))
		case <-ctx.Done():
			for u := range acks[:sent] {
				if acks[u].err == errNoAck {
					acks[u].err = fmt.Errorf("%w: no acknowledgement from JetStream within %v; the append may or may not have landed, retry it with the same IDs", ErrUnavailable, l.RequestTimeout)
				}
			}
			return acks
		}
	}
	return acks
}

var errNoAck = errors.New("no acknowledgement")

func parseAck(data []byte, n int) unitAck {
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

const maxHeads = 100_000

func (l *Log) setHead(stream string, h head) {
	l.mu.Lock()
	if len(l.heads) >= maxHeads {
		clear(l.heads) // a cache: rebuilt on demand
	}
	l.heads[stream] = h
	l.mu.Unlock()
}

func (l *Log) forget(stream string) {
	l.mu.Lock()
	delete(l.heads, stream)
	l.mu.Unlock()
}

// head returns the last event's position of a stream, from the cache or
// from JetStream.
func (l *Log) head(ctx context.Context, stream string) (head, error) {
	l.mu.Lock()
	h, ok := l.heads[stream]
	l.mu.Unlock()
	if ok {
		return h, nil
	}
	m, err := l.directGet(ctx, directRequest{LastFor: subjectOf(stream)})
	if errors.Is(err, ErrNotFound) {
		l.setHead(stream, head{})
		return head{}, nil
	}
	if err != nil {
		return head{}, err
	}
	e, err := decode(m.Subject, m.Header, m.Data)
	if err != nil {
		return head{}, fmt.Errorf("stream %s: its last message cannot be read: %w", stream, err)
	}
	h = head{seq: e.Seq, version: e.Version}
	l.setHead(stream, h)
	return h, nil
}
