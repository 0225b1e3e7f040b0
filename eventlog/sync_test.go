package eventlog

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The syncer follows JetStream into new message blocks: after more than a
// block's worth of appends it has moved on, and every event is readable.
func TestBlockSyncerFollowsRollover(t *testing.T) {
	l := New(t.TempDir())
	if err := l.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	ctx := context.Background()
	big, _ := json.Marshal(strings.Repeat("x", 900<<10))
	for i := 0; i < 20; i++ { // about 18 MiB, more than two 8 MiB blocks
		if _, err := l.Append(ctx, []Event{{Stream: "big.1", Type: "big.blob", Data: big}}); err != nil {
			t.Fatal(err)
		}
	}
	if l.syncer == nil || l.syncer.idx < 2 {
		t.Fatalf("syncer did not follow the blocks: %+v", l.syncer)
	}
	evs, err := l.ReadStream(ctx, "big.1", 1, 100)
	if err != nil || len(evs) != 20 {
		t.Fatalf("read back %d events: %v", len(evs), err)
	}
}

// Strict durability needs the stream's message folder: without it the
// error says so and keeps the file system's cause.
func TestBlockSyncerNeedsItsFolder(t *testing.T) {
	dir := t.TempDir()
	if _, err := newBlockSyncer(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "message folder") {
		t.Fatalf("missing folder: %v, want an error wrapping fs.ErrNotExist", err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newBlockSyncer(file); err == nil || !strings.HasSuffix(err.Error(), ": not a directory") {
		t.Fatalf("a file instead of the folder: %v, want an error saying it is not a directory", err)
	}
}
