package backup_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel/backup"
	"github.com/fazt-sh/fazt/kernel/vfs"
)

func TestDefaultBucketIsVFS(t *testing.T) {
	if len(backup.DefaultBuckets) != 1 || backup.DefaultBuckets[0] != vfs.Bucket {
		t.Fatalf("DefaultBuckets %v, want the vfs bucket %s", backup.DefaultBuckets, vfs.Bucket)
	}
}

// TestRestoreEqual: a workload of events and two deploys is backed up
// to a folder replica and restored into a new directory: the same
// events (hash over every sequence, time, header and body), the same
// vfs read model (hash of every table), the same site served. Restored
// as of the first deploy's sequence, or its time, it serves the first.
func TestRestoreEqual(t *testing.T) {
	ctx := context.Background()
	rep := filepath.Join(t.TempDir(), "replica")
	n := startNode(t, t.TempDir(), backup.Config{Replicas: []string{rep}})
	n.notes(t, 120)
	big := strings.Repeat("app code 0123456789\n", 20000) // 400 KB, with gzip and brotli variants
	seqV1 := n.deploy(t, "blog", map[string]string{"index.html": "<h1>v1</h1>", "app.js": big})
	n.notes(t, 40)
	n.deploy(t, "blog", map[string]string{"index.html": "<h1>v2</h1>", "app.js": big})
	n.notes(t, 10)
	tail := n.tail(t)
	waitCopied(t, n, tail)
	want, err := backup.HashLog(ctx, n.k.Log(), tail)
	if err != nil {
		t.Fatal(err)
	}
	wantTables := tablesHash(t, n.k, "vfs", tail)
	if code, body := n.get(t, "blog", "/"); code != 200 || body != "<h1>v2</h1>" {
		t.Fatalf("original serves %d %q", code, body)
	}
	p, err := n.k.Log().Read(ctx, seqV1-1, 1, eventlog.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	timeV1 := p.Events[0].Time
	n.stop(t)

	var stages []string
	dir := t.TempDir()
	res, err := backup.Restore(ctx, backup.RestoreOptions{From: rep, Data: dir, Progress: func(stage string, done, total uint64) {
		stages = append(stages, stage)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res.LastSeq != tail || res.Hash != want || res.Blobs == 0 {
		t.Fatalf("restore: %+v, want last seq %d hash %s and blobs", res, tail, want)
	}
	if len(stages) == 0 {
		t.Error("no progress reported")
	}
	r := startNode(t, dir, backup.Config{})
	if got := r.tail(t); got != tail {
		t.Fatalf("restored log ends at %d, want %d", got, tail)
	}
	if got, _ := backup.HashLog(ctx, r.k.Log(), tail); got != want {
		t.Errorf("restored events hash %s, want %s", got, want)
	}
	if got := tablesHash(t, r.k, "vfs", tail); got != wantTables {
		t.Errorf("restored vfs tables hash %s, want %s", got, wantTables)
	}
	if code, body := r.get(t, "blog", "/"); code != 200 || body != "<h1>v2</h1>" {
		t.Errorf("restored serves %d %q", code, body)
	}
	if code, body := r.get(t, "blog", "/app.js"); code != 200 || body != big {
		t.Errorf("restored app.js: %d, %d bytes", code, len(body))
	}
	// The restored node appends after the original's events.
	r.notes(t, 1)
	if got := r.tail(t); got != tail+2 {
		t.Errorf("append after restore ends at %d, want %d", got, tail+2)
	}
	r.stop(t)

	// Point in time: as of the first deploy, by sequence and by time.
	for _, opt := range []backup.RestoreOptions{{AsOfSeq: seqV1}, {AsOfTime: timeV1}} {
		opt.From, opt.Data = rep, t.TempDir()
		res, err := backup.Restore(ctx, opt)
		if err != nil {
			t.Fatal(err)
		}
		if res.LastSeq != seqV1 {
			t.Errorf("restore as of %v/%d: last seq %d, want %d", opt.AsOfTime, opt.AsOfSeq, res.LastSeq, seqV1)
		}
		old := startNode(t, opt.Data, backup.Config{})
		tablesHash(t, old.k, "vfs", seqV1) // waits for the read model
		if code, body := old.get(t, "blog", "/"); code != 200 || body != "<h1>v1</h1>" {
			t.Errorf("restore as of the first deploy serves %d %q", code, body)
		}
		old.stop(t)
	}

	// A directory that holds a log is refused.
	if _, err := backup.Restore(ctx, backup.RestoreOptions{From: rep, Data: dir}); !errors.Is(err, eventlog.ErrConflict) {
		t.Errorf("restore into a used directory: %v, want ErrConflict", err)
	}
}

// TestRestoreFromArchiveFile: the archive file itself is a source, and
// sqlite3-level reads see the documented schema.
func TestRestoreFromArchiveFile(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, t.TempDir(), backup.Config{Replicas: []string{filepath.Join(t.TempDir(), "r")}})
	n.notes(t, 30)
	tail := n.tail(t)
	waitCopied(t, n, tail)
	want, _ := backup.HashLog(ctx, n.k.Log(), tail)
	n.stop(t)
	sum, err := backup.Summarize(ctx, n.bk.ArchivePath(), 0)
	if err != nil || sum.LastSeq != tail || sum.Hash != want {
		t.Fatalf("summary %+v %v, want %d %s", sum, err, tail, want)
	}
	res, err := backup.Restore(ctx, backup.RestoreOptions{From: n.bk.ArchivePath(), Data: t.TempDir()})
	if err != nil || res.Hash != want {
		t.Fatalf("restore from the archive file: %+v %v", res, err)
	}
	if _, err := os.Stat(n.bk.ArchivePath()); err != nil {
		t.Fatal(err)
	}
}
