// Package provision is the lifecycle service: it replaces the running
// binary with a signed release and puts the previous one back by itself
// when the new one does not become ready.
//
// (Upgrade and rollback notes, to fold into the package doc.)
//
// # Releases
//
// A release is a manifest ([Manifest], manifest.json: product, version,
// and per platform ("linux/amd64") the binary's file name, size and
// SHA-256) beside the binaries, with a minisign signature of the
// manifest's bytes (manifest.json.minisig). Minisign rather than a bare
// Ed25519 signature over canonical JSON: its signature covers the file
// byte for byte, so the manifest needs no canonical form; operators can
// check a release with the stock tool (minisign -Vm manifest.json -P
// KEY); its keys and signatures are a known, stable text format; and
// both its modes (Ed25519 over the bytes, or over their BLAKE2b-512 hash,
// the stock tool's default) are Ed25519. The verifier is
// aead.dev/minisign, a small, maintained Go implementation.
//
// [Source.Fetch] reads the manifest and its signature from a file path
// or an http(s) URL and [Verify] checks them against the release keys
// (built into the binary at link time, or given by flag; several for a
// rotation). Everything else follows from the signed manifest: the
// binary's size and hash ([Release.Stage] refuses a byte more, less or
// different), its platform ([Manifest.For]) and its version, which must
// be newer than the one running ([Newer]): an old signed manifest
// replayed cannot downgrade a server. Every refusal matches [ErrRefused]
// (and eventlog.ErrInvalid) and happens before anything on disk
// changes.
//
// # The swap
//
// [Release.Stage] writes the binary into a new file beside the target
// (same directory, so the same file system), checks it, fsyncs it and
// makes it executable. [Swap] then keeps the target as target.prev
// (a hard link, else a copy, renamed into place) and renames the staged
// file over the target, fsyncing the directory: at every instant the
// target path holds a whole binary, the old or the new one, so a crash
// (SIGKILL, power loss) at any step leaves a working binary in place.
// [Restore] renames a copy of target.prev back over the target, keeping
// target.prev. [Lock] keeps two upgrades of one data directory apart.
//
// # Restart and rollback
//
// The server reports what it runs at GET /v1/provision/status ([Status]:
// version, process, executable and arguments, and its systemd unit, from
// INVOCATION_ID and its cgroup). The new binary is started by systemd
// when the server runs under it (systemctl restart --no-block), else by
// re-exec: on SIGUSR2 (nginx's signal for a binary upgrade) the server
// shuts down gracefully and execs its own path,
// which now holds the new binary, keeping its process ID, arguments,
// environment and terminal ([WatchReexec]). The upgrade then waits for
// the server to answer /readyz at the new version within a limit; a
// server that exits, answers "halted" (a read model that cannot fold the
// data: it needs an operator, waiting will not help) or is not ready in
// time is rolled back: the previous binary is restored and started the
// same way (a server that no longer answers is stopped and started
// afresh, detached, logging to DIR/provision/server.log, its process ID
// in DIR/provision/server.pid). The command
// writes a journal (DIR/provision/upgrade.json) before the swap and
// removes it once the upgrade is completed or rolled back, so that an
// upgrade killed half way is finished by the next `fazt upgrade`.
//
// # Events
//
// Every step is an event on the stream "provision.upgrades", in the
// category "provision" that only this package writes (the kernel
// reserves it): [TypeUpgradeRequested], [TypeUpgradeStarted],
// [TypeUpgradeCompleted], [TypeUpgradeRolledBack] and
// [TypeUpgradeRefused], each with the versions and, where there is one,
// the reason; `fazt events read provision.upgrades` is the upgrade
// history. The command records them through the server
// (POST /v1/provision/records, which takes only these types), each with
// an ID of its own so that a retry is never a second record.
//
// The service is a consumer of the log like every other: a
// [TypeUpgradeRequested] event with "by": "service" (POST
// /v1/provision/upgrades) makes its reactor start `fazt upgrade` for
// that request, detached, so that it outlives the re-exec; a marker
// file per request keeps a redelivered event from starting a second
// one. Such a release is checked against the built-in key only, never
// one named in the request: the API token alone must not be enough to
// install a binary signed by a key of the caller's choosing. Under systemd the service cannot replace its own binary (the
// unit's file system is read-only to it) and records a refusal saying
// to run `sudo fazt upgrade`.
package provision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/fazt-sh/fazt/eventlog"
)

// PrevSuffix names the previous binary kept beside the target.
const PrevSuffix = ".prev"

// Stage writes the release's binary b into a new file beside target,
// checks its size and SHA-256 against the manifest, fsyncs it and makes
// it executable, and returns its path. On any failure the file is
// removed: ErrRefused when the bytes are not those the manifest names.
func (r Release) Stage(ctx context.Context, b Binary, target string) (string, error) {
	dir := filepath.Dir(target)
	removeLeftovers(target)
	f, err := os.CreateTemp(dir, stagePrefix(target)+"*")
	if err != nil {
		return "", fmt.Errorf("%w: cannot write beside %s: %v (run the upgrade as the binary's owner, e.g. with sudo)", eventlog.ErrUnavailable, target, err)
	}
	staged := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(staged)
		}
	}()
	rc, err := r.Open(ctx, b)
	if err != nil {
		if errors.Is(err, eventlog.ErrNotFound) {
			return "", refusef("release %s lists %s, which is not there: %v", r.Manifest.Version, b.File, err)
		}
		return "", err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(rc, b.Size+1))
	if err != nil {
		return "", fmt.Errorf("%w: download %s: %v", eventlog.ErrUnavailable, b.File, err)
	}
	if n != b.Size {
		return "", refusef("%s is %d bytes, the signed manifest says %d: truncated or replaced, not installed", b.File, n, b.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != b.SHA256 {
		return "", refusef("%s has SHA-256 %s, the signed manifest says %s: damaged or replaced, not installed", b.File, got, b.SHA256)
	}
	if err := f.Chmod(0o755); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("fsync %s: %w", staged, err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	ok = true
	return staged, nil
}

func stagePrefix(target string) string { return "." + filepath.Base(target) + ".upgrade-" }

// Clean removes the temporary files an interrupted upgrade left beside
// target (staged binaries, links under construction); hold Lock.
func Clean(target string) { removeLeftovers(target) }

// removeLeftovers removes staged files an interrupted upgrade left.
func removeLeftovers(target string) {
	dir := filepath.Dir(target)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), stagePrefix(target)) || strings.HasPrefix(e.Name(), "."+filepath.Base(target)+".keep-") {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// Swap puts the staged binary in place of target, keeping target as
// target+PrevSuffix. Both steps are renames within one directory, each
// followed by an fsync of the directory, so target always holds a whole
// binary.
func Swap(staged, target string) error {
	if err := keep(target, target+PrevSuffix); err != nil {
		return fmt.Errorf("keep the previous binary: %w", err)
	}
	if err := os.Rename(staged, target); err != nil {
		return fmt.Errorf("put the new binary in place: %w", err)
	}
	return syncDir(filepath.Dir(target))
}

// Restore puts target+PrevSuffix back in place of target, keeping
// target+PrevSuffix. It removes the temporary files an interrupted
// upgrade left beside target; hold Lock.
func Restore(target string) error {
	removeLeftovers(target) // of a restore or swap cut short
	prev := target + PrevSuffix
	if _, err := os.Stat(prev); err != nil {
		return fmt.Errorf("%w: no previous binary %s to restore: %v", eventlog.ErrNotFound, prev, err)
	}
	if err := keep(prev, target); err != nil {
		return fmt.Errorf("restore the previous binary: %w", err)
	}
	return syncDir(filepath.Dir(target))
}

// keep makes dst a copy of src by a hard link (or a copy, where links
// are not possible) under a temporary name, renamed over dst.
func keep(src, dst string) error {
	dir := filepath.Dir(dst)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(strings.TrimSuffix(dst, PrevSuffix))+".keep-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	tmp.Close()
	os.Remove(name)
	if err := os.Link(src, name); err != nil {
		if err := copyFile(src, name); err != nil {
			os.Remove(name)
			return err
		}
	}
	if err := os.Rename(name, dst); err != nil {
		os.Remove(name)
		return err
	}
	return syncDir(dir)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// Lock takes the upgrade lock of a data directory
// (DIR/provision/upgrade.lock), so that two upgrades never run at once;
// the lock goes with the process. Errors: eventlog.ErrConflict when
// another upgrade holds it.
func Lock(dataDir string) (unlock func(), err error) {
	dir := filepath.Join(dataDir, "provision")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, "upgrade.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: another upgrade of %s is under way; wait for it to finish", eventlog.ErrConflict, dataDir)
	}
	return func() { f.Close() }, nil
}
