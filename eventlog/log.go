package eventlog

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	DefaultResendInterval  = time.Second
	DefaultFailoverTimeout = 30 * time.Second
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
	// ListenWritable lets the listener's clients publish into the stream
	// too (tools that write around the kernel, other fazt processes). The
	// log then guards every write against them, at some cost. By default
	// the listener is read-only.
	ListenWritable bool
	// MaxStore caps the embedded server's JetStream storage, in bytes;
	// 0 (the default) means no cap but the disk and DiskReserve. Appends
	// past it fail with ErrInsufficientStorage.
	MaxStore int64
	// DiskReserve is the free space, in bytes, that appends leave on the
	// file system of Dir (DefaultDiskReserve); below it they fail with
	// ErrInsufficientStorage and nothing is written, and they work again
	// as soon as space is freed. Negative: no reserve. Only for the
	// embedded server.
	DiskReserve int64
	// Durability of acknowledged appends; Strict by default.
	Durability Durability
	// SyncInterval is how often a Relaxed log fsyncs.
	SyncInterval time.Duration
	// DuplicateWindow is JetStream's dedupe window. Retries older than it
	// are found by scanning their stream, so idempotency never ends.
	DuplicateWindow time.Duration
	// StreamName is the JetStream stream that holds the events.
	StreamName string
	// Replicas of the stream and of the object store buckets (1 single
	// node; 3 in a cluster).
	Replicas int
	// Cluster, when set, makes the embedded server a node of a NATS
	// cluster (see "Clusters" in the package doc). Not with URL.
	Cluster *Cluster
	// MaxBatch caps the events in one group commit (JetStream allows 1000).
	MaxBatch int
	// PollInterval is how often subscribers look for events written by
	// other processes (only when other writers are possible).
	PollInterval time.Duration
	// RequestTimeout bounds each round trip to JetStream; an append's
	// whole wait for its acknowledgement, resends included.
	RequestTimeout time.Duration
	// ResendInterval is how long an append waits for JetStream's answer
	// before it sends the same messages again, when other writers may
	// exist (a cluster, URL): an append in flight to a stream leader that
	// died lands once a new one is elected, instead of failing after
	// RequestTimeout (DefaultResendInterval; see "Clusters" in the
	// package doc). Zero or negative: never resend.
	ResendInterval time.Duration
	// FailoverTimeout bounds how long an append that is being sent
	// again waits for an answer in all (DefaultFailoverTimeout: a
	// stream leader's election takes seconds), instead of
	// RequestTimeout when it is longer; past it the append fails with
	// ErrUnavailable. At most half of DuplicateWindow is used, since
	// the resends rely on JetStream's dedupe.
	FailoverTimeout time.Duration
	// Logger receives operational messages (slog.Default(); Open takes
	// nil for it too).
	Logger *slog.Logger
	// Validate, when set, checks every event before it is appended (the
	// kernel plugs its schema registry in here). An error refuses the whole
	// append with ErrInvalid; nothing is written.
	Validate func(e *Event) error

	srv *server.Server
	// nc publishes events and receives their acknowledgements; everything
	// the log reads goes through rc (read-only, also Conn()), so that a
	// long read, a rebuild say, does not queue ahead of acknowledgements
	// on one connection. With URL they are one connection.
	nc, rc  *nats.Conn
	js      jetstream.JetStream
	stream  jetstream.Stream // on nc
	rstream jetstream.Stream // on rc
	reqs    chan *appendReq
	done    chan struct{}
	wg      sync.WaitGroup

	mu     sync.Mutex
	closed bool

	// soleWriter is true when no other process can write the stream (an
	// embedded server without a listener): the commit loop's view of the
	// streams is then authoritative, and every unit it writes is chained
	// to the one before by a guard header.
	soleWriter bool
	// mangle, set only by tests, alters a message before it is published:
	// the way to make JetStream refuse one write in the middle of a flight.
	mangle func(*nats.Msg)
	// dropAck, set only by tests, loses the acknowledgements it returns
	// true for, as a stream leader that dies after storing a write does.
	dropAck func(*nats.Msg) bool
	// openedAt is when Open ran: caller-chosen IDs made before it may
	// have been written by an earlier process, unknown to recent.
	openedAt time.Time
	// storedSeq is the newest sequence this log has seen stored.
	storedSeq atomic.Uint64
	// The server's payload limit, read at most once a second: asking the
	// connection takes its lock, which the commit loop holds to publish.
	payloadMax, payloadAt atomic.Int64

	commitState

	entropy *ulid.MonotonicEntropy
	idMu    sync.Mutex

	space space

	notifyMu sync.Mutex
	notify   chan struct{} // closed and replaced when new events are stored

	objects  objectStores  // buckets opened with ObjectStore (objects.go)
	reserved reservations  // categories only a Writer appends to (reserve.go)
	seen     malformedSeen // malformed messages readers came across
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
		ResendInterval:  DefaultResendInterval,
		FailoverTimeout: DefaultFailoverTimeout,
		PollInterval:    DefaultPollInterval,
		DiskReserve:     DefaultDiskReserve,
		Logger:          slog.Default(),
	}
}

// Open starts (or connects to) NATS and makes sure the event stream
// exists with the immutable configuration.
func (l *Log) Open(ctx context.Context) error {
	if l.MaxBatch <= 0 || l.MaxBatch > 1000 {
		return invalidf("MaxBatch %d: want 1..1000", l.MaxBatch)
	}
	if l.Logger == nil {
		l.Logger = slog.Default()
	}
	l.entropy = ulid.Monotonic(rand.Reader, 0)
	l.openedAt = time.Now()
	if l.Cluster == nil && l.URL == "" && l.Replicas != 1 {
		return invalidf("replicas %d: one embedded server holds one replica; set Cluster (fazt serve --cluster) for more", l.Replicas)
	}
	if l.Cluster != nil {
		if l.URL != "" {
			return invalidf("a cluster node embeds its server: Cluster and URL exclude each other")
		}
		if l.Listen != "" {
			return invalidf("the NATS listener is not available on a cluster node yet")
		}
		if err := l.Cluster.check(l.Replicas); err != nil {
			return err
		}
		l.Cluster.warn(l.Logger)
	}
	var err error
	if l.URL == "" {
		writerPass, readerPass := rand.Text(), rand.Text()
		l.objects.pass = writerPass
		var reserved []string // a writable listener may not publish into them
		if p := l.reserved.cats.Load(); p != nil {
			reserved = *p
		}
		if l.srv, err = startEmbedded(l.Dir, l.Listen, l.ListenWritable, l.Durability, l.SyncInterval, noStoreLimit, l.StreamName, reserved, writerPass, readerPass, l.Cluster); err != nil {
			return err
		}
		l.nc, err = nats.Connect("", nats.InProcessServer(l.srv), nats.Name("fazt"), nats.MaxReconnects(-1), nats.UserInfo(writerUser, writerPass))
		if err == nil {
			l.rc, err = nats.Connect("", nats.InProcessServer(l.srv), nats.Name("fazt-reader"), nats.MaxReconnects(-1), nats.UserInfo(readerUser, readerPass))
		}
	} else {
		opts := append([]nats.Option{nats.Name("fazt"), nats.MaxReconnects(-1)}, l.NATSOptions...)
		l.nc, err = nats.Connect(l.URL, opts...)
		l.rc = l.nc
	}
	if err != nil {
		l.shutdownServer()
		return fmt.Errorf("connect to nats: %w", err)
	}
	if l.js, err = jetstream.New(l.nc); err != nil {
		l.closeConn()
		return err
	}
	ensure := l.ensureStream
	if l.Cluster != nil || l.URL != "" && l.Replicas > 1 {
		ensure = l.ensureStreamClustered
	}
	if err := ensure(ctx); err != nil {
		l.closeConn()
		return err
	}
	l.rstream = l.stream
	if l.rc != l.nc {
		rjs, err := jetstream.New(l.rc)
		if err == nil {
			l.rstream, err = rjs.Stream(ctx, l.StreamName)
		}
		if err != nil {
			l.closeConn()
			return fmt.Errorf("event stream %s, read-only: %w", l.StreamName, err)
		}
	}
	if err := l.startCommitter(ctx); err != nil {
		l.closeConn()
		return err
	}
	if l.srv != nil {
		l.wg.Add(1)
		go l.watchStorage()
	}
	return nil
}

func (l *Log) streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:               l.StreamName,
		Description:        "Fazt event log: immutable, append-only",
		Subjects:           []string{AllSubjects},
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
	var refused *jetstream.APIError
	if l.URL != "" && errors.As(err, &refused) && refused.Code == 403 {
		// Another fazt's NATS listener lets no client administer its
		// stream: use the stream as it is, if it is immutable.
		s, err = l.js.Stream(ctx, cfg.Name)
	}
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

// StreamInfo returns the event stream's current configuration and state,
// for health checks. Errors: ErrClosed before Open or after Close.
func (l *Log) StreamInfo(ctx context.Context) (*jetstream.StreamInfo, error) {
	l.mu.Lock()
	s := l.rstream
	closed := l.closed
	l.mu.Unlock()
	if s == nil || closed {
		return nil, ErrClosed
	}
	return s.Info(ctx)
}

// Close shuts the log down. Every append gets exactly one answer, and
// an error never hides a write:
//
//   - An append made once Close has begun fails at once with ErrClosed:
//     nothing of it is written.
//   - An append already accepted (Append waiting, or a Pending from
//     AppendAsync) is finished as if Close had not come: committed, or
//     answered as it would be anyway (a conflict, a refusal,
//     ErrUnavailable when JetStream does not answer within
//     RequestTimeout, or FailoverTimeout in a cluster). Close waits for
//     them.
//
// If ctx ends before they are finished, Close waits no longer: appends
// sent to JetStream and not yet acknowledged fail with ErrUnavailable
// (they may have landed; read the log, or retry with the same IDs),
// appends not sent yet fail with ErrClosed (nothing of them was
// written), and Close returns a *CloseError that wraps ctx's error and
// counts both. When nothing was cut short Close returns nil, also with a
// ctx that has ended. Either way, when Close returns the log's
// goroutines have stopped and the embedded server is shut down; later
// calls to Close return nil.
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
	var err error
	select {
	case <-finished:
		_ = l.ackSub.Unsubscribe()
	case <-ctx.Done():
		// Nothing waits for JetStream now: the loops answer what they
		// hold and stop, and closing the connection ends the requests
		// they may be making.
		close(l.abort)
		l.closeConn()
		<-finished
	}
	// A retry backing off (other writers) queues, or fails, shortly.
	for l.backoffs.Load() > 0 {
		time.Sleep(time.Millisecond)
	}
	if l.aborted() {
		err = l.cutShort(ctx.Err())
	} else {
		l.closeConn()
	}
	if l.syncer != nil {
		l.syncer.close() // the finisher has stopped using it
	}
	return err
}

// cutShort reports the appends a Close cut short, if any.
func (l *Log) cutShort(cause error) error {
	var running []string
	if n := l.cut.unknown.Load(); n > 0 {
		running = append(running, fmt.Sprintf("%d appends sent to JetStream and not acknowledged (answered ErrUnavailable: they may have landed; read the log, or retry them with the same IDs)", n))
	}
	if n := l.cut.unsent.Load(); n > 0 {
		running = append(running, fmt.Sprintf("%d appends not sent yet (answered ErrClosed: nothing of them was written)", n))
	}
	if running == nil {
		return nil
	}
	e := &CloseError{Component: "event log", Running: running, Err: cause}
	e.Warn(l.Logger)
	return e
}

// CloseError is what a Close with a context returns when the context
// ends while work is still in flight: the event log's (Log.Close) and the
// projections runner's alike. The component is closed all the same
// (later calls fail with ErrClosed) and stopped waiting for that work;
// Running says what was cut short and what became of it. errors.Is(err,
// context.DeadlineExceeded) tells a missed deadline (context.Canceled a
// cancelled context). The component also logs it, with Warn.
type CloseError struct {
	Component string   // "event log", "projections"
	Running   []string // what was cut short, each with its consequence
	Err       error    // the context's error
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("%s closed before the work in flight finished (%v); cut short: %s", e.Component, e.Err, strings.Join(e.Running, "; "))
}

// Warn logs e as a warning: the one line every component logs when its
// Close is cut short.
func (e *CloseError) Warn(logger *slog.Logger) {
	logger.Warn("closed before the work in flight finished", "component", e.Component, "cut_short", e.Running, "err", e.Err)
}

// Unwrap returns the context's error.
func (e *CloseError) Unwrap() error { return e.Err }

func (l *Log) closeConn() {
	l.closeObjects()
	if l.rc != nil && l.rc != l.nc {
		l.rc.Close()
	}
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

// Conn returns a NATS connection for reading the log's stream with
// JetStream (consumers, direct gets). With the embedded server it may not
// publish events: only the log writes "fazt.ev.>", which is what lets it
// predict every sequence. With URL it is the log's own connection.
func (l *Log) Conn() *nats.Conn { return l.rc }

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

// WaitTail blocks until the log holds a sequence greater than after, and
// returns the newest it knows, or returns ctx's error. It is how a reader
// that only needs to know the log grew learns it without reading every
// event: as the sole writer the log knows every sequence it stores, and
// otherwise it asks JetStream every PollInterval.
func (l *Log) WaitTail(ctx context.Context, after uint64) (uint64, error) {
	var tick <-chan time.Time
	if !l.soleWriter {
		t := time.NewTicker(l.PollInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		woken := l.stored()
		if seq := l.storedSeq.Load(); seq > after {
			return seq, nil
		}
		if !l.soleWriter {
			seq, err := l.LastSeq(ctx)
			if err != nil {
				return 0, err
			}
			if seq > after {
				return seq, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-woken:
		case <-tick:
		}
	}
}

// LastSeq returns the sequence of the newest event in the log (0 if empty).
func (l *Log) LastSeq(ctx context.Context) (uint64, error) {
	info, err := l.rstream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: stream info: %w", ErrUnavailable, err)
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
	order   uint64 // when the commit loop received it
	alone   bool   // a batch it shared was refused: it goes in a group of its own
	sent    bool   // published with Nats-Msg-Id on every event: it may have landed
	resent  bool   // sent again for want of an answer: finding it stored is its own write
	// deadline for an answer, resends and retries included (resends)
	deadline time.Time
	bytes    int // of data, for the storage checks
}

// resChans recycles the one-answer channels of appends.
var resChans = sync.Pool{New: func() any { return make(chan appendResp, 1) }}

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
// *ConflictError (ErrConflict) when an expectation fails,
// ErrInsufficientStorage when the log's storage is full (nothing was
// written; retry once space is freed), ErrUnavailable
// when JetStream cannot be reached (the outcome is unknown; retry with the
// same IDs), ErrClosed when the log is closed (nothing was written; see
// Close), or the context's error.
func (l *Log) Append(ctx context.Context, events []Event, expect ...Expectation) (Result, error) {
	p, err := l.AppendAsync(ctx, events, expect...)
	if err != nil {
		return Result{}, err
	}
	return p.Wait()
}

// Pending is an append on its way to the log.
type Pending struct {
	req  *appendReq
	done bool
	res  Result
	err  error
}

// Wait blocks until the append is committed or has failed, and returns
// what Append would have. Once queued an append completes or fails on its
// own, so Wait takes no context: its answer is always the truth.
func (p *Pending) Wait() (Result, error) {
	if !p.done {
		r := <-p.req.res
		resChans.Put(p.req.res) // exactly one answer is sent per request
		p.done, p.res, p.err = true, r.res, r.err
	}
	return p.res, p.err
}

// AppendAsync queues an append and returns without waiting for it, so
// that one caller can keep many appends in flight (bulk loads, imports);
// Wait on the result, in any order. Errors found before queueing (bad
// input, a closed log, ctx) are returned at once; the others by Wait.
// Appends queued by one caller are committed in the order queued, also
// when some are retried after a failed write; only when other writers
// overtake an append twice (see "Concurrency") does it wait a random
// moment, and appends queued after it may land first.
func (l *Log) AppendAsync(ctx context.Context, events []Event, expect ...Expectation) (*Pending, error) {
	return l.appendAsync(ctx, nil, events, expect)
}

// appendAsync is AppendAsync by w (nil: an ordinary append).
func (l *Log) appendAsync(ctx context.Context, w *Writer, events []Event, expect []Expectation) (*Pending, error) {
	req, clientIDs, err := l.prepare(events, expect, w)
	if err != nil {
		return nil, err
	}
	req.ownIDs = clientIDs
	if err := l.checkSpace(time.Now(), req.bytes); err != nil {
		return nil, err
	}
	// Retries the commit loop cannot recognise (from beyond the dedupe
	// window, or from before a restart) are found by scanning their
	// stream; the others it answers from the IDs it remembers.
	if clientIDs {
		if res, found, err := l.findExisting(ctx, req.events); err != nil {
			return nil, err
		} else if found {
			return &Pending{done: true, res: res}, nil
		}
	}
	// Close finishes every append that passed this check (the commit
	// loop waits for the senders), and fails every later one here.
	l.senders.Add(1)
	defer l.senders.Add(-1)
	l.mu.Lock()
	closed := l.closed || l.reqs == nil
	l.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	select {
	case l.reqs <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &Pending{req: req}, nil
}

// prepare validates an append by w (nil: an ordinary one) and builds
// its request.
func (l *Log) prepare(events []Event, expect []Expectation, w *Writer) (*appendReq, bool, error) {
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
	req := &appendReq{events: make([]Event, len(events)), res: resChans.Get().(chan appendResp)}
	copy(req.events, events)
	var seen, inStream map[string]bool // only needed for several events
	if len(events) > 1 {
		seen, inStream = make(map[string]bool, len(events)), make(map[string]bool, 2)
	}
	clientIDs := false
	total := 0
	for i := range req.events {
		e := &req.events[i]
		if err := e.validate(i, now); err != nil {
			return nil, false, err
		}
		if err := l.checkReserved(i, e, w); err != nil {
			return nil, false, err
		}
		if l.Validate != nil {
			if err := l.Validate(e); err != nil {
				if errors.Is(err, ErrInvalid) {
					return nil, false, fmt.Errorf("event %d: %w", i, err)
				}
				return nil, false, invalidf("event %d: %v", i, err)
			}
		}
		total += len(e.Data)
		// Events without an ID get theirs from the commit loop, which
		// makes them in log order and without contention.
		clientIDs = clientIDs || e.ID != ""
		e.Time, e.Seq, e.Version = time.Time{}, 0, 0
		if seen == nil {
			req.streams = []string{e.Stream}
			continue
		}
		if e.ID != "" && seen[e.ID] {
			return nil, false, invalidf("event %d: id %s appears twice in this append", i, e.ID)
		}
		seen[e.ID] = true
		if !inStream[e.Stream] {
			inStream[e.Stream] = true
			req.streams = append(req.streams, e.Stream)
		}
	}
	// What the events take in the store: data plus envelope and index.
	req.bytes = total + len(req.events)*storedOverhead
	if total > MaxAppendBytes {
		return nil, false, invalidf("append carries %d bytes of data; the limit is %d", total, MaxAppendBytes)
	}
	if max := l.maxPayload(now); max > 0 {
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
		if !slices.Contains(req.streams, x.Stream) {
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

// findExisting looks up, before anything is sent, the events whose IDs
// may already be in the log where the commit loop cannot tell: IDs too
// old for JetStream's dedupe window, and IDs made before this log opened
// that it has not seen (retries across a restart). A retry sent to
// JetStream would be reported as a duplicate all the same, but only after
// breaking the chain of the writes in flight behind it; a burst of such
// retries would be retried over and over. It returns found=true when
// every event of the append is already in the log, with the original
// positions.
func (l *Log) findExisting(ctx context.Context, events []Event) (Result, bool, error) {
	horizon := time.Now().Add(-l.DuplicateWindow + maxFutureIDSkew)
	look := false
	for _, e := range events {
		if e.ID == "" {
			continue
		}
		id, _ := ulid.ParseStrict(e.ID)
		t := ulid.Time(id.Time())
		if t.Before(horizon) {
			look = true
			break
		}
		if t.Before(l.openedAt) {
			l.recentMu.Lock()
			_, known := l.recent[e.ID]
			l.recentMu.Unlock()
			if !known {
				look = true
				break
			}
		}
	}
	if !look {
		return Result{}, false, nil
	}
	pos, err := l.lookup(ctx, events, false)
	if err != nil {
		return Result{}, false, err
	}
	switch {
	case len(pos) == 0:
		return Result{}, false, nil
	case len(pos) < len(events):
		return Result{}, false, invalidf("%d of the %d events are already in the log and the others are not; an append is retried whole, with the same events", len(pos), len(events))
	}
	res := resultOf(events, pos)
	l.remember(events, res.Events) // the next retry is answered at once
	return res, true, nil
}

// maxPayload is the largest message the server accepts, as of at most a
// second ago (a reconnect may reach a server with another limit).
func (l *Log) maxPayload(now time.Time) int64 {
	if at := l.payloadAt.Load(); now.UnixNano()-at < int64(time.Second) {
		return l.payloadMax.Load()
	}
	max := l.nc.MaxPayload()
	l.payloadMax.Store(max)
	l.payloadAt.Store(now.UnixNano())
	return max
}

func resultOf(events []Event, pos map[string]Position) Result {
	res := Result{Events: make([]Position, len(events)), Duplicate: true}
	for i, e := range events {
		res.Events[i] = pos[e.ID]
		res.LastSeq = max(res.LastSeq, pos[e.ID].Seq)
	}
	return res
}

// lookup finds events by ID, scanning from a little before the ID's
// time: each event's own stream, or, when global, the whole log (within
// JetStream's dedupe window, where an ID may be anywhere). It returns the
// positions of those found, and an *IDConflictError when an ID is in the
// log with another stream, type or data: that is not a retry.
func (l *Log) lookup(ctx context.Context, events []Event, global bool) (map[string]Position, error) {
	want := map[string]*Event{}
	byScope := map[string]map[string]bool{} // subject filter -> IDs
	since := map[string]time.Time{}
	for i := range events {
		e := &events[i]
		if e.ID == "" {
			continue // given by the log, so new
		}
		want[e.ID] = e
		scope := SubjectOf(e.Stream)
		if global {
			scope = AllSubjects
		}
		if byScope[scope] == nil {
			byScope[scope] = map[string]bool{}
		}
		byScope[scope][e.ID] = true
		id, _ := ulid.ParseStrict(e.ID)
		t := ulid.Time(id.Time()).Add(-maxFutureIDSkew)
		if global {
			// JetStream remembers IDs for DuplicateWindow: the original
			// was stored within it, whatever time its ID carries.
			t = later(t, time.Now().Add(-l.DuplicateWindow-maxFutureIDSkew))
		}
		if s, ok := since[scope]; !ok || t.Before(s) {
			since[scope] = t
		}
	}
	found := map[string]Position{}
	for scope, ids := range byScope {
		start := since[scope]
		req := directRequest{NextFor: scope, StartTime: &start}
		var conflict error
		err := l.scan(ctx, req, func(m *nats.Msg) (bool, error) {
			id, _ := one(m.Header, headerID)
			if !ids[id] {
				return true, nil
			}
			stored := decode(m)
			if stored.Malformed != nil {
				l.noteMalformed(&stored)
				return true, nil // not an event: it holds no ID
			}
			if conflict = sameEvent(want[id], &stored); conflict != nil {
				return false, nil
			}
			found[id] = Position{ID: id, Stream: stored.Stream, Seq: stored.Seq, Version: stored.Version}
			delete(ids, id)
			return len(ids) > 0, nil
		})
		if err == nil {
			err = conflict
		}
		if err != nil {
			return nil, err
		}
	}
	return found, nil
}

// sameEvent checks that stored, the event in the log with e's ID, is e
// retried: the same stream, type and data (byte for byte).
func sameEvent(e, stored *Event) error {
	var what string
	switch {
	case stored.Stream != e.Stream:
		what = "in another stream"
	case stored.Type != e.Type:
		what = fmt.Sprintf("with another type (%s)", stored.Type)
	case !bytes.Equal(stored.Data, e.Data):
		what = "with other data"
	default:
		return nil
	}
	return &IDConflictError{ID: e.ID, Seq: stored.Seq, Stream: stored.Stream, What: what}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
