package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
)

// The kernel side of every scenario is an eventlog.Log and a
// projections.Runner folding one counting projection: the smallest read
// model that still parses each event and writes a row per event.
const (
	projName  = "bench_counts"
	benchType = "bench.hit"
	numKeys   = 1000 // distinct counters in the projection
	numStream = 100  // distinct streams appended to
)

var countsTable = schemas.Table{
	Name: "counts",
	Columns: []schemas.Column{
		{Name: "key", Type: "TEXT", PrimaryKey: true},
		{Name: "n", Type: "INTEGER", NotNull: true},
	},
}

const upsertSQL = `INSERT INTO counts (key, n) VALUES (?, 1) ON CONFLICT (key) DO UPDATE SET n = n + 1`

// countProjection counts events per data.k.
func countProjection() projections.Projection {
	return projections.Projection{
		Name:    projName,
		Version: 1,
		Tables:  []schemas.Table{countsTable},
		Filter:  eventlog.Filter{Categories: []string{"bench"}},
		Apply: func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
			k, err := keyOf(e.Data)
			if err != nil {
				return err
			}
			_, err = projections.Exec(ctx, tx, upsertSQL, k) // prepared once per batch
			return err
		},
	}
}

func keyOf(data []byte) (string, error) {
	var d struct {
		K string `json:"k"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return "", err
	}
	return d.K, nil
}

var (
	streamNames = func() []string {
		s := make([]string, numStream)
		for i := range s {
			s[i] = fmt.Sprintf("bench.s%d", i)
		}
		return s
	}()
	rawSubjects = func() []string {
		s := make([]string, numStream)
		for i := range s {
			s[i] = fmt.Sprintf("raw.s%d", i)
		}
		return s
	}()
	keyData = func() []json.RawMessage {
		d := make([]json.RawMessage, numKeys)
		for i := range d {
			d[i] = json.RawMessage(fmt.Sprintf(`{"k":"k%d"}`, i))
		}
		return d
	}()
)

// hit is the i-th event of a projection scenario.
func hit(i int) eventlog.Event {
	return eventlog.Event{Stream: streamNames[i%numStream], Type: benchType, Data: keyData[i%numKeys]}
}

// payload is a JSON string of exactly size bytes.
func payload(size int) []byte {
	size = max(size, 2)
	b := make([]byte, size)
	b[0], b[size-1] = '"', '"'
	for i := 1; i < size-1; i++ {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

var quiet = slog.New(slog.DiscardHandler)

// openLog opens a log in dir with the embedded server.
func openLog(ctx context.Context, dir string, d eventlog.Durability) (*eventlog.Log, error) {
	l := eventlog.New(dir)
	l.Durability = d
	l.Logger = quiet
	if err := l.Open(ctx); err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	return l, nil
}

// openRunner opens a runner with the counting projection in dir.
func openRunner(ctx context.Context, dir string, l *eventlog.Log) (*projections.Runner, error) {
	r := projections.New(dir, l)
	r.Logger = quiet
	if err := r.Register(countProjection()); err != nil {
		return nil, err
	}
	if err := r.Open(ctx); err != nil {
		return nil, fmt.Errorf("open projections: %w", err)
	}
	return r, nil
}

func closeLog(l *eventlog.Log) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l.Close(ctx)
}

func closeRunner(r *projections.Runner) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r.Close(ctx)
}

// fillBatch is the events per append when filling a log: bulk loads use
// multi-event appends.
const fillBatch = 100

// fill appends n hits in appends of fillBatch, many in flight, and
// returns the last sequence. progress is called now and then with the
// events appended so far.
func fill(ctx context.Context, l *eventlog.Log, n int, progress func(done int)) (uint64, error) {
	window := make(chan *eventlog.Pending, 64)
	type result struct {
		last uint64
		err  error
	}
	res := make(chan result, 1)
	go func() {
		var r result
		for p := range window {
			out, err := p.Wait()
			if err != nil && r.err == nil {
				r.err = err
			}
			r.last = max(r.last, out.LastSeq)
		}
		res <- r
	}()
	batch := make([]eventlog.Event, 0, fillBatch)
	var err error
	lastReport := time.Now()
	for i := 0; i < n && err == nil; {
		batch = batch[:0]
		for ; len(batch) < fillBatch && i < n; i++ {
			batch = append(batch, hit(i))
		}
		var p *eventlog.Pending
		if p, err = l.AppendAsync(ctx, batch); err == nil {
			window <- p
		}
		if progress != nil && time.Since(lastReport) > 200*time.Millisecond {
			progress(i)
			lastReport = time.Now()
		}
	}
	close(window)
	r := <-res
	if err == nil {
		err = r.err
	}
	return r.last, err
}

// waitProjected waits until the projection has folded up to seq.
func waitProjected(ctx context.Context, r *projections.Runner, seq uint64, limit time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if err := r.WaitFor(wctx, projName, seq); err != nil {
		return fmt.Errorf("projection did not reach seq %d: %w (%+v)", seq, err, r.Status(projName))
	}
	return nil
}
