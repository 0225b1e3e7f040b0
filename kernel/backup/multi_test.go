package backup_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel/backup"
)

// TestReplicasShareOneLitestream: two replicas (a folder and S3) under
// a sustained workload that passes Litestream's checkpoint thresholds
// (lowered here) many times. The archive's WAL stays bounded (its
// checkpoints restart it), no replica receives a full copy of the
// database after the first, and both replicas restore to the log's
// events: the folder with the stock litestream CLI when it is
// installed, S3 with the library.
func TestReplicasShareOneLitestream(t *testing.T) {
	const minPages, truncatePages = 64, 512 // 256 KiB, 2 MiB
	t.Cleanup(backup.SetCheckpointPages(minPages, truncatePages))
	ctx := context.Background()
	s3url := fakeS3(t, "backups", "multi")
	folder := filepath.Join(t.TempDir(), "replica")
	n := startNode(t, t.TempDir(), backup.Config{Replicas: []string{folder, s3url}})
	n.deploy(t, "blog", map[string]string{"index.html": strings.Repeat("a blob that makes the database larger than one append\n", 8000)})
	wal := n.bk.ArchivePath() + "-wal"
	var maxWAL int64
	body := strings.Repeat("x", 6000)
	for r := range 24 {
		evs := make([]eventlog.Event, 20)
		for i := range evs {
			evs[i] = eventlog.Event{Stream: fmt.Sprintf("bulk.%d", i%5), Type: noteType, Data: json.RawMessage(fmt.Sprintf(`{"r":%d,"i":%d,"pad":%q}`, r, i, body))}
		}
		if _, err := n.k.Append(ctx, evs); err != nil {
			t.Fatal(err)
		}
		waitCopied(t, n, n.tail(t))
		if fi, err := os.Stat(wal); err == nil {
			maxWAL = max(maxWAL, fi.Size())
		}
	}
	tail := n.tail(t)
	t.Logf("%d events; the archive's WAL reached %d bytes", tail, maxWAL)
	want, err := backup.HashLog(ctx, n.k.Log(), tail)
	if err != nil {
		t.Fatal(err)
	}
	// 24 rounds of 120 KB pass the low threshold about a dozen times,
	// and the truncating one: a WAL that is never restarted grows past
	// the latter.
	if limit := int64(truncatePages) * 4096; maxWAL >= limit {
		t.Errorf("the archive's WAL reached %d bytes, the truncating checkpoint's threshold is %d: checkpoints do not restart it", maxWAL, limit)
	}
	if full := fullCopies(t, filepath.Join(folder, "ltx", "0")); full > 0 {
		t.Errorf("the folder replica received %d full copies of the database after its first file", full)
	}
	n.stop(t)

	got, err := restoredHash(ctx, t, s3url, false)
	if err != nil || got != want {
		t.Errorf("S3 replica restores to %s (%v), want %s", got, err, want)
	}
	got, err = restoredHash(ctx, t, folder, true)
	if err != nil || got != want {
		t.Errorf("folder replica restores to %s (%v), want %s", got, err, want)
	}
}

// restoredHash restores a replica's archive and hashes its events:
// with the stock litestream CLI when stock is set and it is installed,
// else with the library.
func restoredHash(ctx context.Context, t *testing.T, from string, stock bool) (string, error) {
	out := filepath.Join(t.TempDir(), "archive.db")
	ls, lerr := exec.LookPath("litestream")
	switch {
	case stock && lerr == nil:
		if b, err := exec.Command(ls, "restore", "-o", out, "file://"+filepath.ToSlash(from)).CombinedOutput(); err != nil {
			return "", fmt.Errorf("litestream restore: %v: %s", err, b)
		}
	default:
		if stock {
			t.Log("litestream CLI not installed: the folder replica is restored with the library")
		}
		if err := backup.FetchArchive(ctx, from, out, time.Time{}); err != nil {
			return "", err
		}
	}
	sum, err := backup.Summarize(ctx, out, 0)
	return sum.Hash, err
}

// fullCopies counts the LTX files of a level folder, other than one
// starting at the first transaction, that hold every page of the
// database: a replica that is sent the whole database again.
func fullCopies(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	full := 0
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		dec := ltx.NewDecoder(bytes.NewReader(b))
		if err := dec.DecodeHeader(); err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		h := dec.Header()
		data := make([]byte, h.PageSize)
		for {
			var ph ltx.PageHeader
			if err := dec.DecodePage(&ph, data); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", e.Name(), err)
			}
		}
		if h.MinTXID > 1 && h.Commit > 16 && dec.PageN() >= int(h.Commit) {
			full++
		}
	}
	return full
}
