package backup_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/kernel/backup"
	"github.com/fazt-sh/fazt/kernel/kerneltest"
)

// currentGen is the generation a projection's pointer file names as
// current, without ".db".
func currentGen(tb testing.TB, dir, name string) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "projections", name, "current"))
	if err != nil {
		tb.Fatal(err)
	}
	var p struct{ Current string }
	if err := json.Unmarshal(b, &p); err != nil {
		tb.Fatal(err)
	}
	return strings.TrimSuffix(p.Current, ".db")
}

// replicateFile copies a SQLite file to a Litestream replica URL with
// the Litestream library, as the backup service replicates a
// projection generation.
func replicateFile(tb testing.TB, path, u string) {
	tb.Helper()
	kerneltest.ReplicateFile(tb, path, u)
}

// indexProjection writes a row of the archive's projection_files
// index, as the backup service does when it starts replicating a
// generation.
func indexProjection(tb testing.TB, archive, name, gen string, started time.Time) {
	tb.Helper()
	db, err := sql.Open("sqlite", "file:"+archive+"?_pragma=busy_timeout(10000)")
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS projection_files(name TEXT, generation TEXT, started_ns INTEGER, PRIMARY KEY(name, generation))`); err != nil {
		tb.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO projection_files(name, generation, started_ns) VALUES (?, ?, ?)`, name, gen, started.UnixNano()); err != nil {
		tb.Fatal(err)
	}
}

func projectionOf(tb testing.TB, res backup.RestoreResult, name string) backup.ProjectionRestore {
	tb.Helper()
	for _, p := range res.Projections {
		if p.Name == name {
			return p
		}
	}
	tb.Fatalf("restore reports no projection %s: %+v", name, res.Projections)
	return backup.ProjectionRestore{}
}

// TestRestoreProjectionFiles: the vfs projection's file, replicated as
// the backup service does (a Litestream replica at
// URL/projections/vfs/<gen>, a row in projection_files), is installed
// by a restore, and the kernel catches up from its checkpoint to the
// same tables as the original; a checkpoint past --as-of, a missing
// replica and RebuildProjections rebuild from the log instead.
func TestRestoreProjectionFiles(t *testing.T) {
	ctx := context.Background()
	rep := filepath.Join(t.TempDir(), "replica")
	dir := t.TempDir()
	n := startNode(t, dir, backup.Config{Replicas: []string{rep}})
	n.notes(t, 30)
	n.deploy(t, "blog", map[string]string{"index.html": "<h1>v1</h1>"})
	tailA := n.tail(t)
	tablesHash(t, n.k, "vfs", tailA)
	n.stop(t)

	gen := currentGen(t, dir, "vfs")
	started := time.Now()
	replicateFile(t, filepath.Join(dir, "projections", "vfs", gen+".db"), "file://"+filepath.ToSlash(rep)+"/projections/vfs/"+gen)
	replicated := time.Now() // the copy is there, the next events are not
	time.Sleep(2 * time.Millisecond)

	n = startNode(t, dir, backup.Config{Replicas: []string{rep}})
	indexProjection(t, n.bk.ArchivePath(), "vfs", gen, started)
	indexProjection(t, n.bk.ArchivePath(), "ghost", "000001", started) // never replicated
	// A forged index row naming a path out of the projections folder.
	indexProjection(t, n.bk.ArchivePath(), "../evil", "000001", started)
	indexProjection(t, n.bk.ArchivePath(), "odd", "../../000001", started)
	n.notes(t, 20)
	n.deploy(t, "blog", map[string]string{"index.html": "<h1>v2</h1>"})
	tail := n.tail(t)
	waitCopied(t, n, tail)
	want := tablesHash(t, n.k, "vfs", tail)
	n.stop(t)

	// Accepted: installed as the current generation; the kernel catches up.
	var logs bytes.Buffer
	out := t.TempDir()
	res, err := backup.Restore(ctx, backup.RestoreOptions{From: rep, Data: out, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restore: %+v", res.Projections)
	p := projectionOf(t, res, "vfs")
	if !p.FromFile || p.Generation != gen || p.Checkpoint < tailA || p.Checkpoint >= tail {
		t.Fatalf("vfs: %+v, want restored from file %s with a checkpoint in [%d, %d)", p, gen, tailA, tail)
	}
	if got := currentGen(t, out, "vfs"); got != gen {
		t.Fatalf("restored pointer names %s, want %s", got, gen)
	}
	ghost := projectionOf(t, res, "ghost")
	if ghost.FromFile || !strings.Contains(ghost.Reason, "no copy") {
		t.Errorf("ghost: %+v, want rebuilt: no copy", ghost)
	}
	for _, name := range []string{"../evil", "odd"} {
		if p := projectionOf(t, res, name); p.FromFile || !strings.Contains(p.Reason, "not a projection file") {
			t.Errorf("forged index row %q: %+v, want rebuilt: not a projection file", name, p)
		}
	}
	for _, path := range []string{filepath.Join(out, "evil"), filepath.Join(out, "projections", "evil"), filepath.Join(out, "000001.db")} {
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("a forged index row wrote %s (%v)", path, err)
		}
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "ghost") {
		t.Errorf("no warning about the missing replica in %q", logs.String())
	}
	r := startNode(t, out, backup.Config{})
	if got := tablesHash(t, r.k, "vfs", tail); got != want {
		t.Errorf("vfs tables after catching up: %s, want %s", got, want)
	}
	if got := currentGen(t, out, "vfs"); got != gen {
		t.Errorf("the kernel replaced the restored file %s by %s: it rebuilt instead of catching up", gen, got)
	}
	if code, body := r.get(t, "blog", "/"); code != 200 || body != "<h1>v2</h1>" {
		t.Errorf("restored serves %d %q", code, body)
	}
	r.stop(t)

	// Its checkpoint is past --as-of: rebuilt from the log.
	out = t.TempDir()
	res, err = backup.Restore(ctx, backup.RestoreOptions{From: rep, Data: out, AsOfSeq: tailA - 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("as of %d: %+v", tailA-3, res.Projections)
	if p := projectionOf(t, res, "vfs"); p.FromFile || !strings.Contains(p.Reason, "beyond") {
		t.Errorf("as of %d: %+v, want rebuilt: checkpoint beyond", tailA-3, p)
	}
	if _, err := os.Stat(filepath.Join(out, "projections", "vfs")); !os.IsNotExist(err) {
		t.Errorf("as of %d: a projection file was installed (%v)", tailA-3, err)
	}

	// As of a time after the copy was made: that copy, and the log up to then.
	out = t.TempDir()
	res, err = backup.Restore(ctx, backup.RestoreOptions{From: rep, Data: out, AsOfTime: replicated})
	if err != nil {
		t.Fatal(err)
	}
	if p := projectionOf(t, res, "vfs"); !p.FromFile || p.Checkpoint != res.LastSeq || res.LastSeq != tailA {
		t.Errorf("as of %v: %+v, last seq %d; want restored from file at %d", replicated, p, res.LastSeq, tailA)
	}
	old := startNode(t, out, backup.Config{})
	tablesHash(t, old.k, "vfs", tailA)
	if code, body := old.get(t, "blog", "/"); code != 200 || body != "<h1>v1</h1>" {
		t.Errorf("restored as of the copy serves %d %q", code, body)
	}
	old.stop(t)

	// As of a time before its replication started: no generation to take.
	out = t.TempDir()
	res, err = backup.Restore(ctx, backup.RestoreOptions{From: rep, Data: out, AsOfTime: started.Add(-time.Nanosecond)})
	if err != nil {
		t.Fatal(err)
	}
	if p := projectionOf(t, res, "vfs"); p.FromFile || !strings.Contains(p.Reason, "no generation") {
		t.Errorf("as of before the replication started: %+v, want rebuilt: no generation", p)
	}

	// Asked to rebuild.
	out = t.TempDir()
	res, err = backup.Restore(ctx, backup.RestoreOptions{From: rep, Data: out, RebuildProjections: true})
	if err != nil {
		t.Fatal(err)
	}
	if p := projectionOf(t, res, "vfs"); p.FromFile || !strings.Contains(p.Reason, "rebuild-projections") {
		t.Errorf("RebuildProjections: %+v", p)
	}
	if _, err := os.Stat(filepath.Join(out, "projections", "vfs")); !os.IsNotExist(err) {
		t.Errorf("RebuildProjections: a projection file was installed (%v)", err)
	}
}

// TestProjectionReplicaURL: a generation's replica is at
// <URL>/projections/<name>/<gen>, whatever form the replica URL takes.
func TestProjectionReplicaURL(t *testing.T) {
	abs, err := filepath.Abs("backups")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ from, want string }{
		{"file:///x/fazt", "file:///x/fazt/projections/orders/000002"},
		{"file:///x/fazt/", "file:///x/fazt/projections/orders/000002"},
		{"backups", "file://" + filepath.ToSlash(abs) + "/projections/orders/000002"},
		{"s3://bucket/fazt?endpoint=http://127.0.0.1:9000&region=eu-west-1", "s3://bucket/fazt/projections/orders/000002?endpoint=http://127.0.0.1:9000&region=eu-west-1"},
		{"s3://bucket", "s3://bucket/projections/orders/000002"},
	} {
		got, err := backup.ProjectionReplicaURL(c.from, "orders", "000002")
		if err != nil || got != c.want {
			t.Errorf("%s: %s %v, want %s", c.from, got, err, c.want)
		}
	}
}
