package provision

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	udiff "github.com/aymanbagabas/go-udiff"

	"github.com/fazt-sh/fazt/eventlog"
)

// systemdRunDir exists while systemd is the init system (sd_booted).
const systemdRunDir = "/run/systemd/system"

// Install puts Fazt on a machine as a systemd service: the binary in
// BinPath (when none is there yet), the unit in UnitPath, then
// daemon-reload, enable and start. Running it again with the same
// options changes nothing; with other options it rewrites the unit,
// shows the difference and restarts the service.
type Install struct {
	Options
	// Root stages the files under this directory instead of /, and runs
	// no systemctl: how to prepare an image, and how the tests run.
	Root string
	// Binary is the fazt binary to install when BinPath holds none. An
	// installed binary is never replaced by install (that would undo an
	// upgrade): fazt upgrade replaces it.
	Binary string
	// DryRun prints the plan and changes nothing.
	DryRun bool
	// Out receives the plan and what was done.
	Out io.Writer
}

// Uninstall stops and disables the service and removes its unit. The
// state directory (data and binary) stays unless Purge.
type Uninstall struct {
	Root   string
	Purge  bool
	DryRun bool
	Out    io.Writer
}

// step is one line of a plan, and what it shows below it (a diff).
type step struct {
	verb, what string
	do         func() error
	detail     string
}

// Run carries out the install, printing each step as it goes.
func (in Install) Run(ctx context.Context) error {
	unit, err := Unit(in.Options)
	if err != nil {
		return err
	}
	if in.Root == "" && !in.DryRun {
		if err := checkSystem(os.Geteuid(), systemdRunDir); err != nil {
			return err
		}
	}
	out := in.Out
	if out == nil {
		out = io.Discard
	}
	unitPath, binPath := in.path(UnitPath), in.path(BinPath)

	var steps []step
	writeUnit := func() error { return WriteFile(unitPath, bytes.NewReader(unit), 0o644) }
	old, err := os.ReadFile(unitPath)
	unitChanged := true
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s := step{verb: "create", what: UnitPath, do: writeUnit}
		if in.DryRun {
			s.detail = udiff.Unified("/dev/null", UnitPath, "", string(unit))
		}
		steps = append(steps, s)
	case err != nil:
		return fmt.Errorf("read the installed unit: %w", err)
	case bytes.Equal(old, unit):
		unitChanged = false
	default:
		steps = append(steps, step{verb: "update", what: UnitPath, do: writeUnit,
			detail: udiff.Unified(UnitPath+" (installed)", UnitPath+" (new)", string(old), string(unit))})
	}

	var notes []string
	installed, err := fileHash(binPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if in.Binary == "" {
			return fmt.Errorf("%w: no binary to install: give --binary FILE", eventlog.ErrInvalid)
		}
		src, err := fileHash(in.Binary)
		if err != nil {
			return fmt.Errorf("the binary to install: %w", err)
		}
		steps = append(steps, step{verb: "create", what: fmt.Sprintf("%s (a copy of %s, sha256 %s)", BinPath, in.Binary, src[:16]), do: func() error {
			f, err := os.Open(in.Binary)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := WriteFile(binPath, f, 0o755); err != nil {
				return err
			}
			if in.Root != "" {
				return nil
			}
			return matchOwner(StateDir, BinDir, BinPath)
		}})
	case err != nil:
		return fmt.Errorf("read the installed binary: %w", err)
	case in.Binary != "":
		if src, err := fileHash(in.Binary); err == nil && src != installed {
			notes = append(notes, fmt.Sprintf("%s differs from %s (sha256 %s, this one %s): install keeps the installed binary; fazt upgrade replaces it", BinPath, in.Binary, installed[:16], src[:16]))
		}
	}

	if in.Root == "" {
		sd := systemctl{ctx: ctx}
		if unitChanged {
			steps = append(steps, step{verb: "run", what: "systemctl daemon-reload", do: func() error { return sd.run("daemon-reload") }})
		}
		if !sd.ok("is-enabled", "--quiet", UnitName) {
			steps = append(steps, step{verb: "run", what: "systemctl enable " + UnitName, do: func() error { return sd.run("enable", "--quiet", UnitName) }})
		}
		active := sd.ok("is-active", "--quiet", UnitName)
		switch {
		case active && unitChanged:
			steps = append(steps, step{verb: "run", what: "systemctl restart " + UnitName + " (waits until the server is ready)", do: func() error { return sd.run("restart", UnitName) }})
		case !active:
			steps = append(steps, step{verb: "run", what: "systemctl start " + UnitName + " (waits until the server is ready)", do: func() error { return sd.run("start", UnitName) }})
		}
	}

	where := ""
	if in.Root != "" {
		where = " in " + in.Root
	}
	for _, n := range notes {
		fmt.Fprintln(out, "note:", n)
	}
	if len(steps) == 0 {
		fmt.Fprintf(out, "fazt is installed%s as asked: nothing changed\n", where)
		return nil
	}
	if in.DryRun {
		fmt.Fprintf(out, "fazt install would%s:\n", where)
	}
	if err := doSteps(out, steps, in.DryRun); err != nil {
		return err
	}
	switch {
	case in.DryRun:
		fmt.Fprintln(out, "dry run: nothing changed")
	case in.Root != "":
		fmt.Fprintf(out, "staged in %s (systemctl not run)\n", in.Root)
	default:
		fmt.Fprintf(out, "fazt is running: systemctl status fazt; the API token: sudo cat %s/token\n", DataDir)
	}
	return nil
}

// Run carries out the uninstall, printing each step as it goes.
func (u Uninstall) Run(ctx context.Context) error {
	if u.Root == "" && !u.DryRun {
		if err := checkSystem(os.Geteuid(), systemdRunDir); err != nil {
			return err
		}
	}
	out := u.Out
	if out == nil {
		out = io.Discard
	}
	root := Install{Root: u.Root}
	unitPath := root.path(UnitPath)
	var steps []step
	_, err := os.Lstat(unitPath)
	haveUnit := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if haveUnit {
		if u.Root == "" {
			sd := systemctl{ctx: ctx}
			steps = append(steps, step{verb: "run", what: "systemctl disable --now " + UnitName, do: func() error { return sd.run("disable", "--now", "--quiet", UnitName) }})
		}
		steps = append(steps, step{verb: "remove", what: UnitPath, do: func() error { return os.Remove(unitPath) }})
		if u.Root == "" {
			sd := systemctl{ctx: ctx}
			steps = append(steps, step{verb: "run", what: "systemctl daemon-reload", do: func() error {
				sd.ok("reset-failed", UnitName) // forget a failed state; fine if there is none
				return sd.run("daemon-reload")
			}})
		}
	}
	var kept []string
	for _, d := range []struct{ path, what string }{{StateDir, "the data and the binary"}, {PrivateStateDir, "where systemd keeps them"}} {
		p := root.path(d.path)
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if u.Purge {
			steps = append(steps, step{verb: "remove", what: d.path + " (" + d.what + ")", do: func() error { return os.RemoveAll(p) }})
		} else if d.path == StateDir {
			kept = append(kept, d.path)
		}
	}
	where := ""
	if u.Root != "" {
		where = " in " + u.Root
	}
	if len(steps) == 0 {
		fmt.Fprintf(out, "fazt is not installed%s: nothing to do\n", where)
		return nil
	}
	if u.DryRun {
		fmt.Fprintf(out, "fazt uninstall would%s:\n", where)
	}
	if err := doSteps(out, steps, u.DryRun); err != nil {
		return err
	}
	for _, d := range kept {
		fmt.Fprintf(out, "kept %s: the data and the binary (fazt uninstall --purge removes them)\n", d)
	}
	if _, err := os.Stat(root.path(EnvFile)); err == nil {
		fmt.Fprintf(out, "kept %s: it is yours; remove it by hand if you no longer need it\n", EnvFile)
	}
	if u.DryRun {
		fmt.Fprintln(out, "dry run: nothing changed")
	}
	return nil
}

// doSteps prints each step and its detail, and carries it out unless
// dryRun, stopping at the first that fails.
func doSteps(out io.Writer, steps []step, dryRun bool) error {
	for _, s := range steps {
		fmt.Fprintf(out, "  %-6s %s\n", s.verb, s.what)
		fmt.Fprint(out, s.detail)
		if dryRun {
			continue
		}
		if err := s.do(); err != nil {
			return fmt.Errorf("%s %s: %w", s.verb, s.what, err)
		}
	}
	return nil
}

// path is p under Root.
func (in Install) path(p string) string {
	if in.Root == "" {
		return p
	}
	return filepath.Join(in.Root, p)
}

// checkSystem says what is missing for changing the live system.
func checkSystem(euid int, runDir string) error {
	if euid != 0 {
		return fmt.Errorf("changing the system's services needs root: run it with sudo, or give --root DIR to stage the files in a directory")
	}
	if st, err := os.Stat(runDir); err != nil || !st.IsDir() {
		return fmt.Errorf("%w: systemd is not running on this machine (no %s): install Fazt on a systemd host, or give --root DIR to stage the files in a directory", eventlog.ErrUnavailable, runDir)
	}
	if _, err := exec.LookPath("systemctl"); err != nil {
		return fmt.Errorf("%w: systemctl is not on PATH: %v", eventlog.ErrUnavailable, err)
	}
	return nil
}

// systemctl runs systemctl on the live system.
type systemctl struct{ ctx context.Context }

func (s systemctl) run(args ...string) error {
	out, err := exec.CommandContext(s.ctx, "systemctl", args...).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if args[0] == "start" || args[0] == "restart" {
			msg += "\nsee why: journalctl -u " + UnitName + " -n 50 --no-pager"
		}
		return fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return nil
}

// ok reports whether systemctl exits 0 (is-enabled, is-active).
func (s systemctl) ok(args ...string) bool {
	return exec.CommandContext(s.ctx, "systemctl", args...).Run() == nil
}

// fileHash is the hex SHA-256 of the file's bytes.
func fileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// WriteFile writes r to path atomically: a temporary file in the same
// directory, fsynced, then renamed over path, and the directory fsynced.
// A reader sees the old file or the new one, also after a power cut.
func WriteFile(path string, r io.Reader, mode fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
