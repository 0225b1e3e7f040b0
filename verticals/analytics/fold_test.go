package analytics_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"testing"

	segjson "github.com/segmentio/encoding/json"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/eventlog/eventlogtest"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
	"github.com/fazt-sh/fazt/verticals/analytics"
	"github.com/fazt-sh/fazt/verticals/analytics/analyticsbench"
)

// openTestLog opens a log that checks every event against the
// vertical's schemas, as a kernel does: the sample's events are valid.
func openTestLog(t *testing.T) *eventlog.Log {
	t.Helper()
	reg := schemas.NewRegistry()
	if err := analytics.RegisterSchemas(reg); err != nil {
		t.Fatal(err)
	}
	return eventlogtest.Open(t, func(l *eventlog.Log) {
		l.Logger = slog.New(slog.DiscardHandler)
		l.Validate = reg.Validate
	})
}

// The fold gives the rows analyticsbench counts without it, whatever
// the size of its batches.
func TestFoldEqualsRows(t *testing.T) {
	ctx := context.Background()
	l := openTestLog(t)
	s := analyticsbench.NewSample(5000, 3)
	last, err := s.Fill(ctx, l, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := s.Insert(ctx, filepath.Join(dir, "rows.db")); err != nil {
		t.Fatal(err)
	}
	for _, batch := range []int{projections.DefaultBatchSize, 7, 1} {
		r := projections.New(t.TempDir(), l)
		r.Logger = slog.New(slog.DiscardHandler)
		r.BatchSize = batch
		if err := r.Register(analytics.Projection()); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, fmt.Sprintf("batch%d.db", batch))
		if err := r.BuildAsOf(ctx, "analytics", last, out); err != nil {
			t.Fatal(err)
		}
		sameRows(t, filepath.Join(dir, "rows.db"), out)
	}
}

// The read model folded live, as page views arrive one append at a time
// (transactions of one event up to a few dozen), is the one a rebuild
// makes in batches of 1000.
func TestRebuildEqualsLiveFold(t *testing.T) {
	ctx := context.Background()
	l := openTestLog(t)
	dir := t.TempDir()
	r := projections.New(dir, l)
	r.Logger = slog.New(slog.DiscardHandler)
	if err := r.Register(analytics.Projection()); err != nil {
		t.Fatal(err)
	}
	if err := r.Open(ctx); err != nil {
		t.Fatal(err)
	}
	s := analyticsbench.NewSample(3000, 5)
	var last uint64
	for i, k := 0, 0; i < s.Events(); k++ {
		n := min(1+(k*k)%37, s.Events()-i) // 1 to 37 events per append
		events := make([]eventlog.Event, n)
		for j := range events {
			events[j] = s.Event(i + j)
		}
		res, err := l.Append(ctx, events)
		if err != nil {
			t.Fatal(err)
		}
		last, i = res.LastSeq, i+n
		if k%3 == 0 { // now and then the fold catches up, so it folds small transactions
			if err := r.WaitFor(ctx, "analytics", last); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := r.WaitFor(ctx, "analytics", last); err != nil {
		t.Fatal(err)
	}
	live := r.Status("analytics").File
	rebuilt := filepath.Join(t.TempDir(), "rebuilt.db")
	if err := r.BuildAsOf(ctx, "analytics", last, rebuilt); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	sameRows(t, live, rebuilt)
}

// The fold decodes page views with segmentio/encoding: it must read every
// input as encoding/json does (the fold writes what it always wrote, so
// a rebuild of an old log gives the same rows).
func FuzzPageviewDecode(f *testing.F) {
	for _, s := range []string{
		`{"site":"blog","path":"/a","referrer":"news.example.net","ua_class":"desktop","visitor":"0123456789abcdef0123456789abcdef","at":"2025-03-10T10:00:00.123Z","utm_source":"x"}`,
		`{"SITE":"blog","Path":"/a","uA_ClAsS":"mobile","at":"2025-03-10T10:00:00Z"}`,
		`{"site":"a","site":"b","path":"/\u00e9\ud83d\ude00","referrer":"\"q\"\\\/"}`,
		"{\"site\":\"bl\xffog\",\"path\":\"/\xc3\"}",
		`{"site":null,"path":1,"referrer":{},"ua_class":[]}`,
		`{"site":"blog","extra":{"deep":[1,2,{"x":null}]},"at":""}`,
		`{"site":"blog"} trailing`,
		`{"site":"blog",}`,
		`{}`, `[]`, `null`, `"str"`, ``, `{"site":"\u0000"}`, `{"path":"\ud800"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var std, seg analytics.PageviewRecorded
		errStd := json.Unmarshal(data, &std)
		errSeg := segjson.Unmarshal(data, &seg)
		if (errStd == nil) != (errSeg == nil) {
			t.Fatalf("%q: encoding/json error %v, segmentio error %v", data, errStd, errSeg)
		}
		if errStd == nil && !reflect.DeepEqual(std, seg) {
			t.Fatalf("%q: encoding/json %+v, segmentio %+v", data, std, seg)
		}
	})
}
