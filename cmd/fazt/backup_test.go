package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/backup"
	"github.com/fazt-sh/fazt/kernel/kerneltest"
	"github.com/fazt-sh/fazt/projections"
)

// snapshot is what a data directory answers: the hash over its events
// and the hash of every table of every read model.
type snapshot struct {
	tail   uint64
	events string
	tables map[string]string
}

// snapshotOf opens a kernel with the test verticals on dir (no server
// may run there), waits for every read model, and hashes it all.
func snapshotOf(t *testing.T, dir string) snapshot {
	t.Helper()
	ctx := context.Background()
	k := kernel.New(dir)
	k.NoHTTP, k.Logger = true, slog.New(slog.DiscardHandler)
	for _, v := range testVerticals {
		if err := v(k); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer k.Close(ctx)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := k.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	s := snapshot{tables: map[string]string{}}
	var err error
	if s.tail, err = k.Log().LastSeq(ctx); err != nil {
		t.Fatal(err)
	}
	if s.events, err = backup.HashLog(ctx, k.Log(), s.tail); err != nil {
		t.Fatal(err)
	}
	for _, st := range k.Projections().Statuses() {
		h := sha256.New()
		_, err := k.Projections().Read(ctx, st.Name, projections.ReadOptions{MinSeq: s.tail, MaxWait: time.Minute}, func(ctx context.Context, tx *sql.Tx) error {
			return kerneltest.HashTables(ctx, tx, h)
		})
		if err != nil {
			t.Fatalf("read model %s: %v", st.Name, err)
		}
		s.tables[st.Name] = hex.EncodeToString(h.Sum(nil))
	}
	return s
}

func backupStatus(t *testing.T, dir string) backup.Status {
	t.Helper()
	out, errOut, err := fazt(t, nil, "", "backup", "status", "--json", "--data", dir)
	if err != nil {
		t.Fatalf("backup status: %v\n%s", err, errOut)
	}
	var st backup.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("backup status --json: %v\n%s", err, out)
	}
	return st
}

// TestBackupRestoreCLI: the analytics demo and two deploys on a server
// with --backup; fazt backup status and verify; fazt restore into a new
// directory gives the same events and read models, and serves the same
// site; --as-of the first deploy serves the first.
func TestBackupRestoreCLI(t *testing.T) {
	dir := t.TempDir()
	rep := filepath.Join(t.TempDir(), "replica")
	s := startServer(t, dir, "--backup", rep)
	d := []string{"--data", dir}
	if _, errOut, err := fazt(t, nil, "", append([]string{"demo", "--views", "1500", "--days", "3", "--seed", "7"}, d...)...); err != nil {
		t.Fatalf("demo: %v\n%s", err, errOut)
	}
	site := t.TempDir()
	writeTree(t, site, map[string]string{"index.html": "<h1>first</h1>", "css/a.css": strings.Repeat("body{color:red}\n", 500)})
	if _, errOut, err := fazt(t, nil, "", append([]string{"deploy", site, "--app", "hello"}, d...)...); err != nil {
		t.Fatalf("deploy: %v\n%s", err, errOut)
	}
	first := backupStatus(t, dir).LogSeq
	writeTree(t, site, map[string]string{"index.html": "<h1>second</h1>"})
	if _, errOut, err := fazt(t, nil, "", append([]string{"deploy", site, "--app", "hello"}, d...)...); err != nil {
		t.Fatalf("deploy: %v\n%s", err, errOut)
	}
	host := "hello.localhost:" + port(s)
	if code, body := getHost(t, s, host, "/"); code != 200 || body != "<h1>second</h1>" {
		t.Fatalf("original serves %d %q", code, body)
	}
	tail := backupStatus(t, dir).LogSeq
	waitFor(t, "the replica to hold the log", func() bool {
		st := backupStatus(t, dir)
		return len(st.Replicas) == 1 && st.Replicas[0].CopiedSeq >= tail
	})
	out, errOut, err := fazt(t, nil, "", append([]string{"backup", "status"}, d...)...)
	if err != nil || !strings.Contains(out, rep) || !strings.Contains(out, "lag 0 events") {
		t.Errorf("backup status: %v\n%s%s", err, out, errOut)
	}
	out, errOut, err = fazt(t, nil, "", append([]string{"backup", "verify"}, d...)...)
	if err != nil || !strings.Contains(out, "ok: the copy matches the log") {
		t.Errorf("backup verify: %v\n%s%s", err, out, errOut)
	}
	if code, body, _ := s.do(t, "GET", "/metrics", nil, nil); code != 200 ||
		!strings.Contains(body, fmt.Sprintf("fazt_backup_replica_copied_seq{replica=%q} %d", rep, tail)) ||
		!strings.Contains(body, fmt.Sprintf("fazt_backup_replica_lag_events{replica=%q} 0", rep)) ||
		!strings.Contains(body, fmt.Sprintf("fazt_backup_archived_seq %d", tail)) {
		t.Errorf("metrics lack the backup's: %d\n%s", code, grepLines(body, "fazt_backup"))
	}
	out, _, _ = fazt(t, nil, "", append([]string{"doctor"}, d...)...)
	if !regexp.MustCompile(`(?m)^ok +backup replica `+regexp.QuoteMeta(rep)+` +seq \d+, lag 0 events`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^ok +backup archive `).MatchString(out) {
		t.Errorf("doctor does not show the backup:\n%s", out)
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	want := snapshotOf(t, dir)
	if want.tail != tail || len(want.tables) < 2 {
		t.Fatalf("original: %+v", want)
	}

	restored := filepath.Join(t.TempDir(), "restored")
	out, errOut, err = fazt(t, nil, "", "restore", "--from", rep, "--data", restored)
	if err != nil {
		t.Fatalf("restore: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, fmt.Sprintf("restored %d events (up to seq %d)", tail, tail)) || !strings.Contains(out, "events hash "+want.events) {
		t.Errorf("restore output:\n%s", out)
	}
	if !strings.Contains(errOut, "events:") {
		t.Errorf("restore progress:\n%s", errOut)
	}
	got := snapshotOf(t, restored)
	if got.events != want.events || got.tail != want.tail {
		t.Errorf("restored events: %d %s, want %d %s", got.tail, got.events, want.tail, want.events)
	}
	for name, h := range want.tables {
		if got.tables[name] != h {
			t.Errorf("read model %s: table hash %s, want %s", name, got.tables[name], h)
		}
	}
	r := startServer(t, restored)
	if code, body := getHost(t, r, "hello.localhost:"+port(r), "/"); code != 200 || body != "<h1>second</h1>" {
		t.Errorf("restored serves %d %q", code, body)
	}
	if code, body := getHost(t, r, "hello.localhost:"+port(r), "/css/a.css"); code != 200 || len(body) != 16*500 {
		t.Errorf("restored css: %d, %d bytes", code, len(body))
	}
	r.stop(t)

	// Point in time: as of the first deploy.
	old := filepath.Join(t.TempDir(), "old")
	if _, errOut, err := fazt(t, nil, "", "restore", "--from", rep, "--data", old, "--as-of", fmt.Sprint(first)); err != nil {
		t.Fatalf("restore --as-of: %v\n%s", err, errOut)
	}
	o := startServer(t, old)
	if code, body := getHost(t, o, "hello.localhost:"+port(o), "/"); code != 200 || body != "<h1>first</h1>" {
		t.Errorf("restored as of the first deploy serves %d %q", code, body)
	}
	o.stop(t)

	// The stock litestream CLI restores the archive, and sqlite3 reads it.
	t.Run("stock tools", func(t *testing.T) { stockRestore(t, rep, tail, want.events) })
}

// stockRestore restores the replica with the litestream CLI and reads
// the archive with sqlite3: an operator never needs Fazt to read a
// backup.
func stockRestore(t *testing.T, rep string, tail uint64, events string) {
	ls, err := exec.LookPath("litestream")
	if err != nil {
		t.Skip("litestream CLI not installed (go install github.com/benbjohnson/litestream/cmd/litestream@v0.5.18): the stock-tool check is skipped")
	}
	stock := filepath.Join(t.TempDir(), "stock.db")
	if b, err := exec.Command(ls, "restore", "-o", stock, "file://"+rep).CombinedOutput(); err != nil {
		t.Fatalf("litestream restore: %v\n%s", err, b)
	}
	sum, err := backup.Summarize(context.Background(), stock, 0)
	if err != nil || sum.Hash != events || sum.LastSeq != tail {
		t.Errorf("the stock restore: %+v %v, want %d events hashing %s", sum, err, tail, events)
	}
	if sq, err := exec.LookPath("sqlite3"); err == nil {
		b, err := exec.Command(sq, stock, "PRAGMA integrity_check; SELECT COUNT(*) FROM events; SELECT COUNT(*) > 0 FROM blobs;").CombinedOutput()
		if err != nil || string(b) != fmt.Sprintf("ok\n%d\n1\n", tail) {
			t.Errorf("sqlite3 on the stock restore: %v\n%s", err, b)
		}
	}
	_ = os.Remove(stock)
}

// TestBackupUsage: bad invocations are usage errors that say what to
// pass; a server without --backup says backup is off.
func TestBackupUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"restore", "--data", t.TempDir()}, `"from" not set`},
		{[]string{"restore", "--from", t.TempDir(), "--data", t.TempDir(), "--as-of", "yesterday"}, "want a sequence number"},
		{[]string{"restore", "--from", t.TempDir(), "--data", t.TempDir(), "--as-of", "0"}, "sequences start at 1"},
		{[]string{"serve", "--data", t.TempDir(), "--backup", "ftp://nowhere/x"}, "--backup"},
	} {
		_, _, err := fazt(t, nil, "", c.args...)
		var ue *usageError
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error with %q", c.args, err, c.want)
		}
	}
	// Nothing to restore from: an error that names the source.
	_, _, err := fazt(t, nil, "", "restore", "--from", filepath.Join(t.TempDir(), "empty"), "--data", t.TempDir())
	if err == nil {
		t.Error("restore from an empty replica succeeded")
	}
	s := startServer(t, t.TempDir())
	out, _, err := fazt(t, nil, "", "backup", "status", "--data", s.dir)
	if err != nil || !strings.Contains(out, "backup is off") {
		t.Errorf("backup status without --backup: %v %q", err, out)
	}
	_, _, err = fazt(t, nil, "", "backup", "verify", "--data", s.dir)
	if err == nil || !strings.Contains(err.Error(), "--backup URL") {
		t.Errorf("backup verify without --backup: %v", err)
	}

	// Told by an event: the running server starts copying at once.
	rep := filepath.Join(t.TempDir(), "later")
	out, errOut, err := fazt(t, nil, "", "backup", "add", rep, "--data", s.dir)
	if err != nil || !strings.Contains(out, "added replica "+rep) {
		t.Fatalf("backup add: %v %q %q", err, out, errOut)
	}
	waitFor(t, "the added replica to copy the log", func() bool {
		st := backupStatus(t, s.dir)
		return len(st.Replicas) == 1 && st.Replicas[0].CopiedSeq >= st.LogSeq && st.LogSeq > 0
	})
	if _, _, err := fazt(t, nil, "", "backup", "add", rep, "--data", s.dir); err == nil || !strings.Contains(err.Error(), "a replica already") {
		t.Errorf("backup add twice: %v", err)
	}
	out, _, err = fazt(t, nil, "", "backup", "remove", rep, "--data", s.dir)
	if err != nil || !strings.Contains(out, "removed replica "+rep) {
		t.Errorf("backup remove: %v %q", err, out)
	}
	waitFor(t, "the replica to be removed", func() bool { return !backupStatus(t, s.dir).Enabled })
}
