package projections_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
)

func TestQuery(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	last := appendAll(t, l, hits("counter", 30, 10)...) // k0..k9, 3 each
	r := openRunner(t, l, runnerOpts{}, counter("all", eventlog.Filter{}))
	waitFor(t, r, "all", last)

	// Columns, rows and the checkpoint they are consistent with.
	res, err := r.Query(ctx, "all", `SELECT key, n FROM counters ORDER BY key`, nil, projections.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Columns, []string{"key", "n"}) || len(res.Rows) != 10 || res.Truncated || res.Seq != last {
		t.Fatalf("result %+v, want 10 rows of key, n at seq %d", res, last)
	}
	if got := res.Rows[0]; !reflect.DeepEqual(got, []any{"k0", int64(3)}) {
		t.Fatalf("first row %#v", got)
	}

	// Args are bound.
	res, err = r.Query(ctx, "all", `SELECT n, key FROM counters WHERE key = ? OR key = ? ORDER BY key`, []any{"k3", "k7"}, projections.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]any{{int64(3), "k3"}, {int64(3), "k7"}}; !reflect.DeepEqual(res.Rows, want) {
		t.Fatalf("rows %#v, want %#v", res.Rows, want)
	}

	// Values read well as JSON: text blobs become strings, floats and
	// NULL stay, binary stays bytes.
	res, err = r.Query(ctx, "all", `SELECT CAST('abc' AS BLOB), 1.5, NULL, x'ff00'`, nil, projections.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []any{"abc", 1.5, nil, []byte{0xff, 0}}; !reflect.DeepEqual(res.Rows[0], want) {
		t.Fatalf("values %#v, want %#v", res.Rows[0], want)
	}
	if b, err := json.Marshal(res); err != nil || !strings.Contains(string(b), `["abc",1.5,null,"/wA="]`) {
		t.Fatalf("json %s: %v", b, err)
	}

	// MaxRows truncates; exactly MaxRows rows is not truncated; an empty
	// result has no rows but its columns.
	for _, c := range []struct {
		max       int
		rows      int
		truncated bool
	}{{3, 3, true}, {9, 9, true}, {10, 10, false}, {50000, 10, false}} {
		res, err := r.Query(ctx, "all", `SELECT key FROM counters ORDER BY key`, nil, projections.QueryOptions{MaxRows: c.max})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Rows) != c.rows || res.Truncated != c.truncated {
			t.Fatalf("MaxRows %d: %d rows, truncated %v; want %d, %v", c.max, len(res.Rows), res.Truncated, c.rows, c.truncated)
		}
	}
	res, err = r.Query(ctx, "all", `SELECT key FROM counters WHERE 0`, nil, projections.QueryOptions{})
	if err != nil || res.Rows == nil || len(res.Rows) != 0 || len(res.Columns) != 1 {
		t.Fatalf("empty result %#v: %v", res, err)
	}
	// The default and the hard cap.
	res, err = r.Query(ctx, "all", `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 20000) SELECT x FROM c`, nil, projections.QueryOptions{})
	if err != nil || len(res.Rows) != projections.DefaultQueryMaxRows || !res.Truncated {
		t.Fatalf("default MaxRows: %d rows, truncated %v: %v", len(res.Rows), res.Truncated, err)
	}
	res, err = r.Query(ctx, "all", `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 20000) SELECT x FROM c`, nil, projections.QueryOptions{MaxRows: 1 << 30})
	if err != nil || len(res.Rows) != projections.MaxQueryRows || !res.Truncated {
		t.Fatalf("capped MaxRows: %d rows, truncated %v: %v", len(res.Rows), res.Truncated, err)
	}

	// Read your writes.
	for i := range 10 {
		ar, err := l.Append(ctx, []eventlog.Event{ev("counter.x", "counter.hit", map[string]string{"k": "new"})})
		if err != nil {
			t.Fatal(err)
		}
		res, err := r.Query(ctx, "all", `SELECT n FROM counters WHERE key = 'new'`, nil, projections.QueryOptions{MinSeq: ar.LastSeq})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Rows) != 1 || res.Rows[0][0] != int64(i+1) || res.Seq < ar.LastSeq {
			t.Fatalf("after append %d (seq %d): %+v", i, ar.LastSeq, res)
		}
	}

	// A MinSeq the log has not reached: unavailable after MaxWait,
	// naming where the projection is.
	seq := r.Status("all").Seq
	_, err = r.Query(ctx, "all", `SELECT 1`, nil, projections.QueryOptions{MinSeq: seq + 100, MaxWait: 50 * time.Millisecond})
	if !errors.Is(err, eventlog.ErrUnavailable) || !strings.Contains(err.Error(), "behind") || !strings.Contains(err.Error(), fmt.Sprint(seq)) {
		t.Fatalf("MinSeq past the log: %v", err)
	}
	// The caller's own context ending is its error, not unavailable.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = r.Query(short, "all", `SELECT 1`, nil, projections.QueryOptions{MinSeq: seq + 100})
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, eventlog.ErrUnavailable) {
		t.Fatalf("caller's deadline: %v", err)
	}
}

func TestQueryRefusals(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	last := appendAll(t, l, hits("counter", 5, 2)...)
	r := openRunner(t, l, runnerOpts{}, counter("all", eventlog.Filter{}))
	waitFor(t, r, "all", last)

	// Writes fail on the reader's authorizer.
	for _, q := range []string{
		`INSERT INTO counters (key, n) VALUES ('x', 1)`,
		`DELETE FROM counters`,
		`UPDATE counters SET n = 0`,
		`DROP TABLE counters`,
		`CREATE TABLE t (x)`,
		`ATTACH DATABASE ':memory:' AS other`,
		`PRAGMA user_version = 7`,
	} {
		_, err := r.Query(ctx, "all", q, nil, projections.QueryOptions{})
		if !errors.Is(err, schemas.ErrEDDViolation) {
			t.Errorf("%s: %v, want ErrEDDViolation", q, err)
		}
		t.Log(err)
	}
	if got := counts(t, r, "all"); total(got) != 5 {
		t.Fatalf("counters changed: %v", got)
	}
	// Read-only pragmas answer.
	if _, err := r.Query(ctx, "all", `PRAGMA table_info(counters)`, nil, projections.QueryOptions{}); err != nil {
		t.Fatalf("PRAGMA table_info: %v", err)
	}

	// One statement only.
	for _, q := range []string{
		`SELECT 1; SELECT 2`,
		`SELECT 1; DELETE FROM counters`,
		`SELECT 1;;x`,
		`SELECT 'a;b'; SELECT 2`,
		"SELECT 1 /* ; */; -- x\n SELECT 2",
	} {
		if _, err := r.Query(ctx, "all", q, nil, projections.QueryOptions{}); !errors.Is(err, eventlog.ErrInvalid) {
			t.Errorf("%q: %v, want ErrInvalid", q, err)
		}
	}
	for _, q := range []string{
		`SELECT 1;`,
		"SELECT 1 ; \n\t;",
		`SELECT 'a;b', "key;" FROM (SELECT 1 AS "key;")`,
		`SELECT 'it''s; fine'`,
		"SELECT 1; -- a comment",
		"SELECT 1; /* a comment; */",
		`SELECT [x;y] FROM (SELECT 1 AS [x;y])`,
	} {
		if _, err := r.Query(ctx, "all", q, nil, projections.QueryOptions{}); err != nil {
			t.Errorf("%q: %v", q, err)
		}
	}

	// Syntax errors are SQLite's own.
	if _, err := r.Query(ctx, "all", `SELEC 1`, nil, projections.QueryOptions{}); err == nil || errors.Is(err, schemas.ErrEDDViolation) {
		t.Errorf("syntax error: %v", err)
	}

	if _, err := r.Query(ctx, "nope", `SELECT 1`, nil, projections.QueryOptions{}); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("unknown projection: %v", err)
	}
}

func TestQueryTimeout(t *testing.T) {
	l := openLog(t)
	r := openRunner(t, l, runnerOpts{}, counter("all", eventlog.Filter{}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a guard, not a measure
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := r.Query(ctx, "all", `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c`,
			nil, projections.QueryOptions{Timeout: 100 * time.Millisecond})
		done <- err
	}()
	select {
	case err := <-done:
		t.Log(err)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "timed out") {
			t.Fatalf("endless query: %v, want a timeout", err)
		}
	case <-ctx.Done():
		t.Fatal("endless query not interrupted within 30s")
	}
	// The connection is usable again.
	if _, err := r.Query(context.Background(), "all", `SELECT count(*) FROM counters`, nil, projections.QueryOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestQueryHalted(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	p := counter("all", eventlog.Filter{})
	inner := p.Apply
	p.Apply = func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
		if e.Type == "counter.boom" {
			return errors.New("boom")
		}
		return inner(ctx, tx, e)
	}
	appendAll(t, l, hits("counter", 4, 2)...)
	boom := appendAll(t, l, ev("counter.1", "counter.boom", nil))
	last := appendAll(t, l, hits("counter", 3, 2)...)
	r := openRunner(t, l, runnerOpts{}, p)
	waitStatus(t, r, "all", "halt", func(s projections.Status) bool { return s.Halted != nil })

	// A halted projection answers, at its halt point.
	res, err := r.Query(ctx, "all", `SELECT sum(n) FROM counters`, nil, projections.QueryOptions{MinSeq: boom - 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Seq != boom-1 || res.Rows[0][0] != int64(4) {
		t.Fatalf("halted projection: %+v, want 4 events at seq %d", res, boom-1)
	}
	// Beyond the halt it is unavailable, and says why.
	_, err = r.Query(ctx, "all", `SELECT sum(n) FROM counters`, nil, projections.QueryOptions{MinSeq: last, MaxWait: time.Second})
	if !errors.Is(err, eventlog.ErrUnavailable) || !errors.Is(err, projections.ErrHalted) ||
		!strings.Contains(err.Error(), fmt.Sprintf("halted at seq %d", boom)) || !strings.Contains(err.Error(), fmt.Sprintf("at seq %d", boom-1)) {
		t.Fatalf("MinSeq past the halt: %v", err)
	}
	t.Log(err)
}
