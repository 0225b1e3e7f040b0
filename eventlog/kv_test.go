package eventlog_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/fazt-sh/fazt/eventlog"
)

// A key-value bucket opened on the log keeps what is put, across a
// restart, SyncKeyValue fsyncs it under strict durability, and after
// Close the bucket cannot be opened.
func TestKeyValuePutSyncReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := eventlog.New(dir)
	if err := l.Open(ctx); err != nil {
		t.Fatal(err)
	}
	kv, err := l.KeyValue(ctx, "state_test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "certificates.a", []byte("cert")); err != nil {
		t.Fatal(err)
	}
	if err := l.SyncKeyValue("state_test"); err != nil {
		t.Fatal(err)
	}
	// The bucket's stream has its blocks where the syncer looks.
	blocks, _ := filepath.Glob(filepath.Join(dir, "jetstream", "*", "streams", "KV_state_test", "msgs", "*.blk"))
	if len(blocks) == 0 {
		t.Fatal("no message block of the bucket's stream found: SyncKeyValue would sync nothing")
	}
	// The object stores share the connection, and still work beside it.
	if _, err := l.ObjectStore(ctx, "state_test"); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := l.KeyValue(ctx, "state_test"); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("KeyValue after Close: %v, want ErrClosed", err)
	}
	l2 := eventlog.New(dir)
	if err := l2.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer l2.Close(ctx)
	kv2, err := l2.KeyValue(ctx, "state_test")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv2.Get(ctx, "certificates.a")
	if err != nil || string(e.Value()) != "cert" {
		t.Fatalf("read back %v, %v", e, err)
	}
}
