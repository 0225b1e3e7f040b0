package main

import (
	"database/sql"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/kernel/kerneltest"
)

// replicateProjection copies a projection's current generation to
// rep/projections/<name>/<gen> with the Litestream library and indexes
// it in the archive's projection_files, as the backup service does when
// it replicates projection files. It returns the generation.
func replicateProjection(t *testing.T, dir, rep, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "projections", name, "current"))
	if err != nil {
		t.Fatal(err)
	}
	var ptr struct{ Current string }
	if err := json.Unmarshal(b, &ptr); err != nil {
		t.Fatal(err)
	}
	gen := strings.TrimSuffix(ptr.Current, ".db")
	started := time.Now()
	kerneltest.ReplicateFile(t, filepath.Join(dir, "projections", name, ptr.Current), "file://"+filepath.ToSlash(rep)+"/projections/"+name+"/"+gen)
	adb, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "backup", "archive.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer adb.Close()
	if _, err := adb.Exec(`CREATE TABLE IF NOT EXISTS projection_files(name TEXT, generation TEXT, started_ns INTEGER, PRIMARY KEY(name, generation))`); err != nil {
		t.Fatal(err)
	}
	if _, err := adb.Exec(`INSERT INTO projection_files(name, generation, started_ns) VALUES (?, ?, ?)`, name, gen, started.UnixNano()); err != nil {
		t.Fatal(err)
	}
	return gen
}

// TestRestoreProjectionFilesCLI: fazt restore installs a projection
// file the backup replicated, says so, and the restored directory has
// the same read models; --rebuild-projections rebuilds it and says why.
func TestRestoreProjectionFilesCLI(t *testing.T) {
	dir := t.TempDir()
	rep := filepath.Join(t.TempDir(), "replica")
	d := []string{"--data", dir}
	site := t.TempDir()
	s := startServer(t, dir, "--backup", rep)
	writeTree(t, site, map[string]string{"index.html": "<h1>first</h1>"})
	if _, errOut, err := fazt(t, nil, "", append([]string{"deploy", site, "--app", "hello"}, d...)...); err != nil {
		t.Fatalf("deploy: %v\n%s", err, errOut)
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	gen := replicateProjection(t, dir, rep, "vfs")

	s = startServer(t, dir, "--backup", rep)
	writeTree(t, site, map[string]string{"index.html": "<h1>second</h1>"})
	if _, errOut, err := fazt(t, nil, "", append([]string{"deploy", site, "--app", "hello"}, d...)...); err != nil {
		t.Fatalf("deploy: %v\n%s", err, errOut)
	}
	tail := backupStatus(t, dir).LogSeq
	waitFor(t, "the replica to hold the log", func() bool {
		st := backupStatus(t, dir)
		return len(st.Replicas) == 1 && st.Replicas[0].CopiedSeq >= tail
	})
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	want := snapshotOf(t, dir)

	restored := filepath.Join(t.TempDir(), "restored")
	_, errOut, err := fazt(t, nil, "", "restore", "--from", rep, "--data", restored)
	if err != nil {
		t.Fatalf("restore: %v\n%s", err, errOut)
	}
	if !strings.Contains(errOut, "projection vfs: restored from its replica (generation "+gen+", checkpoint ") {
		t.Errorf("restore does not say the vfs projection came from its file:\n%s", errOut)
	}
	got := snapshotOf(t, restored)
	if got.tail != want.tail || got.events != want.events || !maps.Equal(got.tables, want.tables) {
		t.Errorf("restored: %+v, want %+v", got, want)
	}

	restored = filepath.Join(t.TempDir(), "rebuilt")
	_, errOut, err = fazt(t, nil, "", "restore", "--from", rep, "--data", restored, "--rebuild-projections")
	if err != nil {
		t.Fatalf("restore --rebuild-projections: %v\n%s", err, errOut)
	}
	if !strings.Contains(errOut, "projection vfs: rebuilt from the log: rebuild asked (--rebuild-projections)") {
		t.Errorf("restore --rebuild-projections does not say it rebuilt vfs:\n%s", errOut)
	}
	if got := snapshotOf(t, restored); !maps.Equal(got.tables, want.tables) {
		t.Errorf("rebuilt read models %v, want %v", got.tables, want.tables)
	}
}
