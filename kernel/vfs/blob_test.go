package vfs

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fazt-sh/fazt/eventlog"
)

// PutBlob checks the content against its hash; a mismatch stores
// nothing. Missing lists what is not stored.
func TestPutBlobVerifiesHash(t *testing.T) {
	e := start(t, t.TempDir(), Config{})
	ctx := context.Background()
	good := "hello, world\n"
	h := Hash([]byte(good))
	other := Hash([]byte("other"))

	err := e.s.PutBlob(ctx, h, strings.NewReader("tampered"))
	if !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("put with a hash mismatch: %v, want ErrInvalid", err)
	}
	if miss, err := e.s.Missing(ctx, []string{h, other, h}); err != nil || !slices.Equal(miss, []string{h, other}) {
		t.Fatalf("Missing after a refused put: %v, %v; want both, once each", miss, err)
	}
	if err := e.s.PutBlob(ctx, h, strings.NewReader(good)); err != nil {
		t.Fatal(err)
	}
	if miss, err := e.s.Missing(ctx, []string{h, other}); err != nil || !slices.Equal(miss, []string{other}) {
		t.Fatalf("Missing: %v, %v; want [other]", miss, err)
	}
	// A blob is written once: putting it again reads nothing and changes
	// nothing.
	if err := e.s.PutBlob(ctx, h, strings.NewReader("not even read")); err != nil {
		t.Fatalf("second put of a stored blob: %v", err)
	}
	store, err := e.s.blobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := store.GetString(ctx, h); err != nil || got != good {
		t.Fatalf("stored blob: %q, %v", got, err)
	}
	for _, bad := range []string{"", "abc", strings.ToUpper(h), h + "0", strings.Repeat("g", 64)} {
		if err := e.s.PutBlob(ctx, bad, strings.NewReader(good)); !errors.Is(err, eventlog.ErrInvalid) {
			t.Errorf("PutBlob(%q): %v, want ErrInvalid", bad, err)
		}
		if _, err := e.s.Missing(ctx, []string{bad}); !errors.Is(err, eventlog.ErrInvalid) {
			t.Errorf("Missing(%q): %v, want ErrInvalid", bad, err)
		}
	}
}

// Content over MaxBlobBytes is refused (413 through the kernel) and not
// stored; content over the spool's memory goes through a file.
func TestPutBlobSizeBound(t *testing.T) {
	e := start(t, t.TempDir(), Config{MaxBlobBytes: 3 << 20})
	ctx := context.Background()
	big := bytes.Repeat([]byte("0123456789"), 300<<10) // 3,072,000 bytes: under the limit, over the spool's memory
	h := Hash(big)
	if err := e.s.PutBlob(ctx, h, bytes.NewReader(big)); err != nil {
		t.Fatal(err)
	}
	tooBig := append(bytes.Repeat([]byte("x"), 3<<20), 'y')
	th := Hash(tooBig)
	err := e.s.PutBlob(ctx, th, bytes.NewReader(tooBig))
	var mbe *http.MaxBytesError
	if !errors.Is(err, eventlog.ErrInvalid) || !errors.As(err, &mbe) || mbe.Limit != 3<<20 {
		t.Fatalf("put of a blob over the limit: %v, want ErrInvalid and a MaxBytesError of the limit", err)
	}
	// A tampered large upload is refused too.
	tampered := slices.Clone(big)
	tampered[len(tampered)-1] = '!'
	if err := e.s.PutBlob(ctx, Hash([]byte("x")), bytes.NewReader(tampered)); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("large tampered put: %v", err)
	}
	miss, err := e.s.Missing(ctx, []string{h, th})
	if err != nil || !slices.Equal(miss, []string{th}) {
		t.Fatalf("Missing: %v, %v; want only the refused blob", miss, err)
	}
	store, _ := e.s.blobs(ctx)
	if got, err := store.GetBytes(ctx, h); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("large blob read back: %d bytes, %v", len(got), err)
	}
}

// Concurrent uploads of one blob all succeed and store it once.
func TestPutBlobConcurrentSameHash(t *testing.T) {
	e := start(t, t.TempDir(), Config{})
	ctx := context.Background()
	content := bytes.Repeat([]byte("same"), 100<<10)
	h := Hash(content)
	errs := make(chan error, 8)
	for range 8 {
		go func() { errs <- e.s.PutBlob(ctx, h, bytes.NewReader(content)) }()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	store, _ := e.s.blobs(ctx)
	st, err := store.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// One object: its chunks (128 KiB each) and one meta message.
	if n, want := st.(interface{ StreamInfo() *jetstream.StreamInfo }).StreamInfo().State.Msgs, uint64((len(content)+(128<<10)-1)/(128<<10)+1); n != want {
		t.Fatalf("the bucket holds %d messages, want %d (one copy)", n, want)
	}
}

// Blobs read back whole through their chunks' direct gets: empty, one
// chunk, several chunks of the object store (128 KiB each), also after
// other objects were written between them; a blob not stored is an
// error, not an empty read.
func TestReadBlobChunks(t *testing.T) {
	e := start(t, t.TempDir(), Config{})
	ctx := context.Background()
	contents := []string{"", "x", strings.Repeat("a", 128<<10), string(payload(128<<10 + 1)), string(payload(700 << 10))}
	for _, c := range contents {
		e.put(t, c)
		e.put(t, c+"-neighbour") // interleaves other objects' chunks
	}
	for _, c := range contents {
		b, err := e.s.readBlob(ctx, Hash([]byte(c)))
		if err != nil || !bytes.Equal(b, []byte(c)) {
			t.Fatalf("readBlob of %d bytes: %d bytes, %v", len(c), len(b), err)
		}
	}
	if _, err := e.s.readBlob(ctx, Hash([]byte("never stored"))); err == nil {
		t.Fatal("readBlob of a blob never stored: no error")
	}
}
