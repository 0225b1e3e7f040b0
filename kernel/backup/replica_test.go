package backup_test

import (
	"context"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/fazt-sh/fazt/kernel/backup"
)

// fakeS3 runs an S3 implementation over HTTP on loopback with one
// bucket, and returns a replica URL into it.
func fakeS3(t *testing.T, bucket, path string) string {
	t.Helper()
	be := s3mem.New()
	if err := be.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(be).Server())
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", "fazt-test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "fazt-test-secret")
	t.Setenv("AWS_REGION", "us-east-1")
	// Litestream's S3 client brings its own HTTP client, which the AWS
	// SDK refuses to give a custom CA bundle: none is needed on loopback.
	t.Setenv("AWS_CA_BUNDLE", "")
	return "s3://" + bucket + "/" + path + "?endpoint=" + srv.URL + "&region=us-east-1"
}

// TestS3AndFolderReplicas: one archive, two replicas (an S3 server
// over HTTP and a folder); each holds the log, verifies against it, and
// restores it.
func TestS3AndFolderReplicas(t *testing.T) {
	ctx := context.Background()
	s3url := fakeS3(t, "backups", "node1")
	folder := filepath.Join(t.TempDir(), "replica")
	n := startNode(t, t.TempDir(), backup.Config{Replicas: []string{s3url, folder}})
	n.notes(t, 50)
	n.deploy(t, "blog", map[string]string{"index.html": "hello"})
	n.notes(t, 50)
	tail := n.tail(t)
	st := waitCopied(t, n, tail)
	if len(st.Replicas) != 2 || st.Replicas[0].LagEvents != 0 || st.Replicas[0].Syncs == 0 {
		t.Fatalf("status %+v", st)
	}
	if strings.Contains(st.Replicas[0].URL, "secret") {
		t.Errorf("status shows a secret: %s", st.Replicas[0].URL)
	}
	want, _ := backup.HashLog(ctx, n.k.Log(), tail)
	for _, u := range []string{s3url, folder} {
		v, err := n.bk.Verify(ctx, u)
		if err != nil || !v.OK || v.LastSeq != tail || v.Hash != want || v.Blobs == 0 {
			t.Errorf("verify %s: %+v %v", u, v, err)
		}
	}
	n.stop(t)
	res, err := backup.Restore(ctx, backup.RestoreOptions{From: s3url, Data: t.TempDir()})
	if err != nil || res.Hash != want || res.LastSeq != tail {
		t.Fatalf("restore from S3: %+v %v, want %s", res, err, want)
	}
}

// TestReplicaDown: a replica that cannot be written, or one that never
// answers, never stops appends, the archive or a healthy replica; its
// error and lag show, and it catches up once the target is back. Close with a replica that never answers
// returns within its bound, saying what was not synced.
func TestReplicaDown(t *testing.T) {
	base := t.TempDir()
	blocker := filepath.Join(base, "blocked")
	if err := os.WriteFile(blocker, []byte("a file where the replica's folder should be"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A server that accepts connections and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for _, c := range held {
			c.Close()
		}
	})
	t.Setenv("AWS_ACCESS_KEY_ID", "x")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "y")
	t.Setenv("AWS_CA_BUNDLE", "")
	silent := "s3://b/p?endpoint=http://" + ln.Addr().String() + "&region=us-east-1"
	down := filepath.Join(blocker, "replica")
	healthy := filepath.Join(base, "healthy")
	n := startNode(t, t.TempDir(), backup.Config{Replicas: []string{down, silent, healthy}, ShutdownTimeout: 1e9})
	n.notes(t, 100)
	tail := n.tail(t)
	var st backup.Status
	// The healthy replica keeps up while the others fail or hang.
	for {
		if st, err = n.bk.Status(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st.ArchivedSeq == tail && st.Replicas[0].LastError != "" && st.Replicas[2].CopiedSeq == tail {
			break
		}
	}
	if r := st.Replicas[0]; r.CopiedSeq >= tail || r.LagEvents == 0 || r.Errors == 0 {
		t.Fatalf("a replica that is down: %+v", r)
	}
	// Back: the folder can be made now.
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	n.notes(t, 5)
	tail = n.tail(t)
	for {
		st, err = n.bk.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Replicas[0].CopiedSeq >= tail && st.Replicas[2].CopiedSeq >= tail {
			break
		}
	}
	if st.Replicas[0].LastError != "" || st.Replicas[1].CopiedSeq != 0 || st.Replicas[2].LastError != "" {
		t.Errorf("after the folder is back: %+v", st.Replicas)
	}
	// The silent S3 endpoint: Close waits ShutdownTimeout at most, and
	// says the last sync did not happen.
	err = n.bk.Close(context.Background())
	if err == nil || !strings.Contains(err.Error(), "last sync") {
		t.Errorf("close with a silent replica: %v, want the last sync's error", err)
	}
	if err := n.k.Close(context.Background()); err != nil {
		t.Error(err)
	}
	n.k = nil
}
