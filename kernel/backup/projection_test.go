package backup_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/kernel/backup"
	"github.com/fazt-sh/fazt/kernel/kerneltest"
)

// TestProjectionFilesReplicated: with Config.Projections, each
// projection's serving generation is a Litestream replica at
// <URL>/projections/<name>/<gen> whose tables equal the live file's, and
// the archive's projection_files lists it; a rebuild starts a new
// generation, with its own row and replica.
func TestProjectionFilesReplicated(t *testing.T) {
	ctx := context.Background()
	folder := filepath.Join(t.TempDir(), "replica")
	s3url := fakeS3(t, "backups", "proj")
	dir := t.TempDir()
	n := startNode(t, dir, backup.Config{Replicas: []string{folder, s3url}, Projections: true})
	n.notes(t, 40)
	n.deploy(t, "blog", map[string]string{"index.html": "<h1>v1</h1>"})
	tail := n.tail(t)
	gen1 := servingFile(t, n, "vfs")
	waitFolded(t, n, tail)
	waitCopied(t, n, tail)

	// A rebuild: the runner builds the next generation and serves it
	// once it has caught up.
	if err := n.k.Projections().Rebuild(ctx, "vfs"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for servingFile(t, n, "vfs") == gen1 {
		if time.Now().After(deadline) {
			t.Fatal("the rebuilt vfs generation never served")
		}
		time.Sleep(20 * time.Millisecond)
	}
	gen2 := servingFile(t, n, "vfs")
	// The replaced generation's staging folder goes once both replicas
	// have copied its last state.
	oldStaging := filepath.Join(dir, "backup", "staging", "projections", "vfs", strings.TrimSuffix(gen1, ".db"))
	for {
		if _, err := os.Stat(oldStaging); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the staging folder of the replaced generation %s stays", gen1)
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.deploy(t, "blog", map[string]string{"index.html": "<h1>v2</h1>"})
	n.notes(t, 10)
	tail = n.tail(t)
	waitFolded(t, n, tail)
	serving := map[string]string{}
	for _, p := range n.k.Projections().Statuses() {
		serving[p.Name] = strings.TrimSuffix(filepath.Base(p.File), ".db")
	}
	t.Logf("serving generations %v (vfs was %s)", serving, gen1)
	want := map[string]string{}
	for name := range serving {
		want[name] = tablesHash(t, n.k, name, tail)
	}
	n.stop(t) // a last sync of the archive and of every projection file

	// End to end: a restore from either replica installs every serving
	// generation from its file, and the restored node answers as the
	// original did.
	for _, u := range []string{folder, s3url} {
		out := t.TempDir()
		res, err := backup.Restore(ctx, backup.RestoreOptions{From: u, Data: out})
		if err != nil {
			t.Fatalf("restore from %s: %v", backup.Redact(u), err)
		}
		if res.LastSeq != tail {
			t.Errorf("restore from %s: last seq %d, want %d", backup.Redact(u), res.LastSeq, tail)
		}
		for name, gen := range serving {
			if p := projectionOf(t, res, name); !p.FromFile || p.Generation != gen {
				t.Errorf("restore from %s: %s: %+v, want installed from generation %s", backup.Redact(u), name, p, gen)
			}
		}
		r := startNode(t, out, backup.Config{})
		for name, w := range want {
			if got := tablesHash(t, r.k, name, tail); got != w {
				t.Errorf("restore from %s: %s tables %s, want %s", backup.Redact(u), name, got, w)
			}
			if got := currentGen(t, out, name); got != serving[name] {
				t.Errorf("restore from %s: %s serves %s, want the restored %s (rebuilt instead of caught up)", backup.Redact(u), name, got, serving[name])
			}
		}
		if code, body := r.get(t, "blog", "/"); code != 200 || body != "<h1>v2</h1>" {
			t.Errorf("restore from %s serves %d %q", backup.Redact(u), code, body)
		}
		r.stop(t)
	}

	// The archive lists every generation replicated.
	arch := filepath.Join(t.TempDir(), "archive.db")
	if err := backup.FetchArchive(ctx, folder, arch, time.Time{}); err != nil {
		t.Fatal(err)
	}
	rows := projectionFiles(t, arch)
	for name, gen := range serving {
		if !slices.Contains(rows, name+"/"+gen) {
			t.Errorf("projection_files %v lacks the serving %s/%s", rows, name, gen)
		}
	}
	for _, g := range []string{gen1, gen2} {
		if !slices.Contains(rows, "vfs/"+strings.TrimSuffix(g, ".db")) {
			t.Errorf("projection_files %v lacks vfs generation %s", rows, g)
		}
	}
	// Each serving generation restores from each replica, equal to the
	// live file.
	for name, gen := range serving {
		live := liveTables(t, filepath.Join(dir, "projections", name, gen+".db"))
		for _, u := range []string{"file://" + filepath.ToSlash(folder), s3url} {
			from := strings.Replace(u, "?", "/projections/"+name+"/"+gen+"?", 1)
			if !strings.Contains(u, "?") {
				from = u + "/projections/" + name + "/" + gen
			}
			out := filepath.Join(t.TempDir(), gen+".db")
			if err := backup.FetchArchive(ctx, from, out, time.Time{}); err != nil {
				t.Errorf("restore %s: %v", from, err)
				continue
			}
			if got := liveTables(t, out); got != live {
				t.Errorf("%s restored from %s: tables %s, live %s", name, backup.Redact(from), got, live)
			}
		}
	}
	// The stock CLI restores them too.
	if ls, err := exec.LookPath("litestream"); err == nil {
		for name, gen := range serving {
			out := filepath.Join(t.TempDir(), gen+".db")
			if b, err := exec.Command(ls, "restore", "-o", out, "file://"+filepath.ToSlash(folder)+"/projections/"+name+"/"+gen).CombinedOutput(); err != nil {
				t.Errorf("litestream restore %s/%s: %v: %s", name, gen, err, b)
			} else if got, live := liveTables(t, out), liveTables(t, filepath.Join(dir, "projections", name, gen+".db")); got != live {
				t.Errorf("%s restored by the litestream CLI: tables %s, live %s", name, got, live)
			}
		}
	} else {
		t.Log("litestream CLI not installed: projection files are restored with the library only")
	}
	// The generation before the rebuild stays restorable.
	old := filepath.Join(t.TempDir(), "old.db")
	if err := backup.FetchArchive(ctx, "file://"+filepath.ToSlash(folder)+"/projections/vfs/"+strings.TrimSuffix(gen1, ".db"), old, time.Time{}); err != nil {
		t.Errorf("restore the replaced generation: %v", err)
	}
}

// servingFile is the file a projection serves from.
func servingFile(t *testing.T, n *node, name string) string {
	t.Helper()
	st := n.k.Projections().Status(name)
	if st.File == "" {
		t.Fatalf("projection %s: no serving file: %+v", name, st)
	}
	return filepath.Base(st.File)
}

// waitFolded waits until every projection has folded the log up to seq.
func waitFolded(t *testing.T, n *node, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, p := range n.k.Projections().Statuses() {
		if err := n.k.Projections().WaitFor(ctx, p.Name, seq); err != nil {
			t.Fatalf("projection %s: %v", p.Name, err)
		}
	}
}

// projectionFiles lists an archive's projection_files as name/generation.
func projectionFiles(t *testing.T, path string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rs, err := db.Query(`SELECT name, generation, started_ns FROM projection_files ORDER BY started_ns`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var name, gen string
		var ns int64
		if err := rs.Scan(&name, &gen, &ns); err != nil {
			t.Fatal(err)
		}
		if ns <= 0 {
			t.Errorf("projection_files %s/%s: started_ns %d", name, gen, ns)
		}
		out = append(out, name+"/"+gen)
	}
	return out
}

// liveTables hashes the tables of a copy of a projection file (with its
// WAL), leaving out Litestream's bookkeeping tables, which change with
// its checkpoints and are not the read model's.
func liveTables(t *testing.T, path string) string {
	t.Helper()
	tmp := filepath.Join(t.TempDir(), "copy.db")
	for _, sfx := range []string{"", "-wal"} {
		b, err := os.ReadFile(path + sfx)
		if os.IsNotExist(err) && sfx != "" {
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(tmp+sfx, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	db, err := sql.Open("sqlite", "file:"+tmp)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tb := range []string{"_litestream_seq", "_litestream_lock"} {
		if _, err := db.Exec(`DROP TABLE IF EXISTS ` + tb); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	h := sha256.New()
	if err := kerneltest.HashTables(context.Background(), tx, h); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
