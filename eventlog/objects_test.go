package eventlog_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fazt-sh/fazt/eventlog"
)

// openObjectsLog opens a log in a temporary directory, tuned by tune.
func openObjectsLog(t *testing.T, tune func(*eventlog.Log)) *eventlog.Log {
	t.Helper()
	l := eventlog.New(t.TempDir())
	if tune != nil {
		tune(l)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l
}

// A bucket opened on the log keeps what is put, across a restart, and
// SyncObjectStore fsyncs it under strict durability.
func TestObjectStorePutSyncReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := eventlog.New(dir)
	if err := l.Open(ctx); err != nil {
		t.Fatal(err)
	}
	store, err := l.ObjectStore(ctx, "blobs_test")
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: several chunks
	if _, err := store.PutBytes(ctx, "big", big); err != nil {
		t.Fatal(err)
	}
	if err := l.SyncObjectStore("blobs_test"); err != nil {
		t.Fatal(err)
	}
	// The bucket's stream has its blocks where the syncer looks.
	blocks, _ := filepath.Glob(filepath.Join(dir, "jetstream", "*", "streams", "OBJ_blobs_test", "msgs", "*.blk"))
	if len(blocks) == 0 {
		t.Fatal("no message block of the bucket's stream found: SyncObjectStore would sync nothing")
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ObjectStore(ctx, "blobs_test"); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("ObjectStore after Close: %v, want ErrClosed", err)
	}
	l2 := eventlog.New(dir)
	if err := l2.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer l2.Close(ctx)
	store2, err := l2.ObjectStore(ctx, "blobs_test")
	if err != nil {
		t.Fatal(err)
	}
	got, err := store2.GetBytes(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, big) {
		t.Fatalf("read back %d bytes, not what was put", len(got))
	}
}

// A NATS listener client, even of a writable listener, can neither write
// a bucket's stream nor read it.
func TestObjectStoreListenerCannotWrite(t *testing.T) {
	ctx := context.Background()
	l := openObjectsLog(t, func(l *eventlog.Log) { l.Listen, l.ListenWritable = "127.0.0.1:0", true })
	store, err := l.ObjectStore(ctx, "blobs_test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutString(ctx, "a", "kernel's"); err != nil {
		t.Fatal(err)
	}
	if err := l.SyncObjectStore("blobs_test"); err != nil {
		t.Fatalf("sync with a listener: %v", err)
	}
	info := func() uint64 {
		st, err := store.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.(*jetstream.ObjectBucketStatus).StreamInfo().State.Msgs
	}
	before := info()

	nc, err := nats.Connect(l.ClientURL(), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := js.ObjectStore(short, "blobs_test"); err == nil {
		t.Error("a listener client opened the bucket")
	}
	if _, err := js.CreateObjectStore(short, jetstream.ObjectStoreConfig{Bucket: "other"}); err == nil {
		t.Error("a listener client created a bucket")
	}
	// Publishing straight onto the bucket's subjects reaches nothing.
	for _, subj := range []string{"$O.blobs_test.C.x", "$O.blobs_test.M.YQ=="} {
		if _, err := js.Publish(short, subj, []byte("evil")); err == nil {
			t.Errorf("publish to %s was acknowledged", subj)
		}
		_ = nc.Publish(subj, []byte("evil"))
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// A direct get of the bucket's stream is not answered either.
	if _, err := nc.Request("$JS.API.DIRECT.GET.OBJ_blobs_test", []byte(`{"seq":1}`), time.Second); err == nil {
		t.Error("a listener client read the bucket's stream")
	}
	if after := info(); after != before {
		t.Fatalf("the bucket's stream went from %d to %d messages", before, after)
	}
	got, err := store.GetString(ctx, "a")
	if err != nil || got != "kernel's" {
		t.Fatalf("object a: %q, %v", got, err)
	}
}
