package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/kernel"
)

func TestDoctor(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	out, _, err := fazt(t, nil, "", "doctor", "--data", missing)
	if err == nil || !strings.Contains(out, "fail  data directory") || !strings.Contains(out, "fix: start the server once") {
		t.Fatalf("doctor on a missing directory: %v\n%s", err, out)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Fatal("doctor created the directory it checks")
	}

	dir := t.TempDir()
	os.Chmod(dir, 0o700)
	s := startServer(t, dir)
	s.appendJSON(t, `{"events":[{"stream":"orders.1","type":"orders.created","data":{}}]}`)
	out, _, err = fazt(t, nil, "", "doctor", "--data", dir)
	if err != nil || !strings.Contains(out, "ok  server") || !strings.Contains(out, "running at "+s.addr) ||
		!strings.Contains(out, "1 events") || !strings.Contains(out, "projection orders_total") {
		t.Fatalf("doctor with a running server: %v\n%s", err, out)
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	// Without a server, doctor opens the directory itself.
	out, _, err = fazt(t, nil, "", "doctor", "--data", dir, "--json")
	if err != nil {
		t.Fatalf("doctor offline: %v\n%s", err, out)
	}
	var res struct{ Checks []kernel.Check }
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, c := range res.Checks {
		seen[c.Name] = c.Status + " " + c.Detail
	}
	if !strings.HasPrefix(seen["server"], "ok not running") || !strings.HasPrefix(seen["event stream FAZT_EVENTS"], "ok 1 events") ||
		!strings.HasPrefix(seen["projection orders_total"], "ok") {
		t.Fatalf("doctor offline checks: %v", seen)
	}
	// A token others can read is a failure with a fix.
	os.Chmod(filepath.Join(dir, kernel.TokenFile), 0o644)
	out, _, err = fazt(t, nil, "", "doctor", "--data", dir)
	if err == nil || !strings.Contains(out, "fail  API token") || !strings.Contains(out, "fix: chmod 600") {
		t.Fatalf("doctor with a readable token: %v\n%s", err, out)
	}
}
