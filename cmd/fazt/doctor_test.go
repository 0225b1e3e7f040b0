package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
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
	// Without a server, doctor reads the directory and says what only a
	// server can check (TestDoctorOnlyReads checks that it writes nothing).
	checks := doctorJSON(t, dir)
	if !strings.HasPrefix(checks["server"], "ok not running") || !strings.HasPrefix(checks["event log"], "ok ") ||
		!strings.Contains(checks["read models"], "orders_total") ||
		!strings.HasPrefix(checks["event stream, schemas, projections, reactors"], "skipped not checked") {
		t.Fatalf("doctor offline checks: %v", checks)
	}
	// A token others can read is a failure with a fix.
	os.Chmod(filepath.Join(dir, kernel.TokenFile), 0o644)
	out, _, err = fazt(t, nil, "", "doctor", "--data", dir)
	if err == nil || !regexp.MustCompile(`(?m)^fail +API token`).MatchString(out) || !strings.Contains(out, "fix: chmod 600") {
		t.Fatalf("doctor with a readable token: %v\n%s", err, out)
	}
}

// doctorJSON runs `fazt doctor --data dir --json` and returns each
// check's status and detail by name.
func doctorJSON(t *testing.T, dir string) map[string]string {
	t.Helper()
	out, _, err := fazt(t, nil, "", "doctor", "--data", dir, "--json")
	if err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, out)
	}
	var res struct{ Checks []kernel.Check }
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, c := range res.Checks {
		seen[c.Name] = c.Status + " " + c.Detail
	}
	return seen
}

// treeState describes every entry under dir: name, mode, size,
// modification time and, for a file, a hash of its content.
func treeState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v %d %d", info.Mode(), info.Size(), info.ModTime().UnixNano())
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		out[strings.TrimPrefix(p, dir)] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameTree fails when the entries under dir are not those of before.
func sameTree(t *testing.T, dir string, before map[string]string) {
	t.Helper()
	after := treeState(t, dir)
	for name, b := range before {
		if a, ok := after[name]; !ok {
			t.Errorf("doctor removed %s%s", dir, name)
		} else if a != b {
			t.Errorf("doctor changed %s%s: %s, was %s", dir, name, a, b)
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("doctor created %s%s", dir, name)
		}
	}
}

// Without a server, doctor only reads: neither an empty directory nor
// one a stopped server left changes, and it says what it could not
// check and why.
func TestDoctorOnlyReads(t *testing.T) {
	empty := t.TempDir()
	os.Chmod(empty, 0o700)
	before := treeState(t, empty)
	out, _, err := fazt(t, nil, "", "doctor", "--data", empty)
	sameTree(t, empty, before)
	for _, want := range []string{
		`(?m)^ok +server +not running; checked the directory without opening it$`,
		`(?m)^ok +data directory +` + regexp.QuoteMeta(empty) + `$`,
		`(?m)^warn +API token +no token file yet$`,
		`(?m)^warn +event log +` + regexp.QuoteMeta(filepath.Join(empty, "jetstream")) + ` does not exist yet$`,
		`(?m)^warn +read models +` + regexp.QuoteMeta(filepath.Join(empty, "projections")) + ` does not exist yet$`,
		`(?m)^ok +SQLite +version `,
		`(?m)^skipped +event stream, schemas, projections, reactors +not checked: no server is running, and opening the log would write to the directory$`,
		`fix: start the server \(` + "`" + `fazt serve --data ` + regexp.QuoteMeta(empty) + "`" + `\) and run ` + "`fazt doctor`" + ` again`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("doctor on an empty directory: no line like %s in\n%s", want, out)
		}
	}
	if err != nil {
		t.Errorf("doctor on an empty directory failed (warnings and skipped checks do not fail): %v", err)
	}

	// A directory a server wrote to and left, with the serve.json of a
	// server that was killed.
	dir := t.TempDir()
	os.Chmod(dir, 0o700)
	s := startServer(t, dir)
	s.appendJSON(t, `{"events":[{"stream":"orders.1","type":"orders.created","data":{}}]}`)
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(`{"addr":"http://127.0.0.1:1","pid":4242}`), 0o600); err != nil {
		t.Fatal(err)
	}
	before = treeState(t, dir)
	checks := doctorJSON(t, dir)
	out, _, err = fazt(t, nil, "", "doctor", "--data", dir)
	sameTree(t, dir, before)
	if err != nil {
		t.Errorf("doctor on a stopped server's directory: %v\n%s", err, out)
	}
	eventLog := regexp.MustCompile(`^ok ` + regexp.QuoteMeta(filepath.Join(dir, "jetstream")) + `: [1-9][0-9]* files, [0-9.]+ [KMG]?i?B$`)
	if !strings.Contains(checks["server"], "serve.json names http://127.0.0.1:1 (pid 4242), which does not answer") ||
		!strings.HasPrefix(checks["API token"], "ok ") || !eventLog.MatchString(checks["event log"]) ||
		!strings.Contains(checks["read models"], "orders_total") ||
		!strings.HasPrefix(checks["event stream, schemas, projections, reactors"], "skipped ") {
		t.Errorf("doctor on a stopped server's directory: %v", checks)
	}
}
