package projections_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/eventlog/eventlogtest"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/projections/sqlitedb"
	"github.com/fazt-sh/fazt/schemas"
)

// openLog starts a real embedded log in a temp dir, closed at cleanup.
var openLog = eventlogtest.Open

func ev(stream, typ string, data any) eventlog.Event {
	b, _ := json.Marshal(data)
	return eventlog.Event{Stream: stream, Type: typ, Data: b}
}

// appendAll appends events in chunks the log accepts and returns the
// last sequence.
func appendAll(tb testing.TB, l *eventlog.Log, events ...eventlog.Event) uint64 {
	tb.Helper()
	var last uint64
	for len(events) > 0 {
		n := min(len(events), eventlog.MaxAppendEvents)
		res, err := l.Append(context.Background(), events[:n])
		if err != nil {
			tb.Fatalf("append: %v", err)
		}
		last = res.LastSeq
		events = events[n:]
	}
	return last
}

// hits returns n events of category cat that count key k (cycling
// through keys).
func hits(cat string, n, keys int) []eventlog.Event {
	out := make([]eventlog.Event, n)
	for i := range out {
		out[i] = ev(fmt.Sprintf("%s.%d", cat, i%7), cat+".hit", map[string]string{"k": fmt.Sprintf("k%d", i%keys)})
	}
	return out
}

var countersTable = schemas.Table{
	Name: "counters",
	Columns: []schemas.Column{
		{Name: "key", Type: "TEXT", PrimaryKey: true},
		{Name: "n", Type: "INTEGER", NotNull: true},
	},
}

// countKey is the counting fold: data.k, or the event type.
func countKey(e eventlog.Event) string {
	var d struct {
		K string `json:"k"`
	}
	json.Unmarshal(e.Data, &d)
	if d.K != "" {
		return d.K
	}
	return e.Type
}

// counter counts events per key with a non-idempotent UPDATE n = n + 1,
// so any event applied twice or missed shows.
func counter(name string, f eventlog.Filter) projections.Projection {
	return projections.Projection{
		Name:    name,
		Version: 1,
		Tables:  []schemas.Table{countersTable},
		Filter:  f,
		Apply: func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
			_, err := projections.Exec(ctx, tx, `INSERT INTO counters (key, n) VALUES (?, 1) ON CONFLICT (key) DO UPDATE SET n = n + 1`, countKey(e))
			return err
		},
	}
}

type runnerOpts struct {
	dir    string
	logger *slog.Logger
	batch  int
	bytes  int // BatchBytes
}

// openRunner registers ps on a runner over l, opens it and closes it at
// cleanup.
func openRunner(tb testing.TB, l *eventlog.Log, o runnerOpts, ps ...projections.Projection) *projections.Runner {
	tb.Helper()
	if o.dir == "" {
		o.dir = tb.TempDir()
	}
	r := projections.New(o.dir, l)
	r.RetryInterval = 50 * time.Millisecond
	r.Logger = o.logger
	if r.Logger == nil {
		r.Logger = testLogger(tb)
	}
	if o.batch > 0 {
		r.BatchSize = o.batch
	}
	if o.bytes > 0 {
		r.BatchBytes = o.bytes
	}
	for _, p := range ps {
		if err := r.Register(p); err != nil {
			tb.Fatalf("register %s: %v", p.Name, err)
		}
	}
	if err := r.Open(context.Background()); err != nil {
		tb.Fatalf("open runner: %v", err)
	}
	tb.Cleanup(func() { closeRunner(tb, r) })
	return r
}

func closeRunner(tb testing.TB, r *projections.Runner) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		tb.Errorf("close runner: %v", err)
	}
}

// testLogger sends the runner's log to t.Log.
func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func waitFor(tb testing.TB, r *projections.Runner, name string, seq uint64) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := r.WaitFor(ctx, name, seq); err != nil {
		tb.Fatalf("WaitFor(%s, %d): %v; status %+v", name, seq, err, r.Status(name))
	}
}

// waitStatus polls until cond holds for name's status.
func waitStatus(tb testing.TB, r *projections.Runner, name string, what string, cond func(projections.Status) bool) projections.Status {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		s := r.Status(name)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: timed out waiting for %s; status %s", name, what, statusJSON(s))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func statusJSON(s projections.Status) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// counts reads the counters table of name's serving file.
func counts(tb testing.TB, r *projections.Runner, name string) map[string]int {
	tb.Helper()
	db, release, err := r.Acquire(name)
	if err != nil {
		tb.Fatal(err)
	}
	defer release()
	return countsOf(tb, db)
}

func countsOf(tb testing.TB, db *sqlitedb.DB) map[string]int {
	tb.Helper()
	rows, err := db.Query(context.Background(), `SELECT key, n FROM counters`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			tb.Fatal(err)
		}
		out[k] = n
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// tableHash hashes every row of every table, in primary key order.
func tableHash(tb testing.TB, db *sqlitedb.DB, tables ...schemas.Table) string {
	tb.Helper()
	h := sha256.New()
	for _, t := range tables {
		var pk []string
		for _, c := range t.Columns {
			if c.PrimaryKey {
				pk = append(pk, `"`+c.Name+`"`)
			}
		}
		q := `SELECT * FROM "` + t.Name + `"`
		if len(pk) > 0 {
			q += " ORDER BY " + strings.Join(pk, ", ")
		}
		rows, err := db.Query(context.Background(), q)
		if err != nil {
			tb.Fatalf("%s: %v", q, err)
		}
		cols, _ := rows.Columns()
		fmt.Fprintf(h, "table %s %v\n", t.Name, cols)
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				tb.Fatal(err)
			}
			for _, v := range vals {
				fmt.Fprintf(h, "%T:%v|", v, v)
			}
			h.Write([]byte{'\n'})
		}
		if err := rows.Err(); err != nil {
			tb.Fatal(err)
		}
		rows.Close()
	}
	return hex.EncodeToString(h.Sum(nil))
}

// hashOf hashes the tables of name's serving file.
func hashOf(tb testing.TB, r *projections.Runner, name string, tables ...schemas.Table) string {
	tb.Helper()
	db, release, err := r.Acquire(name)
	if err != nil {
		tb.Fatal(err)
	}
	defer release()
	return tableHash(tb, db, tables...)
}

// openFile opens a SQLite file the runner wrote, closed at cleanup.
func openFile(tb testing.TB, path string) *sqlitedb.DB {
	tb.Helper()
	db := sqlitedb.New(path)
	if err := db.Open(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// checkpointOf reads a file's checkpoint.
func checkpointOf(tb testing.TB, db *sqlitedb.DB) (seq uint64, version int) {
	tb.Helper()
	if err := db.Reader.QueryRow(`SELECT seq, projection_version FROM fazt_checkpoint`).Scan(&seq, &version); err != nil {
		tb.Fatal(err)
	}
	return seq, version
}
