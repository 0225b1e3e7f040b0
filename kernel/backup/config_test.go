package backup_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/backup"
	"github.com/fazt-sh/fazt/kernel/kerneltest"
)

// The committed ledger holds the service's events: run
// `go run ./cmd/fazt schema lock` after adding one.
func TestLedgerHoldsTheService(t *testing.T) {
	kerneltest.CheckLedger(t, backup.Category, func(k *kernel.Kernel) error {
		_, err := backup.Register(k, backup.Config{})
		return err
	})
}

// TestReplicaByEvent: a node without replicas is told by an event to
// back up: it starts copying without a restart, keeps doing so after
// one, and stops when the replica is removed by another event.
func TestReplicaByEvent(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	rep := filepath.Join(t.TempDir(), "replica")
	n := startNode(t, dir, backup.Config{})
	n.notes(t, 20)
	if st, _ := n.bk.Status(ctx); st.Enabled {
		t.Fatalf("a node without replicas: %+v", st)
	}
	if _, err := n.bk.AddReplica(ctx, rep); err != nil {
		t.Fatal(err)
	}
	st := waitCopied(t, n, n.tail(t))
	if len(st.Replicas) != 1 || st.Replicas[0].URL != rep {
		t.Fatalf("after the event: %+v", st)
	}
	// Refusals: twice the same, a secret in the URL, an unknown scheme,
	// removing one that is not there. Nothing is written.
	tail := n.tail(t)
	for _, u := range []string{rep, "s3://b/p?secret-access-key=x", "ftp://x/y"} {
		if _, err := n.bk.AddReplica(ctx, u); !errors.Is(err, kernel.ErrRefused) && !errors.Is(err, eventlog.ErrInvalid) {
			t.Errorf("add %s: %v, want a refusal", u, err)
		}
	}
	if _, err := n.bk.RemoveReplica(ctx, "/elsewhere"); !errors.Is(err, kernel.ErrRefused) {
		t.Errorf("remove an unknown replica: %v", err)
	}
	if n.tail(t) != tail {
		t.Errorf("refusals wrote events")
	}
	n.stop(t)

	// A restart keeps it (it is in the log) and catches up.
	n = startNode(t, dir, backup.Config{})
	n.notes(t, 5)
	waitCopied(t, n, n.tail(t))
	if _, err := n.bk.RemoveReplica(ctx, rep); err != nil {
		t.Fatal(err)
	}
	for {
		st, err := n.bk.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Enabled {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	res, err := backup.Restore(ctx, backup.RestoreOptions{From: rep, Data: t.TempDir()})
	if err != nil || res.LastSeq == 0 {
		t.Fatalf("restore from the replica added by an event: %+v %v", res, err)
	}
}

// TestArchiveOfAnotherLog: an archive that is not a prefix of the log
// (another node's, a data directory started afresh) is never appended
// to: the error says to move it away, and appends go on.
func TestArchiveOfAnotherLog(t *testing.T) {
	ctx := context.Background()
	archive := filepath.Join(t.TempDir(), "archive.db")
	a := startNode(t, t.TempDir(), backup.Config{Path: archive, Replicas: []string{filepath.Join(t.TempDir(), "a")}})
	a.notes(t, 30)
	waitCopied(t, a, a.tail(t))
	a.stop(t)
	before, err := backup.Summarize(ctx, archive, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := startNode(t, t.TempDir(), backup.Config{Path: archive, Replicas: []string{filepath.Join(t.TempDir(), "b")}, ShutdownTimeout: 300 * time.Millisecond})
	b.notes(t, 40) // more events than the archive holds: only the content tells
	for {
		st, err := b.bk.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.LastError != "" {
			if !strings.Contains(st.LastError, "belongs to another log") || !strings.Contains(st.LastError, "move it away") {
				t.Errorf("the error: %s", st.LastError)
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := b.bk.Close(ctx); err == nil {
		t.Error("close with an archive of another log: no error, want the events not archived")
	}
	if err := b.k.Close(ctx); err != nil {
		t.Error(err)
	}
	b.k = nil
	after, err := backup.Summarize(ctx, archive, 0)
	if err != nil || after != before {
		t.Errorf("the other log's archive changed: %+v, was %+v (%v)", after, before, err)
	}
}
