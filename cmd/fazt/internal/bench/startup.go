package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fazt-sh/fazt/eventlog"
)

// ChildConfig is what the start-up child is told (see RunChild).
type ChildConfig struct {
	// Dir is the data directory: the log's files and, under
	// Dir/projections, the runner's.
	Dir string
	// Raw starts a bare JetStream server on the same store instead of
	// the kernel: the raw ingredient of start-up.
	Raw bool
}

// ready is the child's report once it is ready.
type ready struct {
	LogOpenMs    float64 `json:"log_open_ms,omitempty"`
	RunnerOpenMs float64 `json:"runner_open_ms,omitempty"`
	CatchUpMs    float64 `json:"catch_up_ms,omitempty"`
	Seq          uint64  `json:"seq"`
}

// Lines of the child protocol: the child prints "ready {json}" once its
// log and projections are open and caught up, then "window N" (the
// events younger than the log's dedupe window), and "appending" once the
// first append after the "append" command is acknowledged; "quit" on
// stdin, or its end, makes it close cleanly and exit.
const (
	lineReady     = "ready "
	lineWindow    = "window "
	lineAppending = "appending"
	cmdAppend     = "append"
	cmdQuit       = "quit"
)

// childAppenders append concurrently, strict, until the child is killed.
const childAppenders = 16

// RunChild is the process scenario 6 starts and kills: it opens the log
// in cfg.Dir and the runner with the bench projection (or, with Raw, a
// bare JetStream server on the same store) and reports when ready.
func RunChild(ctx context.Context, cfg ChildConfig, stdin io.Reader, stdout io.Writer) error {
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(stdout, format+"\n", args...)
	}
	if cfg.Raw {
		return rawChild(ctx, cfg.Dir, stdin, say)
	}
	start := time.Now()
	l, err := openLog(ctx, cfg.Dir, eventlog.Strict)
	if err != nil {
		return err
	}
	defer closeLog(l)
	var rd ready
	rd.LogOpenMs = ms(time.Since(start))
	t := time.Now()
	r, err := openRunner(ctx, filepath.Join(cfg.Dir, "projections"), l)
	if err != nil {
		return err
	}
	defer closeRunner(r)
	rd.RunnerOpenMs = ms(time.Since(t))
	t = time.Now()
	if rd.Seq, err = l.LastSeq(ctx); err != nil {
		return err
	}
	if err := waitProjected(ctx, r, rd.Seq, 10*time.Minute); err != nil {
		return err
	}
	rd.CatchUpMs = ms(time.Since(t))
	js, _ := json.Marshal(rd)
	say("%s%s", lineReady, js)
	// JetStream re-reads the events of the last DuplicateWindow when the
	// stream starts (its dedupe table), here and in the raw server alike;
	// say how many there were, outside the time measured.
	window := rd.Seq
	if at, err := r.SeqAt(ctx, start.Add(-l.DuplicateWindow)); err == nil {
		window -= min(at, rd.Seq)
	}
	say("%s%d", lineWindow, window)

	actx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop() // first: it ends the appenders
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		switch strings.TrimSpace(sc.Text()) {
		case cmdAppend:
			var once sync.Once
			for c := range childAppenders {
				wg.Go(func() {
					for i := c; actx.Err() == nil; i += childAppenders {
						if _, err := l.Append(actx, []eventlog.Event{hit(i)}); err != nil {
							return
						}
						once.Do(func() { say(lineAppending) })
					}
				})
			}
		case cmdQuit:
			return nil
		}
	}
	return nil
}

// rawChild starts a bare server on the log's store, with the options
// the log gives its embedded server, and reports when the event stream
// answers.
func rawChild(ctx context.Context, dir string, stdin io.Reader, say func(string, ...any)) error {
	srv, err := server.NewServer(&server.Options{ServerName: "fazt", JetStream: true, StoreDir: dir, DontListen: true, NoLog: true, NoSigs: true, MaxPayload: 4 << 20})
	if err != nil {
		return err
	}
	srv.Start()
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	if !srv.ReadyForConnections(10 * time.Minute) {
		return errors.New("raw nats did not become ready")
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	s, err := js.Stream(ctx, eventlog.DefaultStreamName)
	if err != nil {
		return fmt.Errorf("event stream: %w", err)
	}
	b, _ := json.Marshal(ready{Seq: s.CachedInfo().State.LastSeq})
	say("%s%s", lineReady, b)
	io.Copy(io.Discard, stdin) // until quit or the end of stdin
	return nil
}

// child is a running start-up child.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *lockedBuffer
	ready  ready
	window uint64 // events in the dedupe window at start
	took   time.Duration
	peak   int64
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(l.b.String())
}

// startChild runs the child on dir and waits until it is ready; took
// runs from just before exec to the ready line.
func (b *bench) startChild(ctx context.Context, dir string, raw bool) (*child, error) {
	args := []string{"--dir", dir}
	if raw {
		args = append(args, "--raw")
	}
	c := &child{cmd: b.cfg.Child(ctx, args), lines: make(chan string, 16), stderr: &lockedBuffer{}}
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c.cmd.Stderr = c.stderr
	start := time.Now()
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the child: %w", err)
	}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	line, err := c.expect(ctx, lineReady, 10*time.Minute)
	if err != nil {
		c.kill()
		return nil, err
	}
	c.took = time.Since(start)
	c.peak = childPeakRSS(c.cmd.Process.Pid)
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, lineReady)), &c.ready); err != nil {
		c.kill()
		return nil, fmt.Errorf("child: %q: %w", line, err)
	}
	if !raw {
		line, err := c.expect(ctx, lineWindow, time.Minute)
		if err == nil {
			c.window, err = strconv.ParseUint(strings.TrimPrefix(line, lineWindow), 10, 64)
		}
		if err != nil {
			c.kill()
			return nil, err
		}
	}
	return c, nil
}

// expect waits for a line starting with prefix.
func (c *child) expect(ctx context.Context, prefix string, limit time.Duration) (string, error) {
	timeout := time.After(limit)
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				c.cmd.Wait()
				return "", fmt.Errorf("the child ended (%v) before %q: %s", c.cmd.ProcessState, strings.TrimSpace(prefix), c.stderr)
			}
			if strings.HasPrefix(line, prefix) {
				return line, nil
			}
		case <-timeout:
			return "", fmt.Errorf("no %q from the child within %v: %s", strings.TrimSpace(prefix), limit, c.stderr)
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// quit asks the child to close cleanly and waits for it.
func (c *child) quit() error {
	fmt.Fprintln(c.stdin, cmdQuit)
	c.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("child: %w: %s", err, c.stderr)
		}
		c.fallbackPeak()
		return nil
	case <-time.After(time.Minute):
		c.cmd.Process.Kill()
		<-done
		return fmt.Errorf("the child did not close within a minute: %s", c.stderr)
	}
}

// kill sends SIGKILL and waits for the child to be gone.
func (c *child) kill() {
	c.cmd.Process.Kill()
	c.stdin.Close()
	c.cmd.Wait()
	c.fallbackPeak()
}

// fallbackPeak takes the peak memory from the exit status when it could
// not be read while the child ran.
func (c *child) fallbackPeak() {
	if c.peak == 0 && c.cmd.ProcessState != nil {
		c.peak = exitedPeakRSS(c.cmd.ProcessState)
	}
}

// startup is scenario 6: the time from exec to a kernel whose log is open
// and whose projection has caught up, on a log of cfg.Events events
// already projected; then again after SIGKILL in the middle of appends.
// The raw baseline is a bare JetStream server recovering the same store
// in the same state.
func (b *bench) startup(ctx context.Context, dir string) ([]Row, error) {
	n := b.cfg.Events
	data := filepath.Join(dir, "data")
	filled, err := b.prepareStartup(ctx, data, n)
	if err != nil {
		return nil, err
	}
	if b.cfg.Settle {
		if err := b.settle(ctx, filled); err != nil {
			return nil, err
		}
	}

	b.prog.say("raw JetStream start on the same store")
	rawClean, err := b.startChild(ctx, data, true)
	if err != nil {
		return nil, fmt.Errorf("raw start: %w", err)
	}
	if err := rawClean.quit(); err != nil {
		return nil, err
	}

	b.prog.say("kernel start with %d events projected", n)
	clean, err := b.startChild(ctx, data, false)
	if err != nil {
		return nil, fmt.Errorf("kernel start: %w", err)
	}
	b.prog.say("appending in the child, then SIGKILL")
	if err := killMidAppend(ctx, clean); err != nil {
		return nil, err
	}

	b.prog.say("kernel restart after SIGKILL")
	crashed, err := b.startChild(ctx, data, false)
	if err != nil {
		return nil, fmt.Errorf("kernel restart: %w", err)
	}
	// The raw server recovers a store killed the same way.
	if err := killMidAppend(ctx, crashed); err != nil {
		return nil, err
	}
	b.prog.say("raw JetStream start after SIGKILL")
	rawCrashed, err := b.startChild(ctx, data, true)
	if err != nil {
		return nil, fmt.Errorf("raw restart: %w", err)
	}
	if err := rawCrashed.quit(); err != nil {
		return nil, err
	}

	row := func(name string, k, r *child, note string) Row {
		ks, rs := k.took.Seconds(), r.took.Seconds()
		return Row{Case: name, Unit: "s", Kernel: ks, Raw: rs, Ratio: rs / ks, Kernels: []float64{ks}, Raws: []float64{rs},
			Baseline: "bare JetStream start on the same store", PeakRSS: k.peak,
			Note: fmt.Sprintf("%slog open %.2fs (%d events in the 2-minute dedupe window, which JetStream re-reads at start), runner open %.2fs, catch-up %.2fs; one run each",
				note, k.ready.LogOpenMs/1000, k.window, k.ready.RunnerOpenMs/1000, k.ready.CatchUpMs/1000)}
	}
	return []Row{
		row(fmt.Sprintf("start, %s events projected", si(float64(n))), clean, rawClean, ""),
		row("restart after SIGKILL mid-append", crashed, rawCrashed,
			fmt.Sprintf("%d events appended by the killed process; ", crashed.ready.Seq-clean.ready.Seq)),
	}, nil
}

// prepareStartup fills a log in dir with n events, projects them and
// closes both cleanly. It returns when the last event was stored.
func (b *bench) prepareStartup(ctx context.Context, dir string, n int) (time.Time, error) {
	l, err := openLog(ctx, dir, eventlog.Relaxed)
	if err != nil {
		return time.Time{}, err
	}
	defer closeLog(l)
	r, last, err := b.fillAndProject(ctx, l, filepath.Join(dir, "projections"), n)
	if err != nil {
		return time.Time{}, err
	}
	closeRunner(r)
	page, err := l.Read(ctx, last-1, 1, eventlog.Filter{})
	if err != nil || len(page.Events) == 0 {
		return time.Time{}, fmt.Errorf("read the last event: %w", err)
	}
	return page.Events[0].Time, nil
}

// settle waits until every event stored by filled has left the log's
// dedupe window, so that JetStream's next start re-reads none of them.
func (b *bench) settle(ctx context.Context, filled time.Time) error {
	until := filled.Add(eventlog.DefaultDuplicateWindow + time.Second)
	for d := time.Until(until); d > 0; d = time.Until(until) {
		b.prog.say("settling: %.0fs until the log's events are older than its dedupe window", d.Seconds())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(d, 5*time.Second)):
		}
	}
	return nil
}

// killMidAppend starts the child appending and SIGKILLs it shortly after
// its first append is acknowledged.
func killMidAppend(ctx context.Context, c *child) error {
	if _, err := fmt.Fprintln(c.stdin, cmdAppend); err != nil {
		c.kill()
		return err
	}
	if _, err := c.expect(ctx, lineAppending, time.Minute); err != nil {
		c.kill()
		return err
	}
	time.Sleep(200 * time.Millisecond)
	c.kill()
	return nil
}
