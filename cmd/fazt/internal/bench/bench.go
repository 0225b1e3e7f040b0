package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
)

// Config says what to measure and how much.
type Config struct {
	// Scenarios to run, 1 to 7; empty runs them all.
	Scenarios []int
	// Duration of each timed round (scenarios 1, 2, 5, 7; scenario 4 paces
	// each rate for four rounds' worth).
	Duration time.Duration
	// Rounds per case; raw and kernel rounds alternate and the report
	// gives medians.
	Rounds int
	// Sizes are the payload sizes of scenario 1, in bytes; scenario 2
	// uses the first.
	Sizes []int
	// Callers are the concurrent appenders of scenario 2.
	Callers []int
	// Events is the size of the log at start-up (scenario 6).
	Events int
	// Settle makes scenario 6 wait, before it starts the kernel, until
	// the events are older than the log's dedupe window (two minutes),
	// which JetStream re-reads when the stream starts (kernel and raw
	// alike): the start of a server whose last burst of appends is long
	// past. Without it every event is in the window, the worst case.
	Settle bool
	// RebuildEvents is the size of the log folded by scenario 3 (and,
	// up to 20,000, read by scenario 5); scenario 3's analytics row
	// folds that many page views.
	RebuildEvents int
	// Dir is where the run's temporary directory is made (the disk
	// measured); empty means the system's temporary directory.
	Dir string
	// Keep leaves the temporary directory in place.
	Keep bool
	// Child returns the command that runs RunChild in a new process
	// with args: this program re-executed (scenario 6).
	Child func(ctx context.Context, args []string) *exec.Cmd
	// Progress receives a line per step; Overwrite rewrites one line
	// with \r instead (for a terminal).
	Progress  io.Writer
	Overwrite bool
}

// AllScenarios are the scenario numbers, in the order they run.
var AllScenarios = []int{1, 2, 3, 4, 5, 6, 7}

// Titles of the scenarios.
var Titles = map[int]string{
	1: "append, relaxed",
	2: "append, strict",
	3: "projection catch-up and rebuild",
	4: "append to visible in read model",
	5: "read-only queries",
	6: "start-up",
	7: "static serving",
}

// Check reports a configuration that cannot run (Child aside).
func (c Config) Check() error {
	for _, s := range c.Scenarios {
		if Titles[s] == "" {
			return fmt.Errorf("scenario %d: want 1 to %d", s, len(AllScenarios))
		}
	}
	switch {
	case c.Duration < time.Millisecond:
		return fmt.Errorf("duration %v: want at least 1ms", c.Duration)
	case c.Rounds < 1:
		return fmt.Errorf("rounds %d: want at least 1", c.Rounds)
	case c.Events < 1:
		return fmt.Errorf("events %d: want at least 1", c.Events)
	case c.RebuildEvents < 1:
		return fmt.Errorf("rebuild events %d: want at least 1", c.RebuildEvents)
	case c.wants(1) && len(c.Sizes) == 0, c.wants(2) && len(c.Sizes) == 0:
		return errors.New("no payload sizes")
	case c.wants(2) && len(c.Callers) == 0:
		return errors.New("no caller counts")
	}
	for _, s := range c.Sizes {
		if s < 2 || s > eventlog.MaxEventSize {
			return fmt.Errorf("payload size %d: want 2 to %d bytes", s, eventlog.MaxEventSize)
		}
	}
	for _, n := range c.Callers {
		if n < 1 || n > 10000 {
			return fmt.Errorf("callers %d: want 1 to 10000", n)
		}
	}
	return nil
}

func (c Config) wants(s int) bool { return len(c.Scenarios) == 0 || slices.Contains(c.Scenarios, s) }

// Row is one measured case.
type Row struct {
	Scenario int    `json:"scenario"`
	Title    string `json:"title"`
	Case     string `json:"case"`
	// Unit of Kernel and Raw: "ev/s", "q/s" (rates) or "s" (a time).
	Unit   string  `json:"unit"`
	Kernel float64 `json:"kernel"`
	Raw    float64 `json:"raw,omitempty"`
	// Baseline names the raw ingredient Raw measured.
	Baseline string `json:"baseline,omitempty"`
	// Ratio is the kernel's speed over the raw ingredient's (a rate
	// over a rate, or the raw time over the kernel's): the median of the
	// rounds' ratios. Zero when there is no raw baseline.
	Ratio float64 `json:"ratio,omitempty"`
	// Latency of the kernel's operations, in milliseconds; Latency
	// says what one operation is.
	P50     float64 `json:"p50_ms,omitempty"`
	P99     float64 `json:"p99_ms,omitempty"`
	RawP50  float64 `json:"raw_p50_ms,omitempty"`
	RawP99  float64 `json:"raw_p99_ms,omitempty"`
	Latency string  `json:"latency,omitempty"`
	// PeakRSS is the peak resident memory of the process that ran the
	// kernel side, in bytes (0: unknown).
	PeakRSS int64 `json:"peak_rss_bytes,omitempty"`
	// Target is DESIGN.md's target for this case, and Met whether this
	// run reached it.
	Target string `json:"target,omitempty"`
	Met    *bool  `json:"met,omitempty"`
	// Kernels and Raws are each round's figures, in round order.
	Kernels []float64 `json:"kernel_rounds,omitempty"`
	Raws    []float64 `json:"raw_rounds,omitempty"`
	Note    string    `json:"note,omitempty"`
}

// Report is a whole run.
type Report struct {
	Date       string  `json:"date"`
	WallSecs   float64 `json:"wall_seconds"`
	Go         string  `json:"go"`
	Platform   string  `json:"platform"`
	CPUs       int     `json:"cpus"`
	GOMAXPROCS int     `json:"gomaxprocs"`
	// Dir is where the run's files were: removed at the end unless Kept.
	Dir  string `json:"dir"`
	Kept bool   `json:"kept,omitempty"`
	RSS  string `json:"peak_rss_source"`
	// Load is the system's load average at the start and at the end
	// (Linux): above the CPU count, other work shared the machine.
	Load       string `json:"load_average,omitempty"`
	Conditions string `json:"conditions"`
	Config     struct {
		Scenarios     []int   `json:"scenarios"`
		DurationMs    float64 `json:"duration_ms"`
		Rounds        int     `json:"rounds"`
		Sizes         []int   `json:"sizes"`
		Callers       []int   `json:"callers"`
		Events        int     `json:"events"`
		Settle        bool    `json:"settle,omitempty"`
		RebuildEvents int     `json:"rebuild_events"`
	} `json:"config"`
	Results []Row `json:"results"`
}

// Conditions states the sync modes every run uses.
const Conditions = "kernel strict: group commit, one fsync per group; kernel relaxed and raw async: fsync every 1s; " +
	"raw strict: JetStream sync_always (fsync per message); SQLite: WAL, synchronous=NORMAL; one process, embedded NATS"

// Run measures the scenarios cfg asks for and returns the report. Every
// file it makes is removed before it returns, unless cfg.Keep. When a
// scenario fails, the report holds the scenarios before it.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if cfg.wants(6) && cfg.Child == nil {
		return nil, errors.New("scenario 6 needs Config.Child")
	}
	if len(cfg.Scenarios) == 0 {
		cfg.Scenarios = AllScenarios
	}
	start := time.Now()
	dir, err := os.MkdirTemp(cfg.Dir, "fazt-bench-")
	if err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	if cfg.Keep {
		defer fmt.Fprintf(progressOut(cfg), "kept the run's files in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	b := &bench{cfg: cfg, dir: dir, prog: newProgress(cfg, start)}
	defer b.prog.clear()
	rep := &Report{
		Date: start.UTC().Format(time.RFC3339), Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH,
		CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Dir: dir, RSS: rssSource(), Conditions: Conditions,
		Load: loadAverage(), Kept: cfg.Keep,
	}
	rep.Config.Scenarios, rep.Config.DurationMs, rep.Config.Rounds = cfg.Scenarios, ms(cfg.Duration), cfg.Rounds
	rep.Config.Sizes, rep.Config.Callers, rep.Config.Events, rep.Config.RebuildEvents = cfg.Sizes, cfg.Callers, cfg.Events, cfg.RebuildEvents
	rep.Config.Settle = cfg.Settle
	defer func() {
		rep.WallSecs = time.Since(start).Seconds()
		if l := loadAverage(); rep.Load != "" && l != "" {
			rep.Load += " at the start, " + l + " at the end"
		}
	}()
	// A failed scenario does not cost the others: they still run, and
	// the error is returned at the end with the rows measured.
	var errs []error
	for _, s := range AllScenarios {
		if !slices.Contains(cfg.Scenarios, s) {
			continue
		}
		rows, err := b.scenario(ctx, s)
		rep.Results = append(rep.Results, rows...)
		if err != nil {
			errs = append(errs, fmt.Errorf("scenario %d (%s): %w", s, Titles[s], err))
			b.prog.say("scenario %d failed: %v", s, err)
			if ctx.Err() != nil {
				break
			}
		}
	}
	return rep, errors.Join(errs...)
}

type bench struct {
	cfg  Config
	dir  string
	prog *progress
}

// scenario runs one scenario in a directory of its own, removed after,
// and records the peak memory it took.
func (b *bench) scenario(ctx context.Context, s int) ([]Row, error) {
	dir := filepath.Join(b.dir, fmt.Sprintf("s%d", s))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if !b.cfg.Keep {
		defer os.RemoveAll(dir)
	}
	b.prog.setScenario(fmt.Sprintf("[%d/%d %s]", s, len(AllScenarios), Titles[s]))
	debug.FreeOSMemory() // what earlier scenarios left does not count
	resetPeak()
	var rows []Row
	var err error
	switch s {
	case 1:
		rows, err = b.appendRelaxed(ctx, dir)
	case 2:
		rows, err = b.appendStrict(ctx, dir)
	case 3:
		rows, err = b.rebuild(ctx, dir)
	case 4:
		rows, err = b.visible(ctx, dir)
	case 5:
		rows, err = b.queries(ctx, dir)
	case 6:
		rows, err = b.startup(ctx, dir)
	case 7:
		rows, err = b.serving(ctx, dir)
	}
	peak := peakRSS()
	for i := range rows {
		rows[i].Scenario, rows[i].Title = s, Titles[s]
		if rows[i].PeakRSS == 0 {
			rows[i].PeakRSS = peak
		}
	}
	return rows, err
}

// alternate runs raw and kernel rounds in turn: drift on a shared
// machine is larger than the differences measured, and alternating
// exposes both sides to the same drift.
func (b *bench) alternate(label string, raw, kernel func() (sample, error)) (raws, kernels []sample, err error) {
	for r := 1; r <= b.cfg.Rounds; r++ {
		b.prog.say("%s: raw, round %d/%d", label, r, b.cfg.Rounds)
		rs, err := raw()
		if err != nil {
			return nil, nil, fmt.Errorf("%s: raw: %w", label, err)
		}
		b.prog.say("%s: kernel, round %d/%d", label, r, b.cfg.Rounds)
		ks, err := kernel()
		if err != nil {
			return nil, nil, fmt.Errorf("%s: kernel: %w", label, err)
		}
		raws, kernels = append(raws, rs), append(kernels, ks)
	}
	return raws, kernels, nil
}

// rateRow summarises alternated rounds of the same operation.
func rateRow(name, unit, baseline string, raws, kernels []sample) Row {
	row := Row{Case: name, Unit: unit, Baseline: baseline}
	var ratios []float64
	for i := range kernels {
		row.Kernels = append(row.Kernels, kernels[i].rate())
		row.Raws = append(row.Raws, raws[i].rate())
		if r := raws[i].rate(); r > 0 {
			ratios = append(ratios, kernels[i].rate()/r)
		}
	}
	row.Kernel, row.Raw, row.Ratio = median(row.Kernels), median(row.Raws), median(ratios)
	kl, rl := latencies(kernels), latencies(raws)
	row.P50, row.P99 = ms(percentile(kl, 50)), ms(percentile(kl, 99))
	row.RawP50, row.RawP99 = ms(percentile(rl, 50)), ms(percentile(rl, 99))
	return row
}

// atLeast sets the row's target as a minimum ratio.
func (r *Row) atLeast(min float64) {
	r.Target = fmt.Sprintf("≥ %gx", min)
	met := r.Ratio >= min
	r.Met = &met
}

// progress writes what the run is doing.
type progress struct {
	mu        sync.Mutex
	w         io.Writer
	overwrite bool
	start     time.Time
	scenario  string
	width     int
}

func progressOut(cfg Config) io.Writer {
	if cfg.Progress == nil {
		return io.Discard
	}
	return cfg.Progress
}

func newProgress(cfg Config, start time.Time) *progress {
	return &progress{w: progressOut(cfg), overwrite: cfg.Overwrite, start: start}
}

func (p *progress) setScenario(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.scenario = s
}

func (p *progress) say(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := fmt.Sprintf("%6.1fs %s ", time.Since(p.start).Seconds(), p.scenario) + fmt.Sprintf(format, args...)
	if !p.overwrite {
		fmt.Fprintln(p.w, line)
		return
	}
	pad := max(p.width-len(line), 0)
	p.width = len(line)
	fmt.Fprintf(p.w, "\r%s%*s", line, pad, "")
}

// clear removes the overwritten line.
func (p *progress) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.overwrite && p.width > 0 {
		fmt.Fprintf(p.w, "\r%*s\r", p.width, "")
		p.width = 0
	}
}
