package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/kernel/provision"
)

// The release workflow passes actionlint (the CLI, which runs
// shellcheck on its scripts when that is installed; .ci/run installs
// both), which fails a broken workflow, and does what the release needs:
// both platforms built with the key, the manifest written and signed,
// the signature checked. actionlint runs as a program: its library and
// compose-go need two incompatible versions of one YAML module.
func TestReleaseWorkflowLints(t *testing.T) {
	path := filepath.Join("..", "..", ".github", "workflows", "release.yml")
	lint, err := exec.LookPath("actionlint")
	if err != nil {
		t.Skip("actionlint is not installed (go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12): the workflow is not linted")
	}
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Log("shellcheck is not installed: the scripts are not checked by it")
	}
	if out, err := exec.Command(lint, "-no-color", path).CombinedOutput(); err != nil {
		t.Fatalf("actionlint %s: %v\n%s", path, err, out)
	}
	broken := filepath.Join(t.TempDir(), "broken.yml")
	if err := os.WriteFile(broken, []byte("on: push\njobs:\n  b:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(lint, "-no-color", broken).CombinedOutput(); err == nil {
		t.Fatalf("actionlint passed a broken workflow:\n%s", out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"for arch in amd64 arm64", "-X main.releaseKey=", "-X main.version=", "release manifest", "minisign -Vm dist/manifest.json", "CGO_ENABLED=0"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("the workflow lacks %q", want)
		}
	}
}

// fazt release keygen and manifest make a key pair and a signed manifest
// that the upgrade accepts, and that the stock minisign tool verifies
// (when installed); a manifest signed by the stock tool (whose default
// is the prehashed mode) is accepted too.
func TestReleaseManifest(t *testing.T) {
	dir := t.TempDir()
	runOK := func(env map[string]string, args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), testVerticals, args, envMap(env), strings.NewReader(""), &stdout, &stderr); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, stderr.String())
		}
		return stdout.String()
	}
	prefix := filepath.Join(dir, "k")
	out := runOK(nil, "release", "keygen", "--out", prefix)
	if !strings.Contains(out, "-X main.releaseKey=RW") {
		t.Fatalf("keygen: %s", out)
	}
	if mode := fileMode(t, prefix+".key"); mode != 0o600 {
		t.Errorf("secret key mode %o", mode)
	}
	if err := run(context.Background(), testVerticals, []string{"release", "keygen", "--out", prefix}, noEnv, strings.NewReader(""), io.Discard, io.Discard); err == nil {
		t.Error("keygen overwrote a key")
	}
	for _, name := range []string{"fazt-v1.2.3-linux-amd64", "fazt-v1.2.3-linux-arm64"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("binary "+name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	secret, err := os.ReadFile(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	// The key from the environment, as the workflow passes it.
	runOK(map[string]string{"FAZT_RELEASE_KEY": string(secret)}, "release", "manifest", "--version", "v1.2.3", "--out", dir,
		"linux/amd64="+filepath.Join(dir, "fazt-v1.2.3-linux-amd64"), "linux/arm64="+filepath.Join(dir, "fazt-v1.2.3-linux-arm64"))
	manifest := filepath.Join(dir, provision.ManifestName)
	keys, err := provision.ParseKeys(prefix + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	rel, err := provision.Source{Location: manifest}.Fetch(context.Background(), keys)
	if err != nil {
		t.Fatal(err)
	}
	b, err := rel.Manifest.For("linux/arm64")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := provision.Describe(filepath.Join(dir, "fazt-v1.2.3-linux-arm64"))
	if rel.Manifest.Version != "v1.2.3" || b != want || len(rel.Manifest.Platforms) != 2 {
		t.Fatalf("manifest %+v", rel.Manifest)
	}

	ms, err := exec.LookPath("minisign")
	if err != nil {
		t.Skip("minisign is not installed: the interoperability with the stock tool is not checked")
	}
	if out, err := exec.Command(ms, "-Vm", manifest, "-p", prefix+".pub").CombinedOutput(); err != nil {
		t.Fatalf("minisign does not verify the manifest: %v\n%s", err, out)
	}
	// Signed by the stock tool, with a key it made (-W: no password).
	if out, err := exec.Command(ms, "-G", "-W", "-p", filepath.Join(dir, "s.pub"), "-s", filepath.Join(dir, "s.key")).CombinedOutput(); err != nil {
		t.Fatalf("minisign -G: %v\n%s", err, out)
	}
	os.Remove(manifest + provision.SignatureSuffix)
	if out, err := exec.Command(ms, "-S", "-s", filepath.Join(dir, "s.key"), "-m", manifest).CombinedOutput(); err != nil {
		t.Fatalf("minisign -S: %v\n%s", err, out)
	}
	stock, err := provision.ParseKeys(filepath.Join(dir, "s.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (provision.Source{Location: manifest}).Fetch(context.Background(), stock); err != nil {
		t.Fatalf("a manifest signed by the stock tool: %v", err)
	}
	if _, err := (provision.Source{Location: manifest}).Fetch(context.Background(), keys); err == nil || !strings.Contains(err.Error(), "not by a release key") {
		t.Fatalf("checked with another key: %v", err)
	}
}
