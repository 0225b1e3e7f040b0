package backup_test

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/litestream"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/backup"
)

// fakeS3TLS runs the S3 implementation over HTTPS on loopback, and
// returns a replica URL into it and its CA certificate written to a
// PEM file.
func fakeS3TLS(t *testing.T, bucket, path string) (string, string) {
	t.Helper()
	be := s3mem.New()
	if err := be.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(gofakes3.New(be).Server())
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "fazt-test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "fazt-test-secret")
	t.Setenv("AWS_REGION", "us-east-1")
	return "s3://" + bucket + "/" + path + "?endpoint=" + srv.URL + "&region=us-east-1", ca
}

const envCAChild = "FAZT_BACKUP_CA_CHILD"

// TestAWSCABundle: with AWS_CA_BUNDLE naming the CA of an S3 server
// over HTTPS, Litestream's own S3 client fails to start (the reason the
// service refuses it), the service refuses such a replica with an
// error that says what to do, and what it says works: the same backup
// and restore over HTTPS succeed in a process that trusts the CA
// through SSL_CERT_FILE instead.
func TestAWSCABundle(t *testing.T) {
	ctx := context.Background()
	u, ca := fakeS3TLS(t, "backups", "node1")
	t.Setenv("AWS_CA_BUNDLE", ca)

	// Litestream v0.5.18 itself: the AWS SDK cannot add the bundle to
	// the HTTP client Litestream gives it. When this passes, Litestream
	// has fixed it and the refusal can go.
	c, err := litestream.NewReplicaClientFromURL(u)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Init(ctx); err == nil || !strings.Contains(err.Error(), "RootCAs") {
		t.Fatalf("Litestream's S3 client with AWS_CA_BUNDLE: Init %v, want the SDK's custom RootCAs error", err)
	}

	// The service refuses it, at configuration and at restore.
	k := kernel.New(t.TempDir())
	_, err = backup.Register(k, backup.Config{Replicas: []string{u}})
	if !errors.Is(err, eventlog.ErrInvalid) || !strings.Contains(err.Error(), "AWS_CA_BUNDLE") || !strings.Contains(err.Error(), "SSL_CERT_FILE="+ca) {
		t.Errorf("Register with AWS_CA_BUNDLE: %v, want ErrInvalid naming AWS_CA_BUNDLE and SSL_CERT_FILE", err)
	}
	_, err = backup.Restore(ctx, backup.RestoreOptions{From: u, Data: t.TempDir()})
	if !errors.Is(err, eventlog.ErrInvalid) || !strings.Contains(err.Error(), "SSL_CERT_FILE") {
		t.Errorf("Restore with AWS_CA_BUNDLE: %v, want ErrInvalid naming SSL_CERT_FILE", err)
	}

	// A ca_bundle in an AWS profile fails the same way, found when the
	// client starts: the error says what to do.
	t.Setenv("AWS_CA_BUNDLE", "")
	cfg := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(cfg, []byte("[default]\nca_bundle = "+ca+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CONFIG_FILE", cfg)
	t.Setenv("AWS_PROFILE", "")
	_, err = backup.Restore(ctx, backup.RestoreOptions{From: u, Data: t.TempDir()})
	if !errors.Is(err, eventlog.ErrInvalid) || !strings.Contains(err.Error(), "ca_bundle") || !strings.Contains(err.Error(), "SSL_CERT_FILE") {
		t.Errorf("Restore with ca_bundle in the AWS profile: %v, want ErrInvalid naming SSL_CERT_FILE", err)
	}
	os.Unsetenv("AWS_CONFIG_FILE")

	// The advice: SSL_CERT_FILE, in a process of its own (Go reads the
	// system's roots once).
	cmd := exec.Command(os.Args[0], "-test.run=^TestAWSCABundleChild$", "-test.count=1", "-test.v")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_CA_BUNDLE=") && !strings.HasPrefix(kv, "SSL_CERT_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, envCAChild+"="+u, "SSL_CERT_FILE="+ca)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "restored over https") {
		t.Fatalf("backup and restore over HTTPS with SSL_CERT_FILE: %v\n%s", err, out)
	}
}

// TestAWSCABundleChild backs up to and restores from the HTTPS S3
// replica its parent gives it; on its own it skips.
func TestAWSCABundleChild(t *testing.T) {
	u := os.Getenv(envCAChild)
	if u == "" {
		t.Skip("the child of TestAWSCABundle")
	}
	ctx := context.Background()
	n := startNode(t, t.TempDir(), backup.Config{Replicas: []string{u}})
	n.notes(t, 20)
	tail := n.tail(t)
	waitCopied(t, n, tail)
	want, err := backup.HashLog(ctx, n.k.Log(), tail)
	if err != nil {
		t.Fatal(err)
	}
	n.stop(t)
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	res, err := backup.Restore(rctx, backup.RestoreOptions{From: u, Data: t.TempDir()})
	if err != nil || res.Hash != want || res.LastSeq != tail {
		t.Fatalf("restore over https: %+v %v, want %d %s", res, err, tail, want)
	}
	fmt.Println("restored over https:", res.LastSeq, "events")
}
