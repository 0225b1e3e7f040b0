package eventlog_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
)

// Environment that turns TestCrashChild from a skip into the writer
// process that TestCrashDuringConcurrentAppends kills.
const (
	envCrashDir   = "FAZT_CRASH_CHILD" // the log's directory
	envCrashRound = "FAZT_CRASH_ROUND" // makes writer ids unique per process
	envCrashSeed  = "FAZT_CRASH_SEED"

	crashWriters = 16
	crashShared  = 4
	crashMaxLife = 60 * time.Second // the child stops by itself if nobody kills it
)

// crashData is the data of every event the child writes: who wrote it,
// the writer's running counter, and the append it belongs to.
type crashData struct {
	W string `json:"w"` // writer id, "r<round>w<goroutine>"
	C int    `json:"c"` // per-writer counter, from 1, one per event
	A string `json:"a"` // append id, shared by the events of one Append
	N int    `json:"n"` // events in that Append
	I int    `json:"i"` // index of the event in that Append
}

// crashAck is one acknowledged event, as the child reports it.
type crashAck struct {
	ID      string `json:"id"`
	Stream  string `json:"stream"`
	Seq     uint64 `json:"seq"`
	Version uint64 `json:"version"`
	W       string `json:"w"`
	C       int    `json:"c"`
	A       string `json:"a"`
}

func ownStream(g int) string    { return fmt.Sprintf("crash.w%d", g) }
func sharedStream(k int) string { return fmt.Sprintf("crash.shared%d", k) }

// ackOut writes whole lines to stdout, one write per line, so the parent
// only ever sees lines for appends that were acknowledged.
type ackOut struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (o *ackOut) line(prefix string, v any) {
	b, _ := json.Marshal(v)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.w.WriteString(prefix)
	o.w.Write(b)
	o.w.WriteByte('\n')
	o.w.Flush()
}

// fail reports an error the parent turns into a test failure, then exits:
// a writer that cannot go on must not look like a crash.
func (o *ackOut) fail(format string, args ...any) {
	o.line("err ", fmt.Sprintf(format, args...))
	os.Exit(2)
}

// TestCrashChild is the process killed by TestCrashDuringConcurrentAppends;
// on its own it skips.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(envCrashDir)
	if dir == "" {
		t.Skip("helper process for TestCrashDuringConcurrentAppends")
	}
	round, _ := strconv.Atoi(os.Getenv(envCrashRound))
	seed, _ := strconv.ParseUint(os.Getenv(envCrashSeed), 10, 64)
	// Orphaned (parent gone) children must not run forever; a stdout write
	// to a closed pipe also ends them.
	time.AfterFunc(crashMaxLife+10*time.Second, func() { os.Exit(3) })
	ctx, cancel := context.WithTimeout(context.Background(), crashMaxLife)
	defer cancel()

	out := &ackOut{w: bufio.NewWriter(os.Stdout)}
	l := eventlog.New(dir)
	if err := l.Open(ctx); err != nil {
		out.fail("open: %v", err)
	}
	var wg sync.WaitGroup
	for g := range crashWriters {
		wg.Go(func() {
			crashWriter(ctx, l, out, round, g, rand.New(rand.NewPCG(seed, uint64(round*crashWriters+g))))
		})
	}
	wg.Wait()
	l.Close(context.Background())
}

// crashWriter appends as fast as it can until ctx ends: single events to
// its own stream or a shared one, and 2-3 event appends across its own
// stream and a shared one.
func crashWriter(ctx context.Context, l *eventlog.Log, out *ackOut, round, g int, rng *rand.Rand) {
	own := ownStream(g)
	w := fmt.Sprintf("r%dw%d", round, g)

	// Learn the own stream's version (it survives from earlier rounds) from
	// an expectation that cannot hold: it writes nothing and reports it.
	_, err := l.Append(ctx, []eventlog.Event{{Stream: own, Type: "crash.probe"}}, eventlog.ExpectVersion(own, 1<<40))
	var ce *eventlog.ConflictError
	if !errors.As(err, &ce) {
		out.fail("writer %s: probe of %s: want a conflict, got %v", w, own, err)
	}
	ver := ce.Actual

	counter := 0
	for k := 1; ctx.Err() == nil; k++ {
		shared := sharedStream(rng.IntN(crashShared))
		var streams []string
		switch x := rng.IntN(10); {
		case x < 4:
			streams = []string{own}
		case x < 6:
			streams = []string{shared}
		case x < 8:
			streams = []string{own, shared}
		case x < 9:
			streams = []string{own, shared, own}
		default:
			streams = []string{shared, own, shared}
		}
		typ := "crash.single"
		if len(streams) > 1 {
			typ = "crash.multi"
		}
		a := fmt.Sprintf("%s-%d", w, k)
		evs := make([]eventlog.Event, len(streams))
		hasOwn := false
		for i, s := range streams {
			counter++
			data, _ := json.Marshal(crashData{W: w, C: counter, A: a, N: len(streams), I: i})
			evs[i] = eventlog.Event{Stream: s, Type: typ, Data: data}
			if rng.IntN(3) == 0 {
				evs[i].ID = l.NewID() // client IDs take Append's dedupe path
			}
			hasOwn = hasOwn || s == own
		}
		var expect []eventlog.Expectation
		if hasOwn && rng.IntN(4) != 0 {
			expect = append(expect, eventlog.ExpectVersion(own, ver))
		}
		res, err := l.Append(ctx, evs, expect...)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			out.fail("writer %s: append %s to %v (expect %+v): %v", w, a, streams, expect, err)
		}
		if len(res.Events) != len(evs) {
			out.fail("writer %s: append %s: %d positions for %d events", w, a, len(res.Events), len(evs))
		}
		for i, p := range res.Events {
			if p.Stream == own {
				ver = p.Version
			}
			var d crashData
			json.Unmarshal(evs[i].Data, &d)
			out.line("ack ", crashAck{ID: p.ID, Stream: p.Stream, Seq: p.Seq, Version: p.Version, W: w, C: d.C, A: a})
		}
	}
}
