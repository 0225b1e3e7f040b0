package vfs

import (
	"context"
	"testing"
)

// After a restart the live deploy is served from the projection's file,
// and the blobs are still stored.
func TestRestartKeepsSitesAndBlobs(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir, Config{})
	files := map[string]string{"index.html": "home", "big.txt": string(make([]byte, ChunkBytes+5))}
	m := e.manifest(t, files)
	id := e.deploy(t, "blog", m)
	e.close(t)

	e = start(t, dir, Config{})
	ctx := context.Background()
	if _, body := e.get(t, "GET", "/", nil); body != "home" {
		t.Fatalf("after restart: %q", body)
	}
	if _, body := e.get(t, "GET", "/big.txt", nil); body != files["big.txt"] {
		t.Fatalf("after restart: big.txt of %d bytes", len(body))
	}
	var hashes []string
	for _, f := range m.Files {
		hashes = append(hashes, f.SHA256)
	}
	if miss, err := e.s.Missing(ctx, hashes); err != nil || len(miss) != 0 {
		t.Fatalf("Missing after restart: %v, %v", miss, err)
	}
	// Deploying the same files again uploads nothing and records a new
	// deploy.
	id2, err := e.s.Deploy(ctx, "blog", m)
	if err != nil || id2 == id {
		t.Fatalf("redeploy: %q, %v", id2, err)
	}
}
