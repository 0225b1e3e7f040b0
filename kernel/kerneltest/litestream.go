package kerneltest

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/benbjohnson/litestream"
	_ "github.com/benbjohnson/litestream/file" // file:// replicas
)

// ReplicateFile copies the SQLite file at path to the Litestream replica
// URL u once, with the Litestream library, as the backup service
// replicates a projection generation: tests make replicas with it
// without running the service.
func ReplicateFile(tb testing.TB, path, u string) {
	tb.Helper()
	ctx := context.Background()
	client, err := litestream.NewReplicaClientFromURL(u)
	if err != nil {
		tb.Fatal(err)
	}
	db := litestream.NewDB(path)
	db.SetMetaPath(filepath.Join(tb.TempDir(), "litestream"))
	db.MonitorInterval = 0
	r := litestream.NewReplicaWithClient(db, client)
	r.MonitorEnabled = false
	db.Replica = r
	store := litestream.NewStore([]*litestream.DB{db}, litestream.CompactionLevels{{Level: 0}, {Level: 1, Interval: 30 * time.Second}})
	store.Logger = slog.New(slog.DiscardHandler)
	db.SetLogger(store.Logger)
	if err := store.Open(ctx); err != nil {
		tb.Fatal(err)
	}
	if err := db.Sync(ctx); err != nil {
		tb.Fatal(err)
	}
	if err := r.Sync(ctx); err != nil {
		tb.Fatal(err)
	}
	if err := store.Close(ctx); err != nil {
		tb.Fatal(err)
	}
}
