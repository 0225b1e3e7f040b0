package main

import (
	"errors"
	"strings"
	"testing"
)

// TestServeStorageFlags: --store-limit reaches the log (an append past
// it fails with insufficient_storage, the CLI says so), and bad sizes
// are usage errors.
func TestServeStorageFlags(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"serve", "--data", dir, "--store-limit", "lots"},
		{"serve", "--data", dir, "--disk-reserve", "-5MiB"},
	} {
		_, _, err := fazt(t, nil, "", args...)
		var u *usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), "is not a size") {
			t.Errorf("%q: %v; want a usage error naming the size", args, err)
		}
	}

	s := startServer(t, dir, "--store-limit", "256KiB", "--disk-reserve", "0")
	if _, _, err := fazt(t, nil, `{"type":"object"}`, "schema", "register", "big.put", "--file", "-", "--data-dir", s.dir); err != nil {
		t.Fatal(err)
	}
	data := `{"pad":"` + strings.Repeat("x", 100<<10) + `"}`
	var err error
	for i := 0; i < 10 && err == nil; i++ {
		_, _, err = fazt(t, nil, "", "events", "append", "--stream", "big.1", "--type", "big.put", "--data", data, "--data-dir", s.dir)
	}
	var se *serverError
	if !errors.As(err, &se) || se.Code != "insufficient_storage" || !strings.Contains(err.Error(), "256 KiB") {
		t.Fatalf("append past --store-limit 256KiB: %v", err)
	}
}
