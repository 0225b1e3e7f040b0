package eventlog_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
)

// smallDisk mounts a tmpfs of size bytes on a new temporary directory: a
// real file system that really fills up. It needs root; CI runs as root,
// so there a failure to mount fails the test instead of skipping it.
func smallDisk(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("mount a small tmpfs (CI runs as root): %v: %s", err, out)
		}
		t.Skipf("cannot mount a small tmpfs here (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fill writes a file of n bytes into dir.
func fill(t *testing.T, dir string, n int64) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for n > 0 {
		w := min(n, int64(len(buf)))
		if _, err := f.Write(buf[:w]); err != nil {
			t.Fatalf("fill: %v", err)
		}
		n -= w
	}
	return p
}

func free(t *testing.T, dir string) int64 {
	t.Helper()
	out, err := exec.Command("df", "--output=avail", "-B1", dir).Output()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	fmt.Sscan(strings.Fields(string(out))[1], &n)
	return n
}

// TestDiskReserveRefusesAndRecovers fills a real file system: appends are
// refused with ErrInsufficientStorage while the free space is below the
// reserve, every acknowledged append is in the log, JetStream stays on,
// and appends work again, without a restart, once space is freed.
func TestDiskReserveRefusesAndRecovers(t *testing.T) {
	dir := smallDisk(t, 48<<20)
	const reserve = 8 << 20
	l := eventlog.New(dir)
	l.DiskReserve = reserve
	ctx := context.Background()
	if err := l.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	// Leave 16 MiB: room for about 8 MiB of events above the reserve.
	filler := fill(t, dir, free(t, dir)-16<<20)

	data := []byte(`"` + strings.Repeat("x", 64<<10) + `"`)
	acked := 0
	var refused error
	for i := 0; i < 1000 && refused == nil; i++ {
		_, err := l.Append(ctx, []eventlog.Event{{Stream: "disk.a", Type: "disk.filled", Data: data}})
		switch {
		case err == nil:
			acked++
		case errors.Is(err, eventlog.ErrInsufficientStorage):
			refused = err
		default:
			t.Fatalf("append %d: %v (storage %+v, df %d)", i, err, l.Storage(), free(t, dir))
		}
	}
	if refused == nil {
		t.Fatalf("%d appends of 64 KiB on a 16 MiB disk were all accepted", acked)
	}
	if !strings.Contains(refused.Error(), dir) || !strings.Contains(refused.Error(), "reserve") {
		t.Errorf("the refusal does not name the disk and the reserve: %v", refused)
	}
	if acked == 0 {
		t.Fatal("no append was accepted before the disk filled")
	}
	st := l.Storage()
	if !st.Refusing || st.Free >= reserve+1<<20 || st.Refusals == 0 || !st.Checked {
		t.Errorf("storage status while refusing: %+v", st)
	}
	if !l.Server().JetStreamEnabled() {
		t.Fatal("JetStream turned itself off: the reserve did not keep the disk from filling")
	}
	if n := count(t, l); n != acked {
		t.Fatalf("the log holds %d events; %d appends were acknowledged", n, acked)
	}

	// Free the space: appends work again, without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err = l.Append(ctx, []eventlog.Event{{Stream: "disk.a", Type: "disk.filled", Data: data}}); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("appends still refused after space was freed: %v", err)
	}
	if st := l.Storage(); st.Refusing {
		t.Errorf("still refusing after space was freed: %+v", st)
	}
	if n := count(t, l); n != acked+1 {
		t.Fatalf("the log holds %d events, want %d", n, acked+1)
	}
}

// TestJetStreamBackAfterTheDiskFilled lets the disk fill completely (no
// reserve), which makes the embedded server turn JetStream off. Appends
// are then answered as unknown, never as written; once space is freed
// the log turns JetStream back on by itself, every acknowledged event is
// there, and appends work again.
func TestJetStreamBackAfterTheDiskFilled(t *testing.T) {
	for _, listen := range []string{"", "127.0.0.1:0"} {
		t.Run("listen="+listen, func(t *testing.T) { jetStreamBack(t, listen) })
	}
}

func jetStreamBack(t *testing.T, listen string) {
	dir := smallDisk(t, 48<<20)
	l := eventlog.New(dir)
	l.Listen = listen
	l.DiskReserve = -1
	l.RequestTimeout = time.Second
	ctx := context.Background()
	if err := l.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	filler := fill(t, dir, free(t, dir)-6<<20)
	data := []byte(`"` + strings.Repeat("y", 64<<10) + `"`)
	var acked []string
	var unknown int
	for i := 0; i < 500 && unknown < 2; i++ {
		id := l.NewID()
		_, err := l.Append(ctx, []eventlog.Event{{ID: id, Stream: "disk.b", Type: "disk.filled", Data: data}})
		switch {
		case err == nil:
			acked = append(acked, id)
		case errors.Is(err, eventlog.ErrUnavailable), errors.Is(err, eventlog.ErrInsufficientStorage):
			unknown++
		default:
			t.Fatalf("append %d: %v", i, err)
		}
	}
	if unknown == 0 {
		t.Fatal("the disk never filled")
	}
	if st := l.Storage(); !st.Refusing {
		t.Errorf("the log does not report that it stopped writing: %+v", st)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if _, err = l.Append(ctx, []eventlog.Event{{Stream: "disk.b", Type: "disk.filled", Data: data}}); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("appends still fail after space was freed: %v (storage %+v)", err, l.Storage())
	}
	have := map[string]int{}
	for _, e := range all(t, l) {
		have[e.ID]++
	}
	for _, id := range acked {
		if have[id] != 1 {
			t.Fatalf("acknowledged event %s is in the log %d times", id, have[id])
		}
	}
}

// TestAtomicAppendsUnderStorageExhaustion hammers a log whose JetStream
// storage limit is small with concurrent atomic appends across streams:
// an append refused for lack of storage is absent, one acknowledged is
// there whole and once, one answered "unknown" is there whole or not at
// all, and no reader ever sees part of one.
func TestAtomicAppendsUnderStorageExhaustion(t *testing.T) {
	for _, d := range []eventlog.Durability{eventlog.Strict, eventlog.Relaxed} {
		t.Run(d.String(), func(t *testing.T) {
			l := eventlog.New(t.TempDir())
			l.MaxStore = 3 << 20
			l.Durability = d
			ctx := context.Background()
			if err := l.Open(ctx); err != nil {
				t.Fatal(err)
			}
			defer l.Close(ctx)

			type outcome struct {
				ids []string
				err error
			}
			var mu sync.Mutex
			var outcomes []outcome
			var wg sync.WaitGroup
			for w := 0; w < 8; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rnd := rand.New(rand.NewPCG(uint64(w), 7))
					refusals := 0
					for i := 0; refusals < 20 && i < 2000; i++ {
						n := 1 + rnd.IntN(4)
						evs := make([]eventlog.Event, n)
						ids := make([]string, n)
						for j := range evs {
							ids[j] = l.NewID()
							size := 1 + rnd.IntN(30<<10)
							evs[j] = eventlog.Event{ID: ids[j], Stream: fmt.Sprintf("ex.%d", rnd.IntN(6)), Type: "ex.put", Data: []byte(`"` + strings.Repeat("z", size) + `"`)}
						}
						_, err := l.Append(ctx, evs)
						if err != nil {
							refusals++
						}
						mu.Lock()
						outcomes = append(outcomes, outcome{ids, err})
						mu.Unlock()
					}
				}()
			}
			wg.Wait()

			have := map[string]int{}
			for _, e := range all(t, l) {
				have[e.ID]++
			}
			var ok, full, unknown int
			for _, o := range outcomes {
				present := 0
				for _, id := range o.ids {
					if have[id] > 1 {
						t.Fatalf("event %s is in the log %d times", id, have[id])
					}
					present += have[id]
				}
				switch {
				case o.err == nil:
					ok++
					if present != len(o.ids) {
						t.Fatalf("acknowledged append of %d events: %d in the log", len(o.ids), present)
					}
				case errors.Is(o.err, eventlog.ErrInsufficientStorage):
					full++
					if present != 0 {
						t.Fatalf("append refused for lack of storage (%v), yet %d of its %d events are in the log", o.err, present, len(o.ids))
					}
					if !strings.Contains(o.err.Error(), "storage") {
						t.Fatalf("refusal does not say what is full: %v", o.err)
					}
				case errors.Is(o.err, eventlog.ErrUnavailable):
					unknown++
					if present != 0 && present != len(o.ids) {
						t.Fatalf("append answered unknown (%v) is in the log in part: %d of %d events", o.err, present, len(o.ids))
					}
				default:
					t.Fatalf("unexpected error: %v", o.err)
				}
			}
			if full == 0 || ok == 0 {
				t.Fatalf("want both stored and refused appends: %d stored, %d refused, %d unknown", ok, full, unknown)
			}
			if !l.Server().JetStreamEnabled() {
				t.Fatal("JetStream turned itself off")
			}
			t.Logf("%d stored, %d refused for lack of storage, %d unknown", ok, full, unknown)
		})
	}
}

// count returns the number of events in the log.
func count(t *testing.T, l *eventlog.Log) int { return len(all(t, l)) }

// all reads the whole log.
func all(t *testing.T, l *eventlog.Log) []eventlog.Event {
	t.Helper()
	var out []eventlog.Event
	var after uint64
	for {
		p, err := l.Read(context.Background(), after, 1000, eventlog.Filter{})
		// A page of large events can outlast a test's short
		// RequestTimeout on a loaded machine: unavailable is the answer
		// to retry, so a read retries it for a while.
		for deadline := time.Now().Add(30 * time.Second); errors.Is(err, eventlog.ErrUnavailable) && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
			p, err = l.Read(context.Background(), after, 1000, eventlog.Filter{})
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p.Events...)
		if len(p.Events) == 0 {
			return out
		}
		after = p.LastSeq
	}
}
