package kernel_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
)

// TestBuildWritesOnlyIntoBuilds: POST /v1/projections/{name}/build
// takes a plain file name and writes it, exclusively and private, into
// DIR/builds; it refuses paths, symlinks and leftovers, and a failed
// build removes only what it made.
func TestBuildWritesOnlyIntoBuilds(t *testing.T) {
	dir := t.TempDir()
	k := newKernel(t, dir, nil)
	if err := k.RegisterEvent("t.hit", 1, []byte(`{"type":"object"}`)); err != nil {
		t.Fatal(err)
	}
	if err := k.RegisterProjection(counter("t.hit", "t.bad")); err != nil {
		t.Fatal(err)
	}
	open(t, k)
	ctx := context.Background()
	res, err := k.Append(ctx, []eventlog.Event{{Stream: "t.1", Type: "t.hit", Data: []byte(`{}`)}, {Stream: "t.2", Type: "t.hit", Data: []byte(`{}`)}})
	if err != nil {
		t.Fatal(err)
	}
	good := res.LastSeq
	build := func(out string, seq uint64) (int, string) {
		t.Helper()
		b, _ := json.Marshal(kernel.BuildRequest{AsOfSeq: seq, Out: out})
		status, body, _ := call(t, k, "POST", "/v1/projections/counts/build", k.Token, string(b))
		return status, body
	}
	builds := filepath.Join(dir, kernel.BuildsDir)

	// A plain name: written into DIR/builds, 0600, the folder 0700.
	status, body := build("counts-2.db", good)
	want := filepath.Join(builds, "counts-2.db")
	if status != http.StatusOK || !strings.Contains(body, `"file":"`+want+`"`) {
		t.Fatalf("build: %d %s; want 200 with file %s", status, body, want)
	}
	if m := fileMode(t, want); m != 0o600 {
		t.Errorf("built file mode %v; want 0600", m)
	}
	if m := fileMode(t, builds); m != 0o700 {
		t.Errorf("builds folder mode %v; want 0700", m)
	}
	if status, body := build("counts-2.db", good); status != http.StatusConflict || !strings.Contains(body, "exists") {
		t.Errorf("build over an existing file: %d %s; want 409", status, body)
	}

	// Anything but a plain name is refused, and nothing is written.
	elsewhere := t.TempDir()
	for _, out := range []string{
		"", ".", "..", "../escape.db", "a/b.db", filepath.Join(elsewhere, "abs.db"), ".hidden.db", "x..db",
		"name with space.db", "new\nline.db", "x.db-wal", "x.db-shm", "x.db-journal", strings.Repeat("a", 101),
		`back\slash.db`, "ünïcode.db",
	} {
		status, body := build(out, good)
		if status != http.StatusBadRequest || !strings.Contains(body, "plain file name") {
			t.Errorf("build out=%q: %d %s; want 400 asking for a plain file name", out, status, body)
		}
	}
	if entries, _ := os.ReadDir(elsewhere); len(entries) > 0 {
		t.Errorf("a refused build wrote outside: %v", entries)
	}
	if _, err := os.Stat(filepath.Join(dir, "escape.db")); err == nil {
		t.Error("a refused build wrote escape.db")
	}

	// A symlink in the folder is not followed: the target is untouched.
	target := filepath.Join(elsewhere, "authorized_keys")
	if err := os.WriteFile(target, []byte("keep me\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(builds, "link.db")); err != nil {
		t.Fatal(err)
	}
	if status, body := build("link.db", good); status != http.StatusConflict {
		t.Errorf("build onto a symlink: %d %s; want 409", status, body)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep me\n" {
		t.Errorf("the symlink's target changed: %q", b)
	}

	// Leftover sidecars are neither read into the new file nor removed.
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		name := "stale" + strings.TrimPrefix(suffix, "-") + ".db"
		stale := filepath.Join(builds, name+suffix)
		if err := os.WriteFile(stale, []byte("not ours"), 0o600); err != nil {
			t.Fatal(err)
		}
		if status, body := build(name, good); status != http.StatusConflict || !strings.Contains(body, suffix+" exists") {
			t.Errorf("build next to a leftover %s: %d %s; want 409 naming it", suffix, status, body)
		}
		if b, err := os.ReadFile(stale); err != nil || string(b) != "not ours" {
			t.Errorf("the leftover %s was touched: %q %v", stale, b, err)
		}
		if _, err := os.Stat(filepath.Join(builds, name)); err == nil {
			t.Errorf("a refused build left %s", name)
		}
	}

	// A failed build removes its own file and its -wal and -shm only.
	res, err = k.Append(ctx, []eventlog.Event{{Stream: "t.bad", Type: "t.hit", Data: []byte(`{}`)}})
	if err != nil {
		t.Fatal(err)
	}
	if status, body := build("failed.db", res.LastSeq); status < 400 || !strings.Contains(body, "cannot count t.bad") {
		t.Fatalf("build through a failing event: %d %s; want an error", status, body)
	}
	entries, err := os.ReadDir(builds)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got, want := strings.Join(names, " "), "counts-2.db link.db stalejournal.db-journal staleshm.db-shm stalewal.db-wal"; got != want {
		t.Errorf("builds folder after a failed build: %s; want %s", got, want)
	}
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}
