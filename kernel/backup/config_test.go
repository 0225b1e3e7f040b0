package backup_test

import (
	"context"
	"errors"
	"path/filepath"
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
