package main

import (
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/kernel/provision"
)

func sha256File(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// fazt install --root and fazt uninstall --root, through run: the
// staged files, the second run that changes nothing, the diff, the
// refusals.
func TestInstallCommand(t *testing.T) {
	root := filepath.Join(t.TempDir(), "stage 'root'")
	// The binary installed by default is this one.
	out, _, err := fazt(t, nil, "", "install", "--root", root)
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if sha256File(t, filepath.Join(root, provision.BinPath)) != sha256File(t, exe) {
		t.Fatal("the installed binary is not this one")
	}
	unit, err := os.ReadFile(filepath.Join(root, provision.UnitPath))
	if err != nil || !strings.Contains(string(unit), "\nExecStart="+provision.BinPath+" serve --data "+provision.DataDir+"\n") {
		t.Fatalf("unit: %v\n%s", err, unit)
	}

	out, _, err = fazt(t, nil, "", "install", "--root", root)
	if err != nil || out != "fazt is installed in "+root+" as asked: nothing changed\n" {
		t.Fatalf("second install: %q %v", out, err)
	}

	// Each option goes to serve: install takes it where this binary's
	// serve does, and refuses it, before writing, where it does not.
	serve := (&app{getenv: noEnv}).serveCmd().Flags()
	for _, o := range [][2]string{{"domain", "example.com"}, {"email", "me@example.com"}, {"backup", "s3://bucket/fazt"}} {
		out, _, err := fazt(t, nil, "", "install", "--root", root, "--"+o[0], o[1], "--dry-run")
		if serve.Lookup(o[0]) != nil {
			if err != nil || !strings.Contains(out, "+ExecStart="+provision.BinPath+" serve --data "+provision.DataDir+" --"+o[0]+" "+o[1]+"\n") || !strings.HasSuffix(out, "dry run: nothing changed\n") {
				t.Errorf("dry run with --%s: %q %v", o[0], out, err)
			}
			continue
		}
		var u *usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), "this fazt's serve has no --"+o[0]+" flag") {
			t.Errorf("--%s, which serve lacks: %v", o[0], err)
		}
	}

	// Hostile values are usage errors (exit status 2), and nothing is
	// written.
	for _, args := range [][]string{
		{"--domain", "example.com\nExecStartPre=/bin/sh -c 'id > /tmp/owned'"},
		{"--email", "me@example.com\n[Service]\nUser=root"},
		{"--backup", "file:///srv/with space"},
		{"--backup", `s3://b/"; rm -rf /; "`},
	} {
		_, _, err := fazt(t, nil, "", append([]string{"install", "--root", root}, args...)...)
		var u *usageError
		if !errors.As(err, &u) || exitStatus(err, &strings.Builder{}) != 2 || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%q: %v; want a usage error naming %s", args, err, args[0])
		}
	}
	if got, _ := os.ReadFile(filepath.Join(root, provision.UnitPath)); string(got) != string(unit) {
		t.Fatal("a refused install changed the unit")
	}

	out, _, err = fazt(t, nil, "", "uninstall", "--root", root)
	if err != nil || !strings.Contains(out, "remove /etc/systemd/system/fazt.service") || !strings.Contains(out, "kept /var/lib/fazt") {
		t.Fatalf("uninstall: %q %v", out, err)
	}
	out, _, err = fazt(t, nil, "", "uninstall", "--root", root, "--purge")
	if err != nil || !strings.Contains(out, "remove /var/lib/fazt (the data and the binary)") {
		t.Fatalf("uninstall --purge: %q %v", out, err)
	}
	if _, err := os.Lstat(filepath.Join(root, provision.StateDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("purge left the state directory: %v", err)
	}
}

// Without --root, install needs systemd (and root) and says so before
// it changes anything.
func TestInstallNeedsSystemd(t *testing.T) {
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Skip("systemd runs on this machine: the test would install the service for real")
	}
	bin := filepath.Join(t.TempDir(), "fazt")
	if err := os.WriteFile(bin, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{{"install", "--binary", bin}, {"uninstall"}} {
		_, _, err := fazt(t, nil, "", cmd...)
		if err == nil || (!strings.Contains(err.Error(), "systemd is not running on this machine") && !strings.Contains(err.Error(), "needs root")) || !strings.Contains(err.Error(), "--root DIR") {
			t.Errorf("%s without systemd: %v", cmd[0], err)
		}
	}
}
