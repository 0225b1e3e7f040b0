package provision

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
)

// stagingRoot is a directory whose path has spaces and quotes: the
// root never enters the unit, and must work all the same.
func stagingRoot(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), `my "staging" root's dir`)
}

// fakeBinary writes an executable file standing for the fazt binary.
func fakeBinary(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fazt new")
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// entry is what a tree snapshot keeps of one path.
type entry struct {
	mode  fs.FileMode
	mtime time.Time
	hash  string
}

// snapshot maps every path under root to its mode, mtime and content
// hash (symlinks by their target).
func snapshot(t *testing.T, root string) map[string]entry {
	t.Helper()
	m := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := entry{mode: st.Mode(), mtime: st.ModTime()}
		switch {
		case st.Mode()&fs.ModeSymlink != 0:
			e.hash, err = os.Readlink(p)
		case st.Mode().IsRegular():
			var b []byte
			b, err = os.ReadFile(p)
			sum := sha256.Sum256(b)
			e.hash = hex.EncodeToString(sum[:])
		}
		m[p] = e
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// ageTree sets every mtime under root to one far in the past, so that
// any write afterwards shows.
func ageTree(t *testing.T, root string) {
	t.Helper()
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func compareTrees(t *testing.T, before, after map[string]entry) {
	t.Helper()
	for p, a := range after {
		b, ok := before[p]
		switch {
		case !ok:
			t.Errorf("the second run created %s", p)
		case a != b:
			t.Errorf("the second run changed %s: %+v -> %+v", p, b, a)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("the second run removed %s", p)
		}
	}
}

func runInstall(t *testing.T, in Install) string {
	t.Helper()
	var out strings.Builder
	in.Out = &out
	if err := in.Run(context.Background()); err != nil {
		t.Fatalf("install: %v\n%s", err, out.String())
	}
	return out.String()
}

// Installing twice with the same options: the second run changes no
// byte, no mode and no mtime, and says so.
func TestInstallTwiceChangesNothing(t *testing.T) {
	root, bin := stagingRoot(t), fakeBinary(t, "#!/bin/sh\necho fazt\n")
	in := Install{Options: Options{Domain: "example.com", Email: "me@example.com", Backup: []string{"s3://b/fazt%20x"}}, Root: root, Binary: bin}
	out := runInstall(t, in)
	for _, want := range []string{"create /etc/systemd/system/fazt.service", "create /var/lib/fazt/bin/fazt", "staged in " + root} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
			t.Errorf("first run's output lacks %q:\n%s", want, out)
		}
	}
	unit, err := os.ReadFile(filepath.Join(root, UnitPath))
	if err != nil {
		t.Fatal(err)
	}
	checkUnitShape(t, in.Options, unit)
	if fi, err := os.Stat(filepath.Join(root, UnitPath)); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("unit mode: %v %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(root, BinPath)); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("binary mode: %v %v", fi.Mode(), err)
	}
	if h, _ := fileHash(filepath.Join(root, BinPath)); h != mustHash(t, bin) {
		t.Fatal("the installed binary is not a copy of the given one")
	}

	ageTree(t, root)
	before := snapshot(t, root)
	out = runInstall(t, in)
	if out != "fazt is installed in "+root+" as asked: nothing changed\n" {
		t.Errorf("second run says %q", out)
	}
	compareTrees(t, before, snapshot(t, root))

	// Options given differently but meaning the same (case, the trailing
	// dot of a domain) change nothing either.
	in.Domain = "Example.COM."
	if out := runInstall(t, in); !strings.Contains(out, "nothing changed") {
		t.Errorf("same options in another spelling: %q", out)
	}
	compareTrees(t, before, snapshot(t, root))
}

func mustHash(t *testing.T, p string) string {
	t.Helper()
	h, err := fileHash(p)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// Other options: the unit is rewritten and the difference shown; the
// binary is left alone.
func TestInstallOtherOptionsShowsDiff(t *testing.T) {
	root, bin := stagingRoot(t), fakeBinary(t, "one")
	runInstall(t, Install{Root: root, Binary: bin})
	ageTree(t, root)
	before := snapshot(t, root)

	// A dry run shows the change and makes none.
	in := Install{Options: Options{Domain: "example.com"}, Root: root, Binary: bin, DryRun: true}
	out := runInstall(t, in)
	wantDiff := "-ExecStart=" + BinPath + " serve --data " + DataDir + "\n+ExecStart=" + BinPath + " serve --data " + DataDir + " --domain example.com\n"
	if !strings.Contains(out, "fazt install would in "+root+":") || !strings.Contains(out, wantDiff) || !strings.HasSuffix(out, "dry run: nothing changed\n") {
		t.Fatalf("dry run output:\n%s", out)
	}
	compareTrees(t, before, snapshot(t, root))

	in.DryRun = false
	out = runInstall(t, in)
	if !strings.Contains(out, "update /etc/systemd/system/fazt.service") || !strings.Contains(out, wantDiff) {
		t.Fatalf("output:\n%s", out)
	}
	after := snapshot(t, root)
	if u := filepath.Join(root, UnitPath); after[u] == before[u] {
		t.Error("the unit did not change")
	}
	if b := filepath.Join(root, BinPath); after[b] != before[b] {
		t.Error("the binary changed")
	}

	// Another binary: install keeps the installed one (an upgrade may
	// have put it there) and says so.
	other := fakeBinary(t, "two")
	out = runInstall(t, Install{Options: in.Options, Root: root, Binary: other})
	if !strings.Contains(out, "note: "+BinPath+" differs from "+other) || !strings.Contains(out, "nothing changed") {
		t.Fatalf("output:\n%s", out)
	}
	if mustHash(t, filepath.Join(root, BinPath)) != mustHash(t, bin) {
		t.Fatal("install replaced the installed binary")
	}
}

// A dry run into an empty root prints the whole plan, the unit
// included, and creates nothing.
func TestInstallDryRun(t *testing.T) {
	root, bin := stagingRoot(t), fakeBinary(t, "x")
	out := runInstall(t, Install{Options: Options{Email: "me@example.com"}, Root: root, Binary: bin, DryRun: true})
	for _, want := range []string{"create /etc/systemd/system/fazt.service", "create /var/lib/fazt/bin/fazt (a copy of " + bin, "+++ " + UnitPath, "+Type=notify\n", "+ExecStart=" + BinPath + " serve --data " + DataDir + " --email me@example.com\n", "dry run: nothing changed"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Lstat(root); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the dry run created %s: %v", root, err)
	}
	// Refused options write nothing either.
	err := Install{Options: Options{Domain: "x.com\nUser=root"}, Root: root, Binary: bin, Out: &strings.Builder{}}.Run(context.Background())
	if !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("hostile domain: %v", err)
	}
	if _, err := os.Lstat(root); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a refused install created %s: %v", root, err)
	}
	// No binary to install and none installed.
	err = Install{Root: root, Out: &strings.Builder{}}.Run(context.Background())
	if !errors.Is(err, eventlog.ErrInvalid) || !strings.Contains(err.Error(), "--binary") {
		t.Fatalf("no binary: %v", err)
	}
}

func TestUninstall(t *testing.T) {
	root, bin := stagingRoot(t), fakeBinary(t, "x")
	runInstall(t, Install{Root: root, Binary: bin})
	data := filepath.Join(root, DataDir, "token")
	if err := os.MkdirAll(filepath.Dir(data), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(data, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	uninstall := func(u Uninstall) string {
		t.Helper()
		var out strings.Builder
		u.Root, u.Out = root, &out
		if err := u.Run(context.Background()); err != nil {
			t.Fatalf("uninstall: %v\n%s", err, out.String())
		}
		return out.String()
	}

	before := snapshot(t, root)
	if out := uninstall(Uninstall{DryRun: true, Purge: true}); !strings.Contains(out, "remove /etc/systemd/system/fazt.service") || !strings.Contains(out, "remove /var/lib/fazt (the data and the binary)") {
		t.Fatalf("dry run:\n%s", out)
	}
	compareTrees(t, before, snapshot(t, root))

	out := uninstall(Uninstall{})
	if !strings.Contains(out, "remove /etc/systemd/system/fazt.service") || !strings.Contains(out, "kept /var/lib/fazt") {
		t.Fatalf("uninstall:\n%s", out)
	}
	if _, err := os.Lstat(filepath.Join(root, UnitPath)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the unit is still there: %v", err)
	}
	if b, err := os.ReadFile(data); err != nil || string(b) != "secret\n" {
		t.Fatalf("the data is gone: %v", err)
	}
	// Installing again finds the binary and the data where they were.
	if out := runInstall(t, Install{Root: root, Binary: bin}); strings.Contains(out, "/bin/fazt") {
		t.Fatalf("reinstall copied the binary again:\n%s", out)
	}

	out = uninstall(Uninstall{Purge: true})
	if !strings.Contains(out, "remove /var/lib/fazt (the data and the binary)") {
		t.Fatalf("purge:\n%s", out)
	}
	if _, err := os.Lstat(filepath.Join(root, StateDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("purge left %s: %v", StateDir, err)
	}
	if out := uninstall(Uninstall{Purge: true}); out != "fazt is not installed in "+root+": nothing to do\n" {
		t.Fatalf("second uninstall: %q", out)
	}
}

// Without --root, install and uninstall say what is missing: root,
// then systemd.
func TestCheckSystem(t *testing.T) {
	if err := checkSystem(1000, t.TempDir()); err == nil || !strings.Contains(err.Error(), "needs root: run it with sudo, or give --root DIR") {
		t.Errorf("not root: %v", err)
	}
	err := checkSystem(0, filepath.Join(t.TempDir(), "no-systemd"))
	if !errors.Is(err, eventlog.ErrUnavailable) || !strings.Contains(err.Error(), "systemd is not running on this machine") {
		t.Errorf("no systemd: %v", err)
	}
}

// systemdUnits finds the directory of systemd's own units, which the
// staging root needs for systemd-analyze to resolve the unit's
// dependencies (network-online.target, multi-user.target).
func systemdUnits(t *testing.T) string {
	t.Helper()
	for _, d := range []string{"/usr/lib/systemd/system", "/lib/systemd/system"} {
		if _, err := os.Stat(filepath.Join(d, "multi-user.target")); err == nil {
			return d
		}
	}
	t.Skip("systemd's units are not installed (apt-get install -y systemd)")
	return ""
}

// copyDir copies the regular files and symlinks of src into dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(to, b, 0o644)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The generated unit passes systemd's own checks: `systemd-analyze
// verify` prints nothing, and `systemd-analyze security` rates its
// exposure at most 2.0. Options with a % in them check the escaping
// (a lone % is a specifier systemd would refuse).
func TestUnitSystemdAnalyze(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed: apt-get install -y systemd")
	}
	units := systemdUnits(t)
	root := stagingRoot(t)
	runInstall(t, Install{
		Options: Options{Domain: "example.com", Email: "ops+fazt@example.com", Backup: []string{"s3://bucket/fazt%20data?region=eu-west-1", "file:///var/lib/fazt/backup;b"}},
		Root:    root,
		Binary:  fakeBinary(t, "#!/bin/sh\n"),
	})
	copyDir(t, units, filepath.Join(root, "usr/lib/systemd/system"))

	out, err := exec.Command("systemd-analyze", "verify", "--root="+root, UnitPath).CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	out, err = exec.Command("systemd-analyze", "security", "--offline=true", "--root="+root, UnitPath).CombinedOutput()
	if err != nil && strings.Contains(string(out), "unrecognized option") {
		t.Skipf("this systemd-analyze has no offline security check (systemd 250 or later has): %s", out)
	}
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	score := -1.0
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "→ Overall exposure level for "+UnitName+": "); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				score, err = strconv.ParseFloat(f[0], 64)
				if err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if score < 0 || score > 2.0 {
		t.Fatalf("exposure %v; want at most 2.0:\n%s", score, out)
	}
	t.Logf("systemd-analyze security: exposure %.1f", score)
}
