package reactor

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/nats-io/nats.go/jetstream"
)

// Kernel event types that reactors write to "reactors.<name>", each at
// schema version 1 (EventParkedSchema, EventUnparkedSchema). The kernel
// registers them.
const (
	// TypeEventParked records that a reactor gave up on an event.
	TypeEventParked = "reactors.event_parked"
	// TypeEventUnparked records that a parked event was retried
	// successfully (RetryParked) and is no longer parked.
	TypeEventUnparked = "reactors.event_unparked"
)

// Defaults for a Reactor's tunables.
const (
	DefaultMaxAttempts = 5
	DefaultAckWait     = 30 * time.Second
	DefaultFetchWait   = time.Second
	// MaxNameLen bounds a reactor's name.
	MaxNameLen = 64
	// maxError bounds the error text kept in a parked record.
	maxError = 4096
)

// DefaultBackoff returns the default delays between attempts: 1s,
// 5s, 30s, 1m, then 5m for any later attempt.
func DefaultBackoff() []time.Duration {
	return []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, time.Minute, 5 * time.Minute}
}

// Reactor describes a durable consumer of the log for side effects. Name
// and Handle are required; zero tunables take their defaults.
type Reactor struct {
	// Name identifies the reactor: one token of letters, digits, '_' or
	// '-', at most MaxNameLen bytes. It names the durable consumer
	// ("reactor_<name>") and the stream of its parked records
	// ("reactors.<name>"); use the same name on every node.
	Name string
	// Filter selects the events to handle. Categories narrow the consumer
	// on the server; Types are checked here. Empty lists match all.
	Filter eventlog.Filter
	// Handle performs the side effect. key is the event's ID, stable
	// across redeliveries: use it to make the side effect idempotent.
	// Returning an error retries the event later. Calls never overlap
	// within one Runner (the loop and RetryParked take turns), but two
	// nodes call their handlers concurrently.
	Handle func(ctx context.Context, e eventlog.Event, key string) error
	// MaxAttempts is how many failed attempts park an event
	// (DefaultMaxAttempts when 0).
	MaxAttempts int
	// Backoff is the delay before attempt n+1 after the n-th failure:
	// Backoff[n-1], the last one repeating (DefaultBackoff when
	// empty).
	Backoff []time.Duration
	// FromBeginning makes a reactor created for the first time handle the
	// whole log instead of only the events appended from now on. It has no
	// effect once the durable consumer exists.
	FromBeginning bool
	// AckWait is how long JetStream waits for an answer before it
	// redelivers an event (DefaultAckWait when 0). The reactor
	// extends it while Handle runs.
	AckWait time.Duration
	// FetchWait is how long one pull request waits for an event
	// (DefaultFetchWait when 0). Stop may take this long.
	FetchWait time.Duration
	// Logger receives retries, parkings and errors; the log's Logger when
	// nil.
	Logger *slog.Logger
	// Writer appends the parked records when the log reserves
	// Category (the kernel sets it); nil: the log's ordinary
	// Append.
	Writer *eventlog.Writer
}

// ConsumerName is the JetStream durable consumer of a reactor.
func ConsumerName(name string) string { return "reactor_" + name }

// Category is the log category of the parked records. The kernel
// reserves it (eventlog.Log.Reserve): only a reactor's own code records
// that it parked or unparked an event.
const Category = "reactors"

// Stream is the event stream holding a reactor's parked records.
func Stream(name string) string { return Category + "." + name }

// Parked is an event a reactor gave up on.
type Parked struct {
	Seq      uint64    `json:"seq"`      // global sequence of the event
	EventID  string    `json:"event_id"` // empty when the message was not a valid event
	Type     string    `json:"type"`
	Attempts int       `json:"attempts"`
	Error    string    `json:"error"` // why the last attempt failed
	At       time.Time `json:"at"`    // when it was parked (the record's time in the log)
}

// Status is a reactor's progress, shared by every node that runs it.
type Status struct {
	Name string `json:"name"`
	// Pending counts events of the reactor's categories not yet done
	// (not delivered, or delivered and not yet acknowledged); events of
	// other types in those categories are included.
	Pending uint64 `json:"pending"`
	// Delivered is the stream sequence up to which every event is done:
	// handled, skipped by type, or parked.
	Delivered uint64 `json:"delivered"`
	// Parked lists the parked events by sequence.
	Parked []Parked `json:"parked"`
	// Unreadable lists the sequences of records in the reactor's stream
	// that are not valid records (written around the kernel); they were
	// passed over.
	Unreadable []uint64 `json:"unreadable,omitempty"`
}

// Runner runs one reactor, from Start to Stop: it fetches the
// reactor's events and calls its Handle. Its methods are safe for
// concurrent use.
type Runner struct {
	r      Reactor
	log    *eventlog.Log
	cons   jetstream.Consumer
	stream string
	logger *slog.Logger

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	run      context.Context // the handler's context; cancelled when Stop gives up waiting
	cancel   context.CancelFunc

	callMu sync.Mutex // one Handle call at a time

	parkMu     sync.Mutex
	parked     map[uint64]Parked
	parkSeq    uint64   // log sequence up to which the parked records are applied
	unreadable []uint64 // sequences of records in its stream that could not be read
}

// parkRecord is the data of TypeEventParked and TypeEventUnparked.
type parkRecord struct {
	Reactor   string `json:"reactor"`
	Seq       uint64 `json:"seq"`
	EventID   string `json:"event_id,omitempty"`
	EventType string `json:"event_type,omitempty"`
	Attempts  int    `json:"attempts,omitempty"`
	Error     string `json:"error,omitempty"`
}

// EventParkedSchema is the JSON Schema of TypeEventParked, version 1.
// The committed schema ledger holds it: it never changes.
const EventParkedSchema = `{
  "type": "object",
  "description": "a reactor gave up on an event after repeated failures",
  "properties": {
    "reactor": {"type": "string", "description": "the reactor's name"},
    "seq": {"type": "integer", "minimum": 1, "description": "global sequence of the parked event"},
    "event_id": {"type": "string", "description": "ID of the parked event; absent when the message was not a valid event"},
    "event_type": {"type": "string"},
    "attempts": {"type": "integer", "minimum": 0, "description": "failed attempts so far"},
    "error": {"type": "string", "description": "why the last attempt failed"}
  },
  "required": ["reactor", "seq"]
}`

// EventUnparkedSchema is the JSON Schema of TypeEventUnparked, version 1.
// The committed schema ledger holds it: it never changes.
const EventUnparkedSchema = `{
  "type": "object",
  "description": "a parked event was retried successfully and is no longer parked",
  "properties": {
    "reactor": {"type": "string", "description": "the reactor's name"},
    "seq": {"type": "integer", "minimum": 1, "description": "global sequence of the event"},
    "event_id": {"type": "string"}
  },
  "required": ["reactor", "seq"]
}`

// Start creates or binds the reactor's durable consumer, loads its
// parked events from the log and starts handling events until Stop. ctx
// bounds the start only (its values are passed on to Handle). Errors:
// eventlog.ErrInvalid for a bad Reactor, or JetStream's error.
func Start(ctx context.Context, log *eventlog.Log, r Reactor) (*Runner, error) {
	if log == nil || log.Conn() == nil {
		return nil, fmt.Errorf("%w: reactor %q: the log is not open", eventlog.ErrInvalid, r.Name)
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	if r.Logger == nil {
		r.Logger = log.Logger
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	js, err := jetstream.New(log.Conn())
	if err != nil {
		return nil, err
	}
	cons, err := ensureConsumer(ctx, js, log.StreamName, &r)
	if err != nil {
		return nil, fmt.Errorf("reactor %s: consumer %s: %w", r.Name, ConsumerName(r.Name), err)
	}
	run, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h := &Runner{
		r:      r,
		log:    log,
		cons:   cons,
		stream: Stream(r.Name),
		logger: r.Logger.With("reactor", r.Name),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		run:    run,
		cancel: cancel,
		parked: map[uint64]Parked{},
	}
	if err := h.refreshParked(ctx); err != nil {
		cancel()
		return nil, fmt.Errorf("reactor %s: load parked events: %w", r.Name, err)
	}
	go h.loop()
	return h, nil
}

// Delete removes a reactor's durable consumer (stop it on every
// node first). Its next start begins afresh, from now or, with
// FromBeginning, from the start of the log. Its parked records stay in the
// log and still apply to a reactor of the same name.
func Delete(ctx context.Context, log *eventlog.Log, name string) error {
	if log == nil || log.Conn() == nil {
		return fmt.Errorf("%w: reactor %q: the log is not open", eventlog.ErrInvalid, name)
	}
	js, err := jetstream.New(log.Conn())
	if err != nil {
		return err
	}
	err = js.DeleteConsumer(ctx, log.StreamName, ConsumerName(name))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("reactor %s: %w", name, eventlog.ErrNotFound)
	}
	return err
}

// check validates r and fills in defaults.
func (r *Reactor) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: reactor %q: %s", eventlog.ErrInvalid, r.Name, fmt.Sprintf(format, args...))
	}
	if err := eventlog.ValidateCategory(r.Name); err != nil {
		return bad("name: %v", err)
	}
	if len(r.Name) > MaxNameLen {
		return bad("name is %d bytes; the limit is %d", len(r.Name), MaxNameLen)
	}
	if r.Handle == nil {
		return bad("Handle is nil")
	}
	for _, c := range r.Filter.Categories {
		if err := eventlog.ValidateCategory(c); err != nil {
			return bad("filter: %v", err)
		}
	}
	for _, t := range r.Filter.Types {
		if err := eventlog.ValidateType(t); err != nil {
			return bad("filter: %v", err)
		}
	}
	switch {
	case r.MaxAttempts < 0:
		return bad("MaxAttempts %d is negative", r.MaxAttempts)
	case r.MaxAttempts == 0:
		r.MaxAttempts = DefaultMaxAttempts
	}
	if len(r.Backoff) == 0 {
		r.Backoff = DefaultBackoff()
	}
	r.Backoff = slices.Clone(r.Backoff)
	for _, d := range r.Backoff {
		if d < 0 {
			return bad("Backoff has a negative delay %v", d)
		}
	}
	switch {
	case r.AckWait < 0:
		return bad("AckWait %v is negative", r.AckWait)
	case r.AckWait == 0:
		r.AckWait = DefaultAckWait
	case r.AckWait < 100*time.Millisecond:
		return bad("AckWait %v is below 100ms", r.AckWait)
	}
	switch {
	case r.FetchWait < 0:
		return bad("FetchWait %v is negative", r.FetchWait)
	case r.FetchWait == 0:
		r.FetchWait = DefaultFetchWait
	case r.FetchWait < 10*time.Millisecond:
		return bad("FetchWait %v is below 10ms", r.FetchWait)
	}
	r.Filter = eventlog.Filter{Types: slices.Clone(r.Filter.Types), Categories: slices.Clone(r.Filter.Categories)}
	return nil
}

// subjects is the consumer's filter for a list of categories.
func subjects(categories []string) (string, []string) {
	cats := slices.Clone(categories)
	slices.Sort(cats)
	cats = slices.Compact(cats)
	switch len(cats) {
	case 0:
		return "", nil
	case 1:
		return eventlog.CategorySubject(cats[0]), nil
	}
	subs := make([]string, len(cats))
	for i, c := range cats {
		subs[i] = eventlog.CategorySubject(c)
	}
	return "", subs
}

// clusterTries bounds the lookups of a consumer that does not answer yet.
const clusterTries = 10

// ensureConsumer binds the reactor's durable consumer, creating it
// (with the reactor's start position) or updating the settings a reactor
// owns.
func ensureConsumer(ctx context.Context, js jetstream.JetStream, stream string, r *Reactor) (jetstream.Consumer, error) {
	name := ConsumerName(r.Name)
	set := func(cfg *jetstream.ConsumerConfig) {
		cfg.Durable = name
		cfg.Description = "fazt reactor " + r.Name
		cfg.AckPolicy = jetstream.AckExplicitPolicy
		cfg.AckWait = r.AckWait
		cfg.MaxDeliver = -1    // the reactor parks, JetStream never drops
		cfg.MaxAckPending = 1  // one event at a time, in order, across nodes
		cfg.HeadersOnly = true // the event is read from the log by sequence
		cfg.BackOff = nil      // delays come with each nak
		cfg.FilterSubject, cfg.FilterSubjects = subjects(r.Filter.Categories)
	}
	for try, waits := 0, 0; try < 3; try++ {
		c, err := js.Consumer(ctx, stream, name)
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil && waits < clusterTries {
			// In a cluster a consumer another node just made answers only
			// once it has elected its leader: ask again.
			waits++
			try--
			continue
		}
		switch {
		case err == nil:
			cur := c.CachedInfo().Config
			next := cur
			set(&next)
			if cur.Description == next.Description && cur.AckPolicy == next.AckPolicy && cur.AckWait == next.AckWait &&
				cur.MaxDeliver == next.MaxDeliver && cur.MaxAckPending == next.MaxAckPending && cur.HeadersOnly == next.HeadersOnly &&
				len(cur.BackOff) == 0 && cur.FilterSubject == next.FilterSubject && slices.Equal(cur.FilterSubjects, next.FilterSubjects) {
				return c, nil
			}
			return js.UpdateConsumer(ctx, stream, next)
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			cfg := jetstream.ConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
			if r.FromBeginning {
				cfg.DeliverPolicy = jetstream.DeliverAllPolicy
			}
			set(&cfg)
			c, err := js.CreateConsumer(ctx, stream, cfg)
			if errors.Is(err, jetstream.ErrConsumerExists) {
				continue // another node created it with other settings; bind it
			}
			return c, err
		default:
			return nil, err
		}
	}
	return nil, fmt.Errorf("consumer keeps changing while binding it")
}

// Name is the reactor's name.
func (h *Runner) Name() string { return h.r.Name }

// Stop stops fetching events, waits for the handler call in flight to
// finish and be acknowledged, and returns. If ctx ends first, the
// handler's context is cancelled and Stop returns an
// *eventlog.CloseError wrapping ctx's error, as the log and the
// projections runner do; the unfinished event will be redelivered. Stop may take up to FetchWait.
func (h *Runner) Stop(ctx context.Context) error {
	h.stopOnce.Do(func() { close(h.stop) })
	select {
	case <-h.done:
		h.cancel()
		return nil
	case <-ctx.Done():
		h.cancel()
		err := &eventlog.CloseError{Component: "reactor " + h.r.Name, Running: []string{"a handler call, cancelled"}, Err: ctx.Err()}
		err.Warn(h.logger)
		return err
	}
}

// Done is closed when the reactor has stopped (after Stop, or when the
// log's connection closed).
func (h *Runner) Done() <-chan struct{} { return h.done }

// Status reports the reactor's progress and its parked events, as seen by
// every node.
func (h *Runner) Status(ctx context.Context) (Status, error) {
	if err := h.refreshParked(ctx); err != nil {
		return Status{}, fmt.Errorf("reactor %s: read parked events: %w", h.r.Name, err)
	}
	info, err := h.cons.Info(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("reactor %s: consumer info: %w", h.r.Name, err)
	}
	return Status{
		Name:       h.r.Name,
		Pending:    info.NumPending + uint64(info.NumAckPending),
		Delivered:  info.AckFloor.Stream,
		Parked:     h.parkedList(),
		Unreadable: h.Unreadable(),
	}, nil
}

// RetryParked calls Handle again for the parked event at seq, with the
// same key. When it succeeds the event is no longer parked (a
// TypeEventUnparked record is appended); when it fails the event stays
// parked, with the new reason and one more attempt recorded, and the
// handler's error is returned. Errors: eventlog.ErrNotFound when no event
// is parked at seq.
func (h *Runner) RetryParked(ctx context.Context, seq uint64) error {
	if err := h.refreshParked(ctx); err != nil {
		return fmt.Errorf("reactor %s: read parked events: %w", h.r.Name, err)
	}
	h.parkMu.Lock()
	p, ok := h.parked[seq]
	h.parkMu.Unlock()
	if !ok {
		return fmt.Errorf("%w: reactor %s has no parked event at seq %d", eventlog.ErrNotFound, h.r.Name, seq)
	}
	e, err := h.readEvent(ctx, seq)
	if err != nil {
		return fmt.Errorf("reactor %s: read parked event %d: %w", h.r.Name, seq, err)
	}
	if herr := h.call(ctx, nil, e); herr != nil {
		if err := h.appendPark(ctx, TypeEventParked, parkRecord{Seq: seq, EventID: e.ID, EventType: e.Type, Attempts: p.Attempts + 1, Error: errText(herr)}); err != nil {
			return fmt.Errorf("reactor %s: retry of parked event %d failed: %w (and recording it failed: %v)", h.r.Name, seq, herr, err)
		}
		return fmt.Errorf("reactor %s: retry of parked event %d failed, still parked: %w", h.r.Name, seq, herr)
	}
	if err := h.appendPark(ctx, TypeEventUnparked, parkRecord{Seq: seq, EventID: e.ID}); err != nil {
		return fmt.Errorf("reactor %s: parked event %d was handled but unparking it failed: %w", h.r.Name, seq, err)
	}
	return nil
}

func (h *Runner) stopping() bool {
	select {
	case <-h.stop:
		return true
	default:
		return false
	}
}

// pause waits d or until Stop.
func (h *Runner) pause(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-h.stop:
	}
}

// loop fetches one event at a time until Stop. A pull request is never
// abandoned: it is waited out (at most FetchWait), so an event JetStream
// sends is always answered, never left to time out.
func (h *Runner) loop() {
	defer close(h.done)
	for !h.stopping() {
		if h.log.Conn().IsClosed() {
			h.logger.Warn("reactor stopped: the log's connection is closed")
			return
		}
		batch, err := h.cons.Fetch(1, jetstream.FetchMaxWait(h.r.FetchWait))
		if err != nil {
			h.logger.Error("reactor fetch failed", "err", err)
			h.pause(h.r.FetchWait)
			continue
		}
		for msg := range batch.Messages() {
			if h.stopping() {
				_ = msg.Nak() // not started: give it back at once
				continue
			}
			h.process(msg)
		}
		if err := batch.Error(); err != nil && !h.log.Conn().IsClosed() {
			h.logger.Error("reactor fetch failed", "err", err)
			h.pause(h.r.FetchWait)
		}
	}
}

// process handles one delivered message to the end: ack, nak with delay,
// or park and term.
func (h *Runner) process(msg jetstream.Msg) {
	ctx := h.run
	md, err := msg.Metadata()
	if err != nil {
		h.logger.Error("reactor message without metadata", "err", err)
		_ = msg.NakWithDelay(h.delay(1))
		return
	}
	seq, attempt := md.Sequence.Stream, int(md.NumDelivered)
	if attempt > 1 {
		// A redelivery: another node (or this one, before a crash) may
		// have parked it without managing to terminate it.
		if err := h.refreshParked(ctx); err != nil {
			h.logger.Warn("reactor could not refresh parked events", "err", err)
		}
	}
	if h.isParked(seq) {
		_ = msg.TermWithReason("parked")
		return
	}
	e, err := h.readEvent(ctx, seq)
	if errors.Is(err, eventlog.ErrMalformed) {
		h.park(msg, parkRecord{Seq: seq, Attempts: attempt, Error: errText(err)}, attempt)
		return
	}
	if err != nil {
		d := h.delay(attempt)
		h.logger.Warn("reactor could not read event", "seq", seq, "retry_in", d, "err", err)
		_ = msg.NakWithDelay(d)
		return
	}
	if e.Stream == h.stream || !h.r.Filter.Match(&e) {
		h.ack(msg, seq)
		return
	}
	herr := h.call(ctx, msg, e)
	switch {
	case herr == nil:
		h.ack(msg, seq)
	case attempt >= h.r.MaxAttempts:
		h.logger.Error("reactor parks event", "seq", seq, "id", e.ID, "type", e.Type, "attempts", attempt, "err", herr)
		h.park(msg, parkRecord{Seq: seq, EventID: e.ID, EventType: e.Type, Attempts: attempt, Error: errText(herr)}, attempt)
	default:
		d := h.delay(attempt)
		h.logger.Warn("reactor handler failed", "seq", seq, "id", e.ID, "type", e.Type, "attempt", attempt, "retry_in", d, "err", herr)
		_ = msg.NakWithDelay(d)
	}
}

// readEvent reads the event at seq from the log, which stays the only
// decoder of the wire form.
func (h *Runner) readEvent(ctx context.Context, seq uint64) (eventlog.Event, error) {
	if seq == 0 {
		return eventlog.Event{}, fmt.Errorf("%w: sequence 0", eventlog.ErrNotFound)
	}
	page, err := h.log.Read(ctx, seq-1, 1, eventlog.Filter{})
	if err != nil {
		return eventlog.Event{}, err
	}
	if len(page.Events) != 1 || page.Events[0].Seq != seq {
		return eventlog.Event{}, fmt.Errorf("%w: event at seq %d", eventlog.ErrNotFound, seq)
	}
	return page.Events[0], page.Events[0].Err() // ErrMalformed for a malformed entry
}

// delay is the backoff after the n-th failed attempt.
func (h *Runner) delay(n int) time.Duration {
	b := h.r.Backoff
	return b[min(max(n, 1), len(b))-1]
}

func (h *Runner) ack(msg jetstream.Msg, seq uint64) {
	ctx, cancel := context.WithTimeout(h.run, h.log.RequestTimeout)
	defer cancel()
	if err := msg.DoubleAck(ctx); err != nil {
		// The event will be redelivered; the key makes that harmless.
		h.logger.Warn("reactor ack failed", "seq", seq, "err", err)
	}
}

// park records the event as parked, then terminates it. If the record
// cannot be written, the event is retried later instead.
func (h *Runner) park(msg jetstream.Msg, rec parkRecord, attempt int) {
	if err := h.appendPark(h.run, TypeEventParked, rec); err != nil {
		d := h.delay(attempt)
		h.logger.Error("reactor could not record a parked event; retrying it", "seq", rec.Seq, "retry_in", d, "err", err)
		_ = msg.NakWithDelay(d)
		return
	}
	_ = msg.TermWithReason("parked")
}

// call runs Handle, one call at a time, telling JetStream that msg (nil
// for RetryParked) is in progress while it runs.
func (h *Runner) call(ctx context.Context, msg jetstream.Msg, e eventlog.Event) error {
	if msg != nil {
		beat := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(h.r.AckWait / 3)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					_ = msg.InProgress()
				case <-beat:
					return
				}
			}
		}()
		defer func() { close(beat); wg.Wait() }()
	}
	h.callMu.Lock()
	defer h.callMu.Unlock()
	return h.invoke(ctx, e)
}

// invoke calls Handle, turning a panic into an error.
func (h *Runner) invoke(ctx context.Context, e eventlog.Event) (err error) {
	defer func() {
		if p := recover(); p != nil {
			h.logger.Error("reactor handler panicked", "seq", e.Seq, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return h.r.Handle(ctx, e, e.ID)
}

// appendPark appends a parked or unparked record and applies it.
func (h *Runner) appendPark(ctx context.Context, typ string, rec parkRecord) error {
	rec.Reactor = h.r.Name
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	appendRec := h.log.Append
	if h.r.Writer != nil {
		appendRec = h.r.Writer.Append
	}
	if _, err := appendRec(ctx, []eventlog.Event{{Stream: h.stream, Type: typ, Data: data}}); err != nil {
		return err
	}
	if err := h.refreshParked(ctx); err != nil {
		// Recorded in the log; apply it here until the next refresh.
		h.parkMu.Lock()
		h.applyPark(typ, rec, time.Now().UTC())
		h.parkMu.Unlock()
	}
	return nil
}

// refreshParked applies the records appended to the reactor's stream
// since the last refresh (by any node). A record it cannot read is
// logged, listed in Status and passed over: nothing in the log may stop
// a reactor from starting.
func (h *Runner) refreshParked(ctx context.Context) error {
	h.parkMu.Lock()
	defer h.parkMu.Unlock()
	unreadable := func(seq uint64, err error) {
		if !slices.Contains(h.unreadable, seq) {
			h.unreadable = append(h.unreadable, seq)
			h.logger.Warn("a record of the reactor's parked events cannot be read; passed over", "stream", h.stream, "seq", seq, "err", err)
		}
	}
	last, err := h.log.ReadEach(ctx, h.parkSeq, eventlog.Filter{Categories: []string{Category}}, func(e eventlog.Event) bool {
		switch {
		case e.Malformed != nil:
			if stream, _ := eventlog.StreamOf(e.Malformed.Subject); stream == h.stream {
				unreadable(e.Seq, e.Err())
			}
		case e.Stream == h.stream && (e.Type == TypeEventParked || e.Type == TypeEventUnparked):
			var rec parkRecord
			if err := json.Unmarshal(e.Data, &rec); err != nil {
				unreadable(e.Seq, err)
			} else {
				h.applyPark(e.Type, rec, e.Time)
			}
		}
		return true
	})
	h.parkSeq = max(h.parkSeq, last)
	return err
}

// applyPark applies one record; parkMu is held.
func (h *Runner) applyPark(typ string, rec parkRecord, at time.Time) {
	switch typ {
	case TypeEventParked:
		h.parked[rec.Seq] = Parked{Seq: rec.Seq, EventID: rec.EventID, Type: rec.EventType, Attempts: rec.Attempts, Error: rec.Error, At: at}
	case TypeEventUnparked:
		delete(h.parked, rec.Seq)
	}
}

func (h *Runner) isParked(seq uint64) bool {
	h.parkMu.Lock()
	defer h.parkMu.Unlock()
	_, ok := h.parked[seq]
	return ok
}

// Unreadable returns the sequences of the records in the reactor's
// stream that could not be read, as of the last refresh.
func (h *Runner) Unreadable() []uint64 {
	h.parkMu.Lock()
	defer h.parkMu.Unlock()
	return slices.Clone(h.unreadable)
}

func (h *Runner) parkedList() []Parked {
	h.parkMu.Lock()
	defer h.parkMu.Unlock()
	out := make([]Parked, 0, len(h.parked))
	for _, p := range h.parked {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Parked) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

// errText is an error's text, cut to maxError bytes of valid
// UTF-8.
func errText(err error) string {
	s := err.Error()
	if len(s) <= maxError {
		return s
	}
	return strings.ToValidUTF8(s[:maxError], "") + "..."
}
