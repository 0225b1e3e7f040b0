package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A damaged serve.json is reported as such, with the decoder's error
// kept, or what is missing named.
func TestReadStateDamaged(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"addr":`)
	_, err := readState(dir)
	var syntax *json.SyntaxError
	if !errors.As(err, &syntax) || !strings.Contains(err.Error(), "is damaged; delete it") {
		t.Fatalf("truncated serve.json: %v, want damaged, wrapping a *json.SyntaxError", err)
	}
	write(`{"pid":42}`)
	if _, err := readState(dir); err == nil || !strings.Contains(err.Error(), "is damaged (no address); delete it") || strings.Contains(err.Error(), "nil") {
		t.Fatalf("serve.json without an address: %v", err)
	}
}
