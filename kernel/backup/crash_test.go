package backup_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel/backup"
	"github.com/fazt-sh/fazt/kernel/vfs"
)

// envCrashChild turns TestArchiveCrashChild into the process that
// TestArchiveSIGKILL kills: its value is the data directory.
const envCrashChild = "FAZT_BACKUP_CRASH_CHILD"

// TestArchiveCrashChild appends events and deploys with the backup on,
// until it is killed (or a minute passes); on its own it skips.
func TestArchiveCrashChild(t *testing.T) {
	dir := os.Getenv(envCrashChild)
	if dir == "" {
		t.Skip("the child of TestArchiveSIGKILL")
	}
	n := startNode(t, dir, backup.Config{Replicas: []string{filepath.Join(dir, "replica")}, BatchSize: 50})
	// Ready once the archive has copied events of this round: each kill
	// then finds an archive that moved.
	n.notes(t, 5)
	for tail := n.tail(t); ; time.Sleep(5 * time.Millisecond) {
		st, err := n.bk.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.ArchivedSeq >= tail {
			break
		}
	}
	fmt.Println("ready")
	stop := time.Now().Add(time.Minute)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				if g == 0 && i%40 == 0 {
					n.deploy(t, "blog", map[string]string{"index.html": fmt.Sprintf("<p>%d %d</p>", time.Now().UnixNano(), i)})
					continue
				}
				n.notes(t, 1)
			}
		}()
	}
	wg.Wait()
}

// TestArchiveSIGKILL kills a process that archives under load, round
// after round on the same directory, and checks after each kill that
// the archive is a gap-free prefix of the log (the same hash over its
// events), that it grew, and at the end that a clean start copies the
// rest: no gap and no event twice, whatever the moment of the kill.
func TestArchiveSIGKILL(t *testing.T) {
	if os.Getenv(envCrashChild) != "" {
		t.Skip("inside the child")
	}
	rounds := 4
	if os.Getenv("FAZT_SOAK") != "" {
		rounds = 25
	}
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	ctx := context.Background()
	archive := filepath.Join(dir, "backup", backup.ArchiveFile)
	var last uint64
	for round := 1; round <= rounds; round++ {
		killAfter(t, dir, time.Duration(200+rng.IntN(600))*time.Millisecond)
		sum, err := backup.Summarize(ctx, archive, 0)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		l := eventlog.New(dir)
		if err := l.Open(ctx); err != nil {
			t.Fatal(err)
		}
		tail, _ := l.LastSeq(ctx)
		live, err := backup.HashLog(ctx, l, sum.LastSeq)
		l.Close(ctx)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if live != sum.Hash {
			t.Fatalf("round %d: the archive's %d events differ from the log's first %d", round, sum.LastSeq, sum.LastSeq)
		}
		deploys := blobsNamedAreArchived(t, archive)
		t.Logf("round %d: archive %d events (%d deploys, %d blobs), log %d", round, sum.LastSeq, deploys, sum.Blobs, tail)
		if sum.LastSeq <= last {
			t.Errorf("round %d: the archive did not grow (%d)", round, sum.LastSeq)
		}
		last = sum.LastSeq
	}
	// A clean start catches up from the checkpoint.
	n := startNode(t, dir, backup.Config{Replicas: []string{filepath.Join(dir, "replica")}})
	tail := n.tail(t)
	waitCopied(t, n, tail)
	want, _ := backup.HashLog(ctx, n.k.Log(), tail)
	n.stop(t)
	sum, err := backup.Summarize(ctx, archive, 0)
	if err != nil || sum.LastSeq != tail || sum.Hash != want {
		t.Fatalf("after a clean start: %+v %v, want %d events hashing %s", sum, err, tail, want)
	}
}

// killAfter runs the child on dir and kills it delay after it is ready.
func killAfter(t *testing.T, dir string, delay time.Duration) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestArchiveCrashChild$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), envCrashChild+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := false
		for sc.Scan() {
			if sc.Text() == "ready" && !ok {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
	}()
	if !<-ready {
		cmd.Wait()
		t.Fatalf("the child did not start: %s", stderr.String())
	}
	time.Sleep(delay)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
}

// blobsNamedAreArchived fails t unless every blob that an archived
// deploy names (its files and their variants) is in the archive too,
// and returns the deploys.
func blobsNamedAreArchived(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT seq, data FROM events WHERE type = ?`, vfs.TypeDeployRecorded)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var seq uint64
		var data []byte
		if err := rows.Scan(&seq, &data); err != nil {
			t.Fatal(err)
		}
		var d vfs.DeployRecorded
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatal(err)
		}
		n++
		for p, f := range d.Files {
			names := []string{f.SHA256}
			if f.Gzip != nil {
				names = append(names, f.Gzip.SHA256)
			}
			if f.Br != nil {
				names = append(names, f.Br.SHA256)
			}
			for _, h := range names {
				var one int
				if err := db.QueryRow(`SELECT 1 FROM blobs WHERE bucket = ? AND name = ?`, vfs.Bucket, h).Scan(&one); err != nil {
					t.Errorf("the deploy at seq %d names %s (%s), which the archive lacks: %v", seq, h, p, err)
				}
			}
		}
	}
	return n
}
