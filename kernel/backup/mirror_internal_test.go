package backup

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/benbjohnson/litestream/file"
	"github.com/superfly/ltx"
)

// TestMirrorFollowsStaging: a mirror makes a folder hold the staging
// folder's files: new ones copied, those Litestream's compaction and
// retention removed from staging deleted, files of another history (a
// staging folder started again) removed; the folder restores to the
// database, and its position maps back to the sequence staged.
func TestMirrorFollowsStaging(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	path := filepath.Join(base, "data.db")
	db, err := sql.Open("sqlite", archiveDSN(path, false))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE t (n INTEGER)`); err != nil {
		t.Fatal(err)
	}
	st := newStager(path, filepath.Join(base, "staging"), slog.New(slog.DiscardHandler))
	if err := st.open(ctx); err != nil {
		t.Fatal(err)
	}
	defer st.close(ctx)
	rows := 0
	write := func(k int) {
		for range k {
			rows++
			if _, err := db.Exec(`INSERT INTO t VALUES (?)`, rows); err != nil {
				t.Fatal(err)
			}
			if err := st.sync(ctx, uint64(rows)); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(5)
	remote := filepath.Join(base, "remote")
	m, err := newMirror(st, remote)
	if err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		if _, err := m.round(ctx); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		want, err := listFiles(ctx, st.client)
		if err != nil {
			t.Fatal(err)
		}
		got, err := listFiles(ctx, file.NewReplicaClient(remote))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(got, want, func(a, b *ltx.FileInfo) bool {
			return a.Level == b.Level && a.MinTXID == b.MinTXID && a.MaxTXID == b.MaxTXID && a.Size == b.Size
		}) {
			t.Fatalf("%s: the replica holds %s, staging %s", when, names(got), names(want))
		}
		if seq := st.seqAt(m.txid); seq != uint64(rows) {
			t.Errorf("%s: the replica's position maps to seq %d, want %d", when, seq, rows)
		}
		out := filepath.Join(t.TempDir(), "restored.db")
		if err := fetchArchive(ctx, "file://"+filepath.ToSlash(remote), out, time.Time{}, nil); err != nil {
			t.Fatalf("%s: restore: %v", when, err)
		}
		rdb, err := sql.Open("sqlite", archiveDSN(out, true))
		if err != nil {
			t.Fatal(err)
		}
		defer rdb.Close()
		var n int
		if err := rdb.QueryRow(`SELECT COUNT(*) FROM t`).Scan(&n); err != nil || n != rows {
			t.Fatalf("%s: the replica restores %d rows (%v), want %d", when, n, err, rows)
		}
	}
	check("first copy")

	// Litestream compacts L0 into L1 and drops the L0 files L1 covers.
	write(4)
	if _, err := st.db.Compact(ctx, 1); err != nil {
		t.Fatal(err)
	}
	before, _ := listFiles(ctx, st.client)
	st.db.L0Retention = time.Nanosecond
	if err := st.db.EnforceL0RetentionByTime(ctx); err != nil {
		t.Fatal(err)
	}
	after, _ := listFiles(ctx, st.client)
	if len(after) >= len(before) {
		t.Fatalf("retention removed nothing from staging: %s", names(after))
	}
	check("after compaction and retention")

	// Files of another history, beyond staging's last transaction.
	rc, err := st.client.OpenLTXFile(ctx, after[len(after)-1].Level, after[len(after)-1].MinTXID, after[len(after)-1].MaxTXID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	far := filepath.Join(remote, "ltx", "0", ltx.FormatFilename(1000, 1000))
	if err := os.WriteFile(far, b, 0o600); err != nil {
		t.Fatal(err)
	}
	m.known = nil // as after a restart
	write(1)
	check("with another history's file")
}

func names(fs []*ltx.FileInfo) []string {
	var out []string
	for _, f := range fs {
		out = append(out, filepath.Join(string(rune('0'+f.Level)), ltx.FormatFilename(f.MinTXID, f.MaxTXID)))
	}
	return out
}
