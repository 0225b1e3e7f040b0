package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestVersionFromVCS builds the binary with go build in a git repository
// holding this checkout's files (committed there, so the build is of the
// code under test) and runs its version command: it prints the commit,
// its time, and whether the tree was modified, from the build's VCS
// information; a commit given at link time wins.
func TestVersionFromVCS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary three times")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	repo := t.TempDir()
	for _, f := range strings.Split(strings.TrimRight(string(list), "\x00"), "\x00") {
		b, err := os.ReadFile(filepath.Join(root, f))
		if os.IsNotExist(err) {
			continue // deleted in the working tree
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(repo, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(repo, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sh := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	sh("git", "init", "-q")
	sh("git", "add", "-A")
	sh("git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-q", "-m", "test")
	rev := sh("git", "rev-parse", "HEAD")

	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	bin := filepath.Join(t.TempDir(), "fazt")
	// -buildvcs=true: the default (auto) stamps too, unless GOFLAGS says
	// otherwise, as it may on a build machine.
	build := func(extra ...string) {
		t.Helper()
		sh(goCmd, append([]string{"build", "-o", bin}, append(extra, "./cmd/fazt")...)...)
	}
	version := func() (string, versionInfo) {
		t.Helper()
		text := sh(bin, "version")
		var v versionInfo
		if err := json.Unmarshal([]byte(sh(bin, "version", "--json")), &v); err != nil {
			t.Fatal(err)
		}
		return text, v
	}

	build("-buildvcs=true")
	text, v := version()
	if !strings.Contains(text, "commit: "+rev+"\n") || strings.Contains(text, "unknown") || strings.Contains(text, "(devel)") ||
		v.Commit != rev || v.Modified || v.CommitTime == "" || !strings.Contains(v.Version, rev[:12]) {
		t.Fatalf("version of a clean build of commit %s:\n%s\n%+v", rev, text, v)
	}

	if err := os.WriteFile(filepath.Join(repo, "NOTES"), []byte("local change\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	build("-buildvcs=true")
	if text, v := version(); !strings.Contains(text, "commit: "+rev+" (modified)\n") || !v.Modified {
		t.Fatalf("version of a build of a modified tree:\n%s\n%+v", text, v)
	}

	build("-buildvcs=false", "-ldflags", "-X main.commit=abc123 -X main.commitTime=2026-01-02T03:04:05Z -X main.version=v9.9.9")
	if text, v := version(); !strings.HasPrefix(text, "fazt v9.9.9\ncommit: abc123\ntime:   2026-01-02T03:04:05Z\n") || v.Commit != "abc123" {
		t.Fatalf("version with link-time values:\n%s\n%+v", text, v)
	}
}
