package backup_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel/backup"
	"github.com/fazt-sh/fazt/kernel/vfs"
)

// seeded returns size bytes of a seeded random stream.
func seeded(seed byte, size int64) io.Reader {
	var s [32]byte
	s[0] = seed
	return io.LimitReader(rand.NewChaCha8(s), size)
}

// putObject stores what mk reads into the vfs bucket under its SHA-256,
// streamed, and returns the name.
func putObject(tb testing.TB, n *node, mk func() io.Reader) string {
	tb.Helper()
	ctx := context.Background()
	h := sha256.New()
	io.Copy(h, mk())
	name := hex.EncodeToString(h.Sum(nil))
	store, err := n.k.Log().ObjectStore(ctx, vfs.Bucket)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := store.Put(ctx, jetstream.ObjectMeta{Name: name}, mk()); err != nil {
		tb.Fatal(err)
	}
	return name
}

// checkObjects reads the named objects back from the vfs bucket of a
// restored directory, streamed, and checks their SHA-256.
func checkObjects(tb testing.TB, dir string, names ...string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l := eventlog.New(dir)
	if err := l.Open(ctx); err != nil {
		tb.Fatal(err)
	}
	defer l.Close(context.Background())
	st, err := l.ObjectStore(ctx, vfs.Bucket)
	if err != nil {
		tb.Fatal(err)
	}
	for _, want := range names {
		obj, err := st.Get(ctx, want)
		if err != nil {
			tb.Fatalf("restored blob %s: %v", want, err)
		}
		h := sha256.New()
		_, err = io.Copy(h, obj)
		obj.Close()
		if got := hex.EncodeToString(h.Sum(nil)); err != nil || got != want {
			tb.Errorf("restored blob %s reads as %s (%v)", want, got, err)
		}
	}
}

// blobLayout is how the archive holds a blob: its size, the bytes in
// blobs.data, its chunk rows, and the hash of the chunks in order (what
// the package doc tells an operator to join).
func blobLayout(tb testing.TB, archive, name string) (size, inline, chunks int64, joined string) {
	tb.Helper()
	db, err := sql.Open("sqlite", "file:"+archive+"?mode=ro")
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow(`SELECT size, length(data), (SELECT COUNT(*) FROM blob_chunks c WHERE c.bucket = b.bucket AND c.name = b.name) FROM blobs b WHERE bucket = ? AND name = ?`,
		vfs.Bucket, name).Scan(&size, &inline, &chunks); err != nil {
		tb.Fatal(err)
	}
	rows, err := db.Query(`SELECT data FROM blob_chunks WHERE bucket = ? AND name = ? ORDER BY n`, vfs.Bucket, name)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	h := sha256.New()
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			tb.Fatal(err)
		}
		h.Write(b)
	}
	return size, inline, chunks, hex.EncodeToString(h.Sum(nil))
}

// TestBlobChunks: a blob over ChunkBytes is archived as chunk rows (the
// last one short) that join into it, a small one stays whole, both
// restore byte-exact; and an archive that holds a large blob whole, as
// archives did before blob_chunks, still restores.
func TestBlobChunks(t *testing.T) {
	ctx := context.Background()
	const size = 2*backup.ChunkBytes + 12345
	rep := filepath.Join(t.TempDir(), "replica")
	n := startNode(t, t.TempDir(), backup.Config{Replicas: []string{rep}})
	big := putObject(t, n, func() io.Reader { return seeded(1, size) })
	small := putObject(t, n, func() io.Reader { return seeded(2, 5000) })
	n.notes(t, 3) // the archive copies the blobs before these events
	waitCopied(t, n, n.tail(t))
	n.stop(t)
	archive := n.bk.ArchivePath()
	if sz, inline, chunks, joined := blobLayout(t, archive, big); sz != size || inline != 0 || chunks != 3 || joined != big {
		t.Errorf("large blob archived as size %d, %d bytes inline, %d chunks joining to %s; want %d, 0, 3, %s", sz, inline, chunks, joined, size, big)
	}
	if sz, inline, chunks, _ := blobLayout(t, archive, small); sz != 5000 || inline != 5000 || chunks != 0 {
		t.Errorf("small blob archived as size %d, %d bytes inline, %d chunks", sz, inline, chunks)
	}
	// The package doc's sqlite3 command writes the chunked blob out whole.
	if sq, err := exec.LookPath("sqlite3"); err == nil {
		out := filepath.Join(t.TempDir(), big)
		q := fmt.Sprintf(`SELECT writefile('%s', (SELECT group_concat(data, x'') FROM (SELECT data FROM blob_chunks WHERE name = '%s' ORDER BY n)))`, out, big)
		if b, err := exec.Command(sq, archive, q).CombinedOutput(); err != nil {
			t.Errorf("sqlite3: %v\n%s", err, b)
		}
		b, err := os.ReadFile(out)
		if sum := sha256.Sum256(b); err != nil || hex.EncodeToString(sum[:]) != big {
			t.Errorf("sqlite3 wrote the chunked blob out as %d bytes hashing %x (%v)", len(b), sum, err)
		}
	}
	dir := t.TempDir()
	res, err := backup.Restore(ctx, backup.RestoreOptions{From: rep, Data: dir})
	if err != nil || res.Blobs != 2 {
		t.Fatalf("restore: %+v %v", res, err)
	}
	checkObjects(t, dir, big, small)

	// The same archive as an older binary wrote it: the large blob whole.
	db, err := sql.Open("sqlite", "file:"+archive)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var whole []byte
	rows, err := db.Query(`SELECT data FROM blob_chunks WHERE name = ? ORDER BY n`, big)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var b []byte
		rows.Scan(&b)
		whole = append(whole, b...)
	}
	rows.Close()
	if _, err := db.Exec(`UPDATE blobs SET data = ? WHERE name = ?`, whole, big); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DROP TABLE blob_chunks`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	dir = t.TempDir()
	if res, err := backup.Restore(ctx, backup.RestoreOptions{From: archive, Data: dir}); err != nil || res.Blobs != 2 {
		t.Fatalf("restore of an archive with blobs whole: %+v %v", res, err)
	}
	checkObjects(t, dir, big, small)
}

// TestDamagedBlobChunks: a restore refuses an archive whose chunk rows
// of a blob have a gap, or hold more or fewer bytes than its size, with
// ErrInvalid saying the archive is damaged.
func TestDamagedBlobChunks(t *testing.T) {
	ctx := context.Background()
	rep := filepath.Join(t.TempDir(), "replica")
	n := startNode(t, t.TempDir(), backup.Config{Replicas: []string{rep}})
	big := putObject(t, n, func() io.Reader { return seeded(3, 2*backup.ChunkBytes+77) })
	n.notes(t, 3)
	waitCopied(t, n, n.tail(t))
	n.stop(t)
	orig, err := os.ReadFile(n.bk.ArchivePath())
	if err != nil {
		t.Fatal(err)
	}
	for name, q := range map[string]string{
		"gap":   `DELETE FROM blob_chunks WHERE n = 1`,
		"more":  `UPDATE blob_chunks SET data = data || x'00' WHERE n = 2`,
		"fewer": `UPDATE blob_chunks SET data = substr(data, 2) WHERE n = 2`,
	} {
		t.Run(name, func(t *testing.T) {
			archive := filepath.Join(t.TempDir(), "archive.db")
			if err := os.WriteFile(archive, orig, 0o600); err != nil {
				t.Fatal(err)
			}
			// The checkpointed archive: copy its WAL too, if any.
			if w, err := os.ReadFile(n.bk.ArchivePath() + "-wal"); err == nil {
				if err := os.WriteFile(archive+"-wal", w, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			db, err := sql.Open("sqlite", "file:"+archive)
			if err != nil {
				t.Fatal(err)
			}
			res, err := db.Exec(q+` AND name = ?`, big)
			if err != nil {
				t.Fatal(err)
			}
			if k, _ := res.RowsAffected(); k != 1 {
				t.Fatalf("%s changed %d rows", q, k)
			}
			db.Close()
			_, err = backup.Restore(ctx, backup.RestoreOptions{From: archive, Data: t.TempDir()})
			if !errors.Is(err, eventlog.ErrInvalid) || !strings.Contains(err.Error(), "the archive is damaged") {
				t.Fatalf("restore of an archive with chunks %s: %v, want ErrInvalid: damaged", name, err)
			}
		})
	}
}
