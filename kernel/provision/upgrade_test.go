package provision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/kerneltest"
)

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}

// Stage writes only the bytes the manifest names, beside the target,
// executable; anything else is refused and leaves nothing behind. Swap
// keeps the previous binary; Restore puts it back and keeps it.
func TestStageSwapRestore(t *testing.T) {
	src, bin := t.TempDir(), t.TempDir()
	target := filepath.Join(bin, "fazt")
	oldBytes, newBytes := []byte("#!/bin/sh\necho old\n"), []byte("#!/bin/sh\necho new\n")
	os.WriteFile(target, oldBytes, 0o755)
	os.WriteFile(filepath.Join(src, "fazt-new"), newBytes, 0o755)
	rel := Release{Source: Source{Location: filepath.Join(src, ManifestName)}}
	good := Binary{File: "fazt-new", Size: int64(len(newBytes)), SHA256: sum(newBytes)}

	for _, tc := range []struct {
		name string
		b    Binary
		want string
	}{
		{"wrong hash", Binary{File: "fazt-new", Size: good.Size, SHA256: sum(oldBytes)}, "the signed manifest says"},
		{"longer than signed", Binary{File: "fazt-new", Size: good.Size - 1, SHA256: good.SHA256}, "truncated or replaced"},
		{"shorter than signed", Binary{File: "fazt-new", Size: good.Size + 1, SHA256: good.SHA256}, "truncated or replaced"},
		{"missing", Binary{File: "fazt-gone", Size: 1, SHA256: good.SHA256}, "which is not there"},
	} {
		if _, err := rel.Stage(context.Background(), tc.b, target); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
		if got := names(t, bin); !slices.Equal(got, []string{"fazt"}) {
			t.Fatalf("%s left %v", tc.name, got)
		}
	}

	staged, err := rel.Stage(context.Background(), good, target)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(staged) != bin {
		t.Fatalf("staged at %s, not beside the target", staged)
	}
	if st, _ := os.Stat(staged); st.Mode().Perm() != 0o755 {
		t.Fatalf("staged mode %v", st.Mode())
	}
	if err := Swap(staged, target); err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if read(target) != string(newBytes) || read(target+PrevSuffix) != string(oldBytes) {
		t.Fatalf("after Swap: %q, prev %q", read(target), read(target+PrevSuffix))
	}
	if got := names(t, bin); !slices.Equal(got, []string{"fazt", "fazt.prev"}) {
		t.Fatalf("after Swap: %v", got)
	}
	// A restore cut short by a kill left its link under construction; the
	// next one removes it.
	os.WriteFile(filepath.Join(bin, ".fazt.keep-123"), oldBytes, 0o755)
	if err := Restore(target); err != nil {
		t.Fatal(err)
	}
	if read(target) != string(oldBytes) || read(target+PrevSuffix) != string(oldBytes) {
		t.Fatalf("after Restore: %q, prev %q", read(target), read(target+PrevSuffix))
	}
	if got := names(t, bin); !slices.Equal(got, []string{"fazt", "fazt.prev"}) {
		t.Fatalf("after Restore: %v", got)
	}
	// Leftovers of an interrupted stage are removed by the next one.
	os.WriteFile(filepath.Join(bin, ".fazt.upgrade-123"), []byte("half"), 0o600)
	staged, err = rel.Stage(context.Background(), good, target)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(staged)
	if got := names(t, bin); !slices.Equal(got, []string{"fazt", "fazt.prev"}) {
		t.Fatalf("leftovers: %v", got)
	}
	if err := Restore(filepath.Join(bin, "other")); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("Restore without a previous binary: %v", err)
	}
}

func TestLock(t *testing.T) {
	dir := t.TempDir()
	unlock, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(dir); !errors.Is(err, eventlog.ErrConflict) {
		t.Fatalf("second lock: %v", err)
	}
	unlock()
	unlock2, err := Lock(dir)
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	unlock2()
}

// The committed ledger holds every declaration of the service: run
// `go run ./cmd/fazt schema lock` after adding one.
func TestLedgerHoldsTheService(t *testing.T) {
	kerneltest.CheckLedger(t, Category, func(k *kernel.Kernel) error {
		_, err := Register(k, Config{Version: "v1.0.0"})
		return err
	})
}
