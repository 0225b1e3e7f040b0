package eventlog_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
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
)

// TestCrashDuringConcurrentAppends kills a process in the middle of
// concurrent appends, over and over on the same directory, and checks
// after each kill that the log kept every acknowledged event, has no
// gaps, keeps stream order, and never holds part of an append.
func TestCrashDuringConcurrentAppends(t *testing.T) {
	if os.Getenv(envCrashDir) != "" {
		t.Skip("inside the child")
	}
	rounds := 25
	if testing.Short() {
		rounds = 5
	}
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	var acks []crashAck // every acknowledgement of every round
	for round := 1; round <= rounds; round++ {
		got := runAndKill(t, dir, round, seed, time.Duration(50+rng.IntN(351))*time.Millisecond)
		acks = append(acks, got...)
		st := verifyCrashLog(t, dir, acks, round)
		t.Logf("round %2d: %4d events acknowledged, %2d more landed unacknowledged, %d staged batches at the kill; log: %d events in %d appends (%d multi-event)",
			round, len(got), st.unacked, st.staged, st.total, st.appends, st.multi)
	}
}

// runAndKill starts the child on dir, lets it append for delay after its
// first acknowledgements, kills it, and returns what it acknowledged.
func runAndKill(tb testing.TB, dir string, round int, seed uint64, delay time.Duration) []crashAck {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(),
		envCrashDir+"="+dir,
		envCrashRound+"="+strconv.Itoa(round),
		envCrashSeed+"="+strconv.FormatUint(seed, 10))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("round %d: start child: %v", round, err)
	}

	var (
		mu       sync.Mutex
		acks     []crashAck
		childErr []string
	)
	ready := make(chan struct{}) // enough acknowledgements to start the clock
	done := make(chan struct{})  // stdout closed: the child is gone
	go func() {
		defer close(done)
		r := bufio.NewReader(stdout)
		signalled := false
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				// A torn last line was never fully reported: ignore it.
				if err != io.EOF {
					mu.Lock()
					childErr = append(childErr, "reading stdout: "+err.Error())
					mu.Unlock()
				}
				return
			}
			var a crashAck
			mu.Lock()
			switch {
			case strings.HasPrefix(line, "ack "):
				if err := json.Unmarshal([]byte(line[4:]), &a); err != nil {
					childErr = append(childErr, fmt.Sprintf("bad ack line %q: %v", line, err))
				}
				acks = append(acks, a)
			case strings.HasPrefix(line, "err "):
				childErr = append(childErr, strings.TrimSpace(line[4:]))
			}
			n := len(acks)
			mu.Unlock()
			if !signalled && n >= crashWriters {
				signalled = true
				close(ready)
			}
		}
	}()

	select {
	case <-ready:
		time.Sleep(delay)
	case <-done:
	case <-time.After(30 * time.Second):
	}
	killErr := cmd.Process.Kill()
	<-done
	waitErr := cmd.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(childErr) > 0 {
		tb.Fatalf("round %d: child failed: %s\nstderr:\n%s", round, strings.Join(childErr, "\n"), stderr.String())
	}
	// Exited() is false only for a death by signal, i.e. our kill.
	if cmd.ProcessState == nil || cmd.ProcessState.Exited() {
		tb.Fatalf("round %d: child exited by itself (kill: %v, wait: %v) after %d acknowledgements\nstderr:\n%s", round, killErr, waitErr, len(acks), stderr.String())
	}
	// The race detector reports at once but fails the exit code only at
	// exit, which a killed child never reaches.
	if strings.Contains(stderr.String(), "DATA RACE") {
		tb.Fatalf("round %d: race in the child:\n%s", round, stderr.String())
	}
	if len(acks) < crashWriters {
		tb.Fatalf("round %d: child acknowledged only %d events in 30s\nstderr:\n%s", round, len(acks), stderr.String())
	}
	return acks
}

type crashStats struct {
	total, unacked, appends, multi, staged int
}

// verifyCrashLog opens the log on dir in this process, reads all of it
// and checks it against the acknowledgements of every round so far.
func verifyCrashLog(tb testing.TB, dir string, acks []crashAck, round int) crashStats {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Informational: JetStream stages atomic batches on disk and rolls a
	// half-applied one forward on restart; count those caught by the kill.
	staged := 0
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && filepath.Base(filepath.Dir(path)) == "batches" {
			staged++
		}
		return nil
	})
	l := eventlog.New(dir)
	if err := l.Open(ctx); err != nil {
		tb.Fatalf("round %d: reopen after kill: %v", round, err)
	}
	defer l.Close(context.Background())

	last, err := l.LastSeq(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var events []eventlog.Event
	for after := uint64(0); ; {
		p, err := l.Read(ctx, after, 1000, eventlog.Filter{})
		if err != nil {
			tb.Fatalf("round %d: read after seq %d: %v", round, after, err)
		}
		if len(p.Events) == 0 {
			break
		}
		for _, e := range p.Events {
			// 2. No gaps: seqs are exactly 1..LastSeq, each once.
			if want := uint64(len(events) + 1); e.Seq != want {
				tb.Fatalf("round %d: gap in the log: seq %d follows seq %d (stream %s)", round, e.Seq, want-1, e.Stream)
			}
			events = append(events, e)
		}
		after = p.LastSeq
	}
	if uint64(len(events)) != last {
		tb.Fatalf("round %d: read %d events, LastSeq is %d", round, len(events), last)
	}

	type group struct {
		n, seen  int
		firstSeq uint64
	}
	var (
		ids      = map[string]uint64{} // event ID -> seq
		versions = map[string]uint64{} // stream -> last version
		counters = map[string]int{}    // writer -> last counter
		groups   = map[string]*group{} // append id -> its events
		data     = make([]crashData, len(events))
	)
	for i, e := range events {
		// 4. No event ID twice.
		if prev, dup := ids[e.ID]; dup {
			tb.Fatalf("round %d: event ID %s at seq %d and again at seq %d (stream %s)", round, e.ID, prev, e.Seq, e.Stream)
		}
		ids[e.ID] = e.Seq
		// 3. Stream versions are 1..n in seq order.
		if want := versions[e.Stream] + 1; e.Version != want {
			tb.Fatalf("round %d: seq %d: stream %s jumps to version %d, want %d", round, e.Seq, e.Stream, e.Version, want)
		}
		versions[e.Stream] = e.Version
		d := &data[i]
		if err := json.Unmarshal(e.Data, d); err != nil || d.W == "" || d.A == "" {
			tb.Fatalf("round %d: seq %d on %s (type %s) is not a crash event: %s", round, e.Seq, e.Stream, e.Type, e.Data)
		}
		var r, g int
		if _, err := fmt.Sscanf(d.W, "r%dw%d", &r, &g); err != nil || (e.Stream != ownStream(g) && !strings.HasPrefix(e.Stream, "crash.shared")) {
			tb.Fatalf("round %d: seq %d: writer %s wrote to %s, which is neither its own nor a shared stream", round, e.Seq, d.W, e.Stream)
		}
		// A writer waits for each append before the next, so its counters
		// run 1, 2, 3... in log order (across its own and shared streams).
		if want := counters[d.W] + 1; d.C != want {
			tb.Fatalf("round %d: seq %d on %s: writer %s counter %d, want %d (an append of this writer is missing or reordered)", round, e.Seq, e.Stream, d.W, d.C, want)
		}
		counters[d.W] = d.C
		// 5. An append's events are contiguous and in order.
		gr := groups[d.A]
		if gr == nil {
			gr = &group{n: d.N, firstSeq: e.Seq}
			groups[d.A] = gr
		}
		if d.I != gr.seen || d.N != gr.n || e.Seq != gr.firstSeq+uint64(gr.seen) {
			tb.Fatalf("round %d: seq %d on %s holds event %d of %d of append %s; the append started at seq %d, so event %d belongs here: its events are split or reordered", round, e.Seq, e.Stream, d.I, d.N, d.A, gr.firstSeq, gr.seen)
		}
		gr.seen++
	}
	// 5. Atomicity: every append in the log is whole, acknowledged or not.
	st := crashStats{total: len(events), appends: len(groups), staged: staged}
	for a, gr := range groups {
		if gr.seen != gr.n {
			tb.Fatalf("round %d: append %s is torn: %d of its %d events are in the log, from seq %d", round, a, gr.seen, gr.n, gr.firstSeq)
		}
		if gr.n > 1 {
			st.multi++
		}
	}

	// 1. Every acknowledged event is there, once, where it was acknowledged.
	acked := map[string]int{}          // writer -> highest acknowledged counter
	ackedAppend := map[string]string{} // writer -> append of that counter
	seenAck := map[string]bool{}
	for _, a := range acks {
		if a.Seq == 0 || a.Seq > last {
			tb.Fatalf("round %d: acknowledged event %s (%s v%d, append %s) at seq %d is lost: the log ends at seq %d", round, a.ID, a.Stream, a.Version, a.A, a.Seq, last)
		}
		e, d := events[a.Seq-1], data[a.Seq-1]
		if e.ID != a.ID || e.Stream != a.Stream || e.Version != a.Version || d.A != a.A || d.C != a.C {
			tb.Fatalf("round %d: seq %d was acknowledged as %s on %s v%d (append %s #%d) but holds %s on %s v%d (append %s #%d)",
				round, a.Seq, a.ID, a.Stream, a.Version, a.A, a.C, e.ID, e.Stream, e.Version, d.A, d.C)
		}
		if seenAck[a.ID] {
			tb.Fatalf("round %d: event %s at seq %d was acknowledged twice", round, a.ID, a.Seq)
		}
		seenAck[a.ID] = true
		if a.C > acked[a.W] {
			acked[a.W], ackedAppend[a.W] = a.C, a.A
		}
	}
	// Unacknowledged appends may have landed, but each writer has at most
	// one in flight when killed: beyond its last acknowledged append there
	// is at most one more.
	beyond := map[string]map[string]bool{} // writer -> appends past its last ack
	thisRound := fmt.Sprintf("r%dw", round)
	for i, e := range events {
		d := data[i]
		if !seenAck[e.ID] && strings.HasPrefix(d.W, thisRound) {
			st.unacked++
		}
		if d.C > acked[d.W] && d.A != ackedAppend[d.W] {
			if beyond[d.W] == nil {
				beyond[d.W] = map[string]bool{}
			}
			beyond[d.W][d.A] = true
			if len(beyond[d.W]) > 1 {
				tb.Fatalf("round %d: seq %d on %s: writer %s has %d unacknowledged appends in the log (%v); it only ever has one in flight", round, e.Seq, e.Stream, d.W, len(beyond[d.W]), beyond[d.W])
			}
		}
	}
	return st
}
