package projections_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
)

// TestCrashExactlyOnce kills a process folding non-idempotent counters
// at random moments while this one appends, over and over on the same
// directory, and checks after every kill that each file counts exactly
// the matching events up to its own checkpoint: nothing twice, nothing
// missed. At the end the files equal a clean build.
func TestCrashExactlyOnce(t *testing.T) {
	if os.Getenv(envChildURL) != "" {
		t.Skip("inside the child")
	}
	rounds := 15
	if testing.Short() {
		rounds = 5
	}
	l := openLog(t, func(l *eventlog.Log) { l.Listen, l.ListenWritable = "127.0.0.1:0", true })
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() { crashAppender(ctx, t, l, rand.New(rand.NewPCG(seed, 1))) })

	idx := &logIndex{l: l}
	for round := 1; round <= rounds; round++ {
		batch := 1 + rng.IntN(300)
		early := rng.IntN(5) == 0 // kill while it starts, without waiting for it
		rebuild := rng.IntN(3) == 0
		delay := time.Duration(rng.IntN(400)) * time.Millisecond
		if early {
			delay = time.Duration(150+rng.IntN(250)) * time.Millisecond
		}
		runChildAndKill(t, l.ClientURL(), dir, round, batch, rebuild, delay, early)
		var report []string
		for _, p := range crashProjections() {
			report = append(report, p.Name+": "+verifyCrashFiles(t, idx, dir, p, round))
		}
		tail, _ := l.LastSeq(ctx)
		t.Logf("round %2d: batch %3d, rebuild %-5v killed after %v (early %v); log at %d; %s", round, batch, rebuild, delay, early, tail, strings.Join(report, "; "))
	}
	cancel()
	wg.Wait()

	// The survivors catch up here and equal a clean build.
	last, err := l.LastSeq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r := openRunner(t, l, runnerOpts{dir: dir}, crashProjections()...)
	for _, p := range crashProjections() {
		waitFor(t, r, p.Name, last)
		want := idx.expect(t, p.Filter, last)
		if got := counts(t, r, p.Name); !mapsEqual(got, want) {
			t.Fatalf("%s: counts %v, want %v", p.Name, got, want)
		}
		out := filepath.Join(t.TempDir(), p.Name+".db")
		if err := r.BuildAsOf(context.Background(), p.Name, last, out); err != nil {
			t.Fatal(err)
		}
		if hashOf(t, r, p.Name, countersTable) != tableHash(t, openFile(t, out), countersTable) {
			t.Fatalf("%s differs from a clean build", p.Name)
		}
	}
}

// crashAppender appends until ctx ends: hits, noise of the same category
// and events of another one, in appends of 1 to 40 events.
func crashAppender(ctx context.Context, tb testing.TB, l *eventlog.Log, rng *rand.Rand) {
	for ctx.Err() == nil {
		evs := make([]eventlog.Event, 1+rng.IntN(40))
		for i := range evs {
			switch x := rng.IntN(10); {
			case x < 6:
				evs[i] = ev(fmt.Sprintf("crash.%d", rng.IntN(9)), "crash.hit", map[string]string{"k": fmt.Sprintf("k%d", rng.IntN(5))})
			case x < 8:
				evs[i] = ev(fmt.Sprintf("crash.%d", rng.IntN(9)), "crash.noise", nil)
			default:
				evs[i] = ev("other.1", "other.thing", map[string]string{"k": "k0"})
			}
		}
		if _, err := l.Append(ctx, evs); err != nil {
			if ctx.Err() == nil {
				tb.Errorf("append: %v", err)
			}
			return
		}
		time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
	}
}

// runChildAndKill starts the child on dir, lets it fold for delay (after
// it is ready, unless early) and kills it.
func runChildAndKill(tb testing.TB, url, dir string, round, batch int, rebuild bool, delay time.Duration, early bool) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestProjectionCrashChild$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), envChildURL+"="+url, envChildDir+"="+dir, envChildBatch+"="+strconv.Itoa(batch),
		envChildRebuild+"="+strconv.FormatBool(rebuild))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("round %d: start child: %v", round, err)
	}
	ready := make(chan struct{})
	done := make(chan struct{})
	var childErr []string
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			switch line := sc.Text(); {
			case line == "ready":
				close(ready)
			case strings.HasPrefix(line, "err "):
				childErr = append(childErr, line[4:])
			}
		}
	}()
	if early {
		time.Sleep(delay)
	} else {
		select {
		case <-ready:
			time.Sleep(delay)
		case <-done:
		case <-time.After(30 * time.Second):
		}
	}
	cmd.Process.Kill()
	<-done
	cmd.Wait()
	out := stderr.String()
	switch {
	case len(childErr) > 0:
		tb.Fatalf("round %d: child failed: %s\nstderr:\n%s", round, strings.Join(childErr, "\n"), out)
	case cmd.ProcessState == nil || cmd.ProcessState.Exited():
		tb.Fatalf("round %d: child exited by itself\nstderr:\n%s", round, out)
	case strings.Contains(out, "DATA RACE"):
		tb.Fatalf("round %d: race in the child:\n%s", round, out)
	case strings.Contains(out, "level=ERROR"), strings.Contains(out, "does not match the log"):
		tb.Fatalf("round %d: the child logged a problem:\n%s", round, out)
	}
}

// verifyCrashFiles checks every file p's pointer names after a kill.
func verifyCrashFiles(tb testing.TB, idx *logIndex, dir string, p projections.Projection, round int) string {
	tb.Helper()
	if _, err := os.Stat(filepath.Join(dir, p.Name, "current")); err != nil {
		return "no file yet" // killed before the projection had one
	}
	ptr := pointerOf(tb, dir, p.Name)
	var out []string
	for _, role := range []string{"current", "next", "previous"} {
		if ptr[role] != "" {
			cp, n := verifyCrashFile(tb, idx, filepath.Join(dir, p.Name, ptr[role]), p, round)
			out = append(out, fmt.Sprintf("%s %s at seq %d (%d counted)", role, ptr[role], cp, n))
		}
	}
	return strings.Join(out, ", ")
}

// verifyCrashFile reads a file of p, in one read transaction, and checks
// its counters against the log up to its checkpoint.
func verifyCrashFile(tb testing.TB, idx *logIndex, path string, p projections.Projection, round int) (uint64, int) {
	tb.Helper()
	db := openFile(tb, path)
	defer db.Close()
	tx, err := db.Reader.Begin()
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	var cp uint64
	if err := tx.QueryRow(`SELECT seq FROM fazt_checkpoint`).Scan(&cp); err != nil {
		tb.Fatalf("round %d: %s: checkpoint: %v", round, p.Name, err)
	}
	got := map[string]int{}
	rows, err := tx.Query(`SELECT key, n FROM counters`)
	if err != nil {
		tb.Fatal(err)
	}
	for rows.Next() {
		var k string
		var n int
		rows.Scan(&k, &n)
		got[k] = n
	}
	rows.Close()
	want := idx.expect(tb, p.Filter, cp)
	if !mapsEqual(got, want) {
		tb.Fatalf("round %d: %s at checkpoint %d counts %v, but the log up to there holds %v", round, path, cp, got, want)
	}
	return cp, total(got)
}

// logIndex caches the log as read so far.
type logIndex struct {
	l      *eventlog.Log
	events []eventlog.Event
}

// expect is the counter fold over the events up to seq passing f.
func (x *logIndex) expect(tb testing.TB, f eventlog.Filter, seq uint64) map[string]int {
	tb.Helper()
	for uint64(len(x.events)) < seq {
		p, err := x.l.Read(context.Background(), uint64(len(x.events)), 1000, eventlog.Filter{})
		if err != nil {
			tb.Fatal(err)
		}
		for _, e := range p.Events {
			if e.Seq != uint64(len(x.events))+1 {
				tb.Fatalf("log gap at %d", e.Seq)
			}
			x.events = append(x.events, e)
		}
	}
	out := map[string]int{}
	for _, e := range x.events[:seq] {
		if f.Match(&e) {
			out[countKey(e)]++
		}
	}
	return out
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
