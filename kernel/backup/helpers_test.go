package backup_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/backup"
	"github.com/fazt-sh/fazt/kernel/kerneltest"
	"github.com/fazt-sh/fazt/kernel/vfs"
	"github.com/fazt-sh/fazt/projections"
)

// node is a real kernel with the vfs and backup services, and an event
// type of its own for the workload.
type node struct {
	k     *kernel.Kernel
	files *vfs.Service
	bk    *backup.Service
}

const noteType = "notes.added"

func startNode(tb testing.TB, dir string, cfg backup.Config, tune ...func(*kernel.Kernel)) *node {
	tb.Helper()
	n := &node{k: kernel.New(dir)}
	n.k.Addr, n.k.Logger = "127.0.0.1:0", slog.New(slog.DiscardHandler)
	for _, f := range tune {
		f(n.k)
	}
	var err error
	if n.files, err = vfs.Register(n.k, vfs.Config{}); err != nil {
		tb.Fatal(err)
	}
	if err := n.k.RegisterEvent(noteType, 1, []byte(`{"type":"object"}`)); err != nil {
		tb.Fatal(err)
	}
	if n.bk, err = backup.Register(n.k, cfg); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n.k.Open(ctx); err != nil {
		tb.Fatal(err)
	}
	if err := n.bk.Start(ctx); err != nil {
		n.k.Close(ctx)
		tb.Fatal(err)
	}
	tb.Cleanup(func() { n.stop(tb) })
	return n
}

func (n *node) stop(tb testing.TB) {
	if n.k == nil {
		return
	}
	ctx := context.Background()
	if err := n.bk.Close(ctx); err != nil {
		tb.Errorf("close backup: %v", err)
	}
	if err := n.k.Close(ctx); err != nil {
		tb.Errorf("close kernel: %v", err)
	}
	n.k = nil
}

func (n *node) tail(tb testing.TB) uint64 {
	tb.Helper()
	seq, err := n.k.Log().LastSeq(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return seq
}

// notes appends count notes, some two to an append.
func (n *node) notes(tb testing.TB, count int) {
	tb.Helper()
	for i := 0; i < count; i++ {
		evs := []eventlog.Event{{Stream: fmt.Sprintf("notes.%d", i%7), Type: noteType, Data: json.RawMessage(fmt.Sprintf(`{"i":%d,"text":"note %d"}`, i, i))}}
		if i%10 == 0 {
			evs = append(evs, eventlog.Event{Stream: "notes.pairs", Type: noteType, Data: json.RawMessage(`{"pair":true}`)})
		}
		if _, err := n.k.Append(context.Background(), evs); err != nil {
			tb.Fatal(err)
		}
	}
}

// deploy makes files live on site, and returns the log's tail after.
func (n *node) deploy(tb testing.TB, site string, files map[string]string) uint64 {
	tb.Helper()
	ctx := context.Background()
	m := vfs.Manifest{Files: map[string]vfs.File{}}
	for p, c := range files {
		h := vfs.Hash([]byte(c))
		if err := n.files.PutBlob(ctx, h, strings.NewReader(c)); err != nil {
			tb.Fatal(err)
		}
		m.Files[p] = vfs.File{SHA256: h, Size: int64(len(c))}
	}
	if _, err := n.files.Deploy(ctx, site, m); err != nil {
		tb.Fatal(err)
	}
	return n.tail(tb)
}

// get serves path of site.
func (n *node) get(tb testing.TB, site, path string) (int, string) {
	tb.Helper()
	rec := httptest.NewRecorder()
	n.files.SiteHandler(site).ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

// waitCopied waits until every replica holds seq.
func waitCopied(tb testing.TB, n *node, seq uint64) backup.Status {
	tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := n.bk.Status(context.Background())
		if err != nil {
			tb.Fatal(err)
		}
		ok := st.ArchivedSeq >= seq
		for _, r := range st.Replicas {
			ok = ok && r.CopiedSeq >= seq
		}
		if ok {
			return st
		}
		if time.Now().After(deadline) {
			tb.Fatalf("replicas did not reach %d: %+v", seq, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tablesHash hashes every table of a projection, read when it has
// folded the log up to seq.
func tablesHash(tb testing.TB, k *kernel.Kernel, name string, seq uint64) string {
	tb.Helper()
	h := sha256.New()
	_, err := k.Projections().Read(context.Background(), name, projections.ReadOptions{MinSeq: seq, MaxWait: time.Minute}, func(ctx context.Context, tx *sql.Tx) error {
		return kerneltest.HashTables(ctx, tx, h)
	})
	if err != nil {
		tb.Fatalf("hash projection %s: %v", name, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
