package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections/sqlitedb"
)

// Defaults for the tunables of a Runner.
const (
	DefaultBatchSize     = 10000
	DefaultBatchBytes    = 8 << 20
	DefaultRetryInterval = time.Second
	DefaultPollInterval  = 50 * time.Millisecond
)

// ErrClosed: the runner is not open (before Open or after Close).
var ErrClosed = errors.New("projections runner not open")

// Runner keeps a set of projections folded from one log.
//
// Create one with New, adjust the exported fields, Register every
// projection, then Open. All methods are safe for concurrent use.
type Runner struct {
	// Dir holds one directory per projection (see the package doc).
	Dir string
	// BatchSize is the most events read and committed in one
	// transaction; catching up uses whole batches, live folding commits
	// whatever has arrived.
	BatchSize int
	// BatchBytes also ends a batch, once its events' data reach it (a
	// batch holds one event at least): large events are folded a few at
	// a time rather than BatchSize of them in memory at once.
	BatchBytes int
	// RetryInterval is how long a projection waits after a transient
	// error (log unavailable, disk) before trying again.
	RetryInterval time.Duration
	// PollInterval is how soon a projection looks again when the log
	// has announced events its read did not return yet.
	PollInterval time.Duration
	// Readers is the read-only connection pool size of each file.
	Readers int
	// Logger receives rebuilds, halts, skips and transient errors
	// (slog.Default(); Open takes nil for it too).
	Logger *slog.Logger
	// Writer appends skip decisions when the log reserves Category (see
	// skip.go); nil: the log's ordinary Append.
	Writer *eventlog.Writer

	log *eventlog.Log

	mu     sync.Mutex
	projs  map[string]*proj
	names  []string        // sorted
	state  int             // runnerNew, runnerOpen, runnerClosed
	runCtx context.Context // the loops' context, cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	tailMu sync.Mutex
	tail   uint64        // newest sequence seen in the log
	tailCh chan struct{} // closed and replaced when tail grows
}

const (
	runnerNew = iota
	runnerOpen
	runnerClosed
)

// New returns a Runner that keeps its files under dir and folds log, with
// every tunable at its default. The log must stay open until Close.
func New(dir string, log *eventlog.Log) *Runner {
	return &Runner{
		Dir:           dir,
		BatchSize:     DefaultBatchSize,
		BatchBytes:    DefaultBatchBytes,
		RetryInterval: DefaultRetryInterval,
		PollInterval:  DefaultPollInterval,
		Readers:       sqlitedb.DefaultReaders,
		Logger:        slog.Default(),
		log:           log,
		projs:         map[string]*proj{},
		tailCh:        make(chan struct{}),
	}
}

// proj is a registered projection and its generations.
type proj struct {
	r   *Runner
	p   Projection
	dir string

	opMu sync.Mutex // serialises Rebuild and Skip

	mu      sync.Mutex
	cur     *gen   // serves reads
	next    *gen   // being rebuilt, nil if none
	prev    string // file kept from the last swap, for rollback
	maxNum  int    // highest generation number used
	loops   int    // generations' loops not yet returned (Close)
	changed chan struct{}
}

// Register adds a projection. It must be called before Open. Errors:
// ErrInvalid for a malformed projection or a name registered twice.
func (r *Runner) Register(p Projection) error {
	if err := p.validate(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != runnerNew {
		return invalidf("projection %s: register before Open", p.Name)
	}
	if _, dup := r.projs[p.Name]; dup {
		return invalidf("projection %s is registered twice", p.Name)
	}
	p.Tables = slices.Clone(p.Tables)
	r.projs[p.Name] = &proj{r: r, p: p, dir: filepath.Join(r.Dir, p.Name), changed: make(chan struct{})}
	r.names = append(r.names, p.Name)
	slices.Sort(r.names)
	return nil
}

// Open opens every projection's file, checks its checkpoint against the
// log, starts rebuilds where needed and starts folding. A checkpoint the
// log does not back (ahead of it, or naming another event) is logged as
// a warning and rebuilt from scratch; a version change is rebuilt blue/
// green while the old file serves.
func (r *Runner) Open(ctx context.Context) error {
	if r.BatchSize < 1 || r.BatchBytes < 1 || r.RetryInterval <= 0 || r.PollInterval <= 0 || r.Readers < 1 {
		return invalidf("runner tunables: BatchSize %d, BatchBytes %d, RetryInterval %v, PollInterval %v, Readers %d: want positive values",
			r.BatchSize, r.BatchBytes, r.RetryInterval, r.PollInterval, r.Readers)
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != runnerNew {
		return fmt.Errorf("projections: Open called twice")
	}
	tail, err := r.log.LastSeq(ctx)
	if err != nil {
		return fmt.Errorf("projections: open: %w", err)
	}
	r.setTail(tail)
	for i, name := range r.names {
		if err := r.projs[name].open(ctx, tail); err != nil { // it shuts itself
			for _, n := range r.names[:i] {
				r.projs[n].shut()
			}
			return err
		}
	}
	runCtx, cancel := context.WithCancel(context.Background())
	r.runCtx, r.cancel = runCtx, cancel
	r.state = runnerOpen
	r.wg.Go(func() { r.followTail(runCtx) })
	for _, name := range r.names {
		pr := r.projs[name]
		pr.mu.Lock()
		if pr.cur.follow {
			pr.start(runCtx, pr.cur)
		}
		if pr.next != nil {
			pr.start(runCtx, pr.next)
		}
		pr.mu.Unlock()
	}
	return nil
}

// Close stops every projection and closes the files once their loops
// and the last reader have released them. A transaction in flight is
// rolled back; its events are folded again at the next Open, so nothing
// is lost or folded twice. Close waits for the loops until ctx ends.
//
// If ctx ends while a projection is still folding (behind the log's tail,
// or rebuilding), Close waits no longer and returns an
// *eventlog.CloseError that wraps ctx's error and names those
// projections; their files close as soon as their loops stop. Idle
// projections stop at once and are not named: when none was busy, Close
// returns nil, also with a ctx that has ended. Either way the runner is
// closed when Close returns: later calls fail with ErrClosed, and later
// calls to Close return nil.
func (r *Runner) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.state != runnerOpen {
		r.state = runnerClosed
		r.mu.Unlock()
		return nil
	}
	r.state = runnerClosed
	r.cancel()
	r.mu.Unlock()
	finished := make(chan struct{})
	go func() { r.wg.Wait(); close(finished) }()
	var err error
	select {
	case <-finished:
	case <-ctx.Done():
		err = r.cutShort(ctx.Err())
	}
	for _, name := range r.names {
		r.projs[name].shut()
	}
	return err
}

// cutShort reports the projections still folding when Close's context
// ended, if any.
func (r *Runner) cutShort(cause error) error {
	tail := r.tailSeq()
	var running []string
	for _, name := range r.names {
		if r.projs[name].busy(tail) {
			running = append(running, "projection "+name+" (its transaction in flight is rolled back and folded again at the next Open)")
		}
	}
	if running == nil {
		return nil
	}
	e := &eventlog.CloseError{Component: "projections", Running: running, Err: cause}
	e.Warn(r.Logger)
	return e
}

// busy reports whether a loop of pr has not stopped and has work: a
// generation neither halted nor caught up with tail. An idle loop stops
// the moment it is cancelled.
func (pr *proj) busy(tail uint64) bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.loops == 0 {
		return false
	}
	for _, g := range []*gen{pr.cur, pr.next} {
		if g != nil && g.cancel != nil && g.halt == nil && (!g.live || g.behind || g.cp.Seq < tail) {
			return true
		}
	}
	return false
}

// start runs g's loop. pr.mu is held.
func (pr *proj) start(ctx context.Context, g *gen) {
	ctx, g.cancel = context.WithCancel(ctx)
	g.refs++ // the loop's
	pr.loops++
	pr.r.wg.Go(func() {
		defer func() {
			pr.mu.Lock()
			pr.loops--
			pr.mu.Unlock()
		}()
		g.run(ctx)
	})
}

// shut retires every generation; files close when readers let go.
func (pr *proj) shut() {
	pr.mu.Lock()
	var closing []*gen
	for _, g := range []*gen{pr.cur, pr.next} {
		if g != nil && pr.retire(g) {
			closing = append(closing, g)
		}
	}
	pr.cur, pr.next = nil, nil
	pr.mu.Unlock()
	for _, g := range closing {
		g.db.Close()
	}
	pr.broadcast()
}

// retire drops the runner's reference to g and stops its loop; it
// reports whether g must be closed now. pr.mu is held.
func (pr *proj) retire(g *gen) bool {
	if g.retired {
		return false
	}
	g.retired = true
	if g.cancel != nil {
		g.cancel()
	}
	g.refs--
	return g.refs == 0
}

// unref drops one reference and closes g when it was the last.
func (pr *proj) unref(g *gen) {
	pr.mu.Lock()
	g.refs--
	last := g.refs == 0 && g.retired
	pr.mu.Unlock()
	if last {
		g.db.Close()
	}
}

func (pr *proj) isNext(g *gen) bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.next == g
}

// broadcast wakes WaitFor callers.
func (pr *proj) broadcast() {
	pr.mu.Lock()
	close(pr.changed)
	pr.changed = make(chan struct{})
	pr.mu.Unlock()
}

// followTail keeps r.tail at the newest sequence in the log and wakes
// the projections when it grows, without reading the events: each
// projection reads what it needs.
func (r *Runner) followTail(ctx context.Context) {
	for ctx.Err() == nil {
		seq, err := r.log.WaitTail(ctx, r.tailSeq())
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			r.Logger.Warn("projections cannot follow the log; retrying", "err", err, "retry_in", r.RetryInterval)
			sleep(ctx, r.RetryInterval)
		default:
			r.setTail(seq)
		}
	}
}

func (r *Runner) setTail(seq uint64) {
	r.tailMu.Lock()
	defer r.tailMu.Unlock()
	if seq > r.tail {
		r.tail = seq
		close(r.tailCh)
		r.tailCh = make(chan struct{})
	}
}

func (r *Runner) tailSeq() uint64 {
	r.tailMu.Lock()
	defer r.tailMu.Unlock()
	return r.tail
}

// tailWake returns a channel closed when the tail next grows.
func (r *Runner) tailWake() <-chan struct{} {
	r.tailMu.Lock()
	defer r.tailMu.Unlock()
	return r.tailCh
}

func (r *Runner) lookup(name string) (*proj, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pr := r.projs[name]
	if pr == nil {
		return nil, fmt.Errorf("projection %q: %w", name, eventlog.ErrNotFound)
	}
	return pr, nil
}

// Acquire returns the database that currently serves name, for reads on
// its Reader pool, and a release function to call when done (once;
// later calls do nothing). A database stays open while acquired, also
// after a rebuild has swapped in a newer one, so a reader never sees two
// files; run several queries in one read transaction to see one state.
// Errors: ErrNotFound (not registered), ErrClosed.
func (r *Runner) Acquire(name string) (*sqlitedb.DB, func(), error) {
	pr, err := r.lookup(name)
	if err != nil {
		return nil, nil, err
	}
	return pr.acquire()
}

func (pr *proj) acquire() (*sqlitedb.DB, func(), error) {
	pr.mu.Lock()
	g := pr.cur
	if g == nil {
		pr.mu.Unlock()
		return nil, nil, fmt.Errorf("projection %s: %w", pr.p.Name, ErrClosed)
	}
	g.refs++
	pr.mu.Unlock()
	var once sync.Once
	return g.db, func() { once.Do(func() { pr.unref(g) }) }, nil
}

// WaitFor blocks until the file serving name has folded the log up to seq
// (pass an append's Result.LastSeq to read your own writes). Errors:
// *HaltedError (ErrHalted) when the projection is halted at or before
// seq, ErrNotFound, ErrClosed, or ctx's error.
//
// While a version bump rebuilds, the old version's file serves, frozen:
// WaitFor is content with it when it already covers seq. Use
// WaitForVersion when the reads need the registered version's tables.
func (r *Runner) WaitFor(ctx context.Context, name string, seq uint64) error {
	return r.waitFor(ctx, name, seq, false)
}

// WaitForVersion is WaitFor, and also waits until the serving file is
// the registered version's: after a version bump, until the rebuild has
// been swapped in.
func (r *Runner) WaitForVersion(ctx context.Context, name string, seq uint64) error {
	return r.waitFor(ctx, name, seq, true)
}

func (r *Runner) waitFor(ctx context.Context, name string, seq uint64, current bool) error {
	pr, err := r.lookup(name)
	if err != nil {
		return err
	}
	return pr.waitFor(ctx, seq, current)
}

func (pr *proj) waitFor(ctx context.Context, seq uint64, current bool) error {
	for {
		wake, err := pr.reached(seq, current)
		if wake == nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}

// reached checks, once, whether the serving file has folded the log up
// to seq (and, when current, is the registered version's). It returns
// nil, nil when it has; an error when it cannot (closed, halted);
// otherwise a channel closed at the projection's next change.
func (pr *proj) reached(seq uint64, current bool) (<-chan struct{}, error) {
	pr.mu.Lock()
	g, wake := pr.cur, pr.changed
	var cp uint64
	var halt *Halt
	stale := false
	if g != nil {
		cp = g.cp.Seq
		halt = g.halt
		if !g.follow && pr.next != nil {
			halt = pr.next.halt // a frozen file waits for its rebuild
		}
		stale = current && g.version != pr.p.Version
	}
	pr.mu.Unlock()
	switch {
	case g == nil:
		return nil, fmt.Errorf("projection %s: %w", pr.p.Name, ErrClosed)
	case cp >= seq && !stale:
		return nil, nil
	case halt != nil && (halt.Seq <= seq || stale):
		return nil, &HaltedError{Projection: pr.p.Name, Halt: *halt}
	}
	return wake, nil
}

// Retry resumes a halted projection from its checkpoint: the failing
// event is tried again. It does nothing when the projection is not
// halted. Errors: ErrNotFound.
func (r *Runner) Retry(name string) error {
	pr, err := r.lookup(name)
	if err != nil {
		return err
	}
	pr.mu.Lock()
	var resumed []*gen
	for _, g := range []*gen{pr.cur, pr.next} {
		if g != nil && g.halt != nil {
			g.halt = nil
			resumed = append(resumed, g)
		}
	}
	pr.mu.Unlock()
	for _, g := range resumed {
		r.Logger.Info("projection resumed", "projection", name, "file", g.path)
		select {
		case g.resume <- struct{}{}:
		default:
		}
	}
	pr.broadcast()
	return nil
}

// Status reports on one projection; State is StateUnknown for a name
// that is not registered.
func (r *Runner) Status(name string) Status {
	pr, err := r.lookup(name)
	if err != nil {
		return Status{Name: name, State: StateUnknown}
	}
	return pr.status(r.tailSeq())
}

// Statuses reports on every projection, by name.
func (r *Runner) Statuses() []Status {
	r.mu.Lock()
	names := slices.Clone(r.names)
	r.mu.Unlock()
	tail := r.tailSeq()
	out := make([]Status, 0, len(names))
	for _, n := range names {
		pr, _ := r.lookup(n)
		out = append(out, pr.status(tail))
	}
	return out
}

func (pr *proj) status(tail uint64) Status {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	s := Status{Name: pr.p.Name, Version: pr.p.Version, Critical: pr.p.Critical, Tail: tail, State: StateClosed}
	g := pr.cur
	if g == nil {
		return s
	}
	s.ServingVersion, s.File, s.Seq, s.Error = g.version, g.path, g.cp.Seq, g.lastErr
	if tail > s.Seq {
		s.Lag = tail - s.Seq
	}
	if h := g.halt; h != nil || (pr.next != nil && pr.next.halt != nil) {
		if h == nil {
			h = pr.next.halt // the rebuild is stuck
		}
		hc := *h
		s.Halted = &hc
	}
	switch {
	case pr.next != nil:
		s.Rebuild = pr.next.progress(tail)
		if s.Error == "" {
			s.Error = pr.next.lastErr
		}
	case g.building:
		s.Rebuild = g.progress(tail)
	}
	switch {
	case s.Halted != nil:
		s.State = StateHalted
	case pr.next != nil || (g.building && g.reason != reasonNew):
		s.State = StateRebuilding
	case !g.live || g.behind:
		s.State = StateCatchingUp
	default:
		s.State = StateRunning
	}
	return s
}

// progress describes a generation being built. pr.mu is held.
func (g *gen) progress(tail uint64) *Progress {
	p := &Progress{Reason: g.reason, File: g.path, Started: g.started, Done: g.cp.Seq, Total: max(tail, g.cp.Seq)}
	if secs := time.Since(g.started).Seconds(); secs > 0 && g.cp.Seq > g.startSeq {
		p.Rate = float64(g.cp.Seq-g.startSeq) / secs
		p.ETA = time.Duration(float64(p.Total-p.Done) / p.Rate * float64(time.Second))
	}
	if g.halt != nil {
		h := *g.halt
		p.Halted = &h
	}
	return p
}
