package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/spf13/cobra"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/provision"
)

// releaseKey and releaseURL, set at link time (-ldflags "-X
// main.releaseKey=RWQ… -X main.releaseURL=https://…/manifest.json"), are
// the minisign public key(s) releases are checked with and where
// `fazt upgrade` finds the latest release.
var releaseKey, releaseURL string

const (
	defaultReadyTimeout = 5 * time.Minute
	// rollbackTimeout is the least a rollback waits for the previous
	// version to be ready again.
	rollbackTimeout = 2 * time.Minute
)

type upgradeOptions struct {
	from, key, data, binary, request string
	readyTimeout                     time.Duration
	detach, keyGiven, dryRun         bool
}

func (a *app) upgradeCmd() *cobra.Command {
	var o upgradeOptions
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Replace this fazt with a newer signed release, rolling back by itself if it does not become ready",
		Long: `Upgrade fetches a release manifest (--from: a URL or a file; its signature is
beside it, with .minisig appended), checks its minisign signature with the
release key (built in, or --key), picks this platform's binary and checks
that its version is newer than the running one; anything else is refused
before anything changes. It then writes the binary beside the one in use,
checks its size and SHA-256, keeps the old one as NAME.prev and renames
the new one into place.

If a server runs for the data directory, it is restarted on the new
binary (by systemd when it runs under it, else by re-exec: the server
gets SIGUSR2) and must answer /readyz at the new version within
--ready-timeout. If it exits, reports a halted read model, or is not
ready in time, the previous binary is put back and started again. Every
step is recorded in the log: fazt events read provision.upgrades.
--dry-run checks the release and says what would be done.

An upgrade cut short (the command killed, the machine down) is finished
by the next fazt upgrade before anything else: completed if the new
version is ready, otherwise rolled back.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			if o.from == "" {
				return usagef(cmd, "--from: no release source built in; pass the URL or path of a release's manifest.json")
			}
			if !strings.Contains(o.from, "://") {
				abs, err := filepath.Abs(o.from)
				if err != nil {
					return err
				}
				o.from = abs
			}
			o.keyGiven = cmd.Flags().Changed("key")
			if o.detach {
				return a.upgradeDetached(o)
			}
			return a.upgrade(cmd.Context(), o)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&o.from, "from", releaseURL, "the release's manifest.json: an http(s) URL or a file path")
	f.StringVar(&o.key, "key", releaseKey, "minisign public key(s) the release must be signed by, or a .pub file; the default is built in")
	f.StringVar(&o.data, "data", a.envOr("FAZT_DATA", defaultData), "data directory of the server to upgrade (env FAZT_DATA)")
	f.StringVar(&o.binary, "binary", "", "the binary to replace (default: the running server's, else this one)")
	f.DurationVar(&o.readyTimeout, "ready-timeout", defaultReadyTimeout, "how long the new version has to become ready before it is rolled back")
	f.BoolVar(&o.dryRun, "dry-run", false, "check the release and say what would be done; change nothing, record nothing")
	f.StringVar(&o.request, "request", "", "carry out this requested upgrade (the ID of its provision.upgrade_requested event)")
	f.BoolVar(&o.detach, "detach", false, "run in the background, in a session of its own, logging to DIR/provision")
	_ = f.MarkHidden("request")
	_ = f.MarkHidden("detach")
	return cmd
}

// upgradeDetached starts the same upgrade in a session of its own and
// returns: the provisioning service uses it, so that the upgrade
// outlives the server it restarts.
func (a *app) upgradeDetached(o upgradeOptions) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"upgrade", "--from", o.from, "--data", o.data, "--ready-timeout", o.readyTimeout.String()}
	if o.keyGiven {
		args = append(args, "--key", o.key)
	}
	if o.binary != "" {
		args = append(args, "--binary", o.binary)
	}
	name := "upgrade.log"
	if o.request != "" {
		args = append(args, "--request", o.request)
		name = "upgrade-" + o.request + ".log"
	}
	dir := filepath.Join(o.data, "provision")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	wd, _ := os.Getwd()
	pid, err := provision.StartDetached(exe, args, wd, filepath.Join(dir, name), os.Environ())
	if err != nil {
		return fmt.Errorf("start the upgrade: %w", err)
	}
	fmt.Fprintf(a.stdout, "upgrade running as pid %d, logging to %s\n", pid, filepath.Join(dir, name))
	return nil
}

// upgrader carries one upgrade.
type upgrader struct {
	a      *app
	o      upgradeOptions
	id     string
	status *provision.Status // the server before the upgrade; nil when none runs
	out    io.Writer
}

// journal is DIR/provision/upgrade.json, written before the swap and
// removed once the upgrade is completed or rolled back: an upgrade
// interrupted in between (the command killed, the machine down) is
// found and finished by the next `fazt upgrade`.
type journal struct {
	Upgrade string           `json:"upgrade"`
	From    string           `json:"from_version"`
	To      string           `json:"to_version"`
	Binary  string           `json:"binary"`
	SHA256  string           `json:"sha256"`
	Server  provision.Status `json:"server"` // as it ran before the upgrade
}

func journalPath(data string) string { return filepath.Join(data, "provision", "upgrade.json") }

func (a *app) upgrade(ctx context.Context, o upgradeOptions) (err error) {
	unlock, err := provision.Lock(o.data)
	if err != nil {
		return err
	}
	defer unlock()
	u := &upgrader{a: a, o: o, id: o.request, out: a.stdout}
	if b, err := os.ReadFile(journalPath(o.data)); err == nil {
		var j journal
		if err := json.Unmarshal(b, &j); err != nil {
			return fmt.Errorf("%s is damaged (%v): check which binary is at the server's path, then delete it", journalPath(o.data), err)
		}
		if o.dryRun {
			fmt.Fprintf(u.out, "an interrupted upgrade %s → %s would be finished first (dry run: nothing done)\n", j.From, j.To)
			return nil
		}
		return u.resume(ctx, j)
	}
	if u.id == "" {
		u.id = ulid.Make().String()
	}
	st, err := u.serverStatus(ctx)
	if err != nil {
		return err
	}
	u.status = st
	running := buildVersion().Version
	if st != nil {
		running = st.Version
	}
	if o.dryRun {
		return u.dryRun(ctx, running)
	}
	if o.request == "" {
		req := provision.UpgradeRequested{Upgrade: u.id, From: o.from, Running: running, By: provision.ByCommand}
		if o.keyGiven {
			req.Key = o.key
		}
		u.record(ctx, provision.TypeUpgradeRequested, req)
	}
	refuse := func(to string, err error) error {
		u.record(ctx, provision.TypeUpgradeRefused, provision.UpgradeRefused{Upgrade: u.id, Running: running, To: to, Reason: err.Error()})
		return err
	}

	keys, err := provision.ParseKeys(o.key)
	if err != nil {
		return refuse("", err)
	}
	rel, err := provision.Source{Location: o.from}.Fetch(ctx, keys)
	if err != nil {
		return refuse("", err)
	}
	to := rel.Manifest.Version
	bin, err := rel.Manifest.For(provision.Platform())
	if err != nil {
		return refuse(to, err)
	}
	if err := provision.Newer(to, running); err != nil {
		return refuse(to, err)
	}
	target := o.binary
	if target == "" && st != nil {
		target = st.Executable
	}
	if target == "" {
		if target, err = os.Executable(); err != nil {
			return err
		}
	}
	if target, err = filepath.EvalSymlinks(target); err != nil {
		return fmt.Errorf("the binary to replace: %w", err)
	}
	fmt.Fprintf(u.out, "release %s for %s: signature good, %s (%d bytes, sha256 %s)\n", to, provision.Platform(), bin.File, bin.Size, bin.SHA256)
	staged, err := rel.Stage(ctx, bin, target)
	if err != nil {
		if errors.Is(err, provision.ErrRefused) {
			return refuse(to, err)
		}
		return err
	}
	via := "none"
	switch {
	case st == nil:
	case st.Unit != "":
		via = "systemd"
	default:
		via = "reexec"
	}
	u.record(ctx, provision.TypeUpgradeStarted, provision.UpgradeStarted{Upgrade: u.id, From: running, To: to, Binary: target, SHA256: bin.SHA256, Platform: provision.Platform(), Via: via})
	j := journal{Upgrade: u.id, From: running, To: to, Binary: target, SHA256: bin.SHA256}
	if st != nil {
		j.Server = *st
		if err := writeFileAtomic(journalPath(o.data), j); err != nil {
			os.Remove(staged)
			return err
		}
	}
	if err := provision.Swap(staged, target); err != nil {
		os.Remove(staged)
		os.Remove(journalPath(o.data))
		return err
	}
	fmt.Fprintf(u.out, "installed %s at %s; the previous binary is kept as %s\n", to, target, target+provision.PrevSuffix)
	if st == nil {
		fmt.Fprintf(u.out, "no server is running for %s: %s starts with the next fazt serve\n", o.data, to)
		return nil
	}
	return u.finish(ctx, j, u.restart(ctx, to, false))
}

// dryRun checks the release as the upgrade would, short of fetching
// the binary, and says what the upgrade would do.
func (u *upgrader) dryRun(ctx context.Context, running string) error {
	keys, err := provision.ParseKeys(u.o.key)
	if err != nil {
		return err
	}
	rel, err := provision.Source{Location: u.o.from}.Fetch(ctx, keys)
	if err != nil {
		return err
	}
	bin, err := rel.Manifest.For(provision.Platform())
	if err != nil {
		return err
	}
	if err := provision.Newer(rel.Manifest.Version, running); err != nil {
		return err
	}
	target := u.o.binary
	if target == "" && u.status != nil {
		target = u.status.Executable
	}
	if target == "" {
		if target, err = os.Executable(); err != nil {
			return err
		}
	}
	to := rel.Manifest.Version
	how := "no server is running for " + u.o.data + ": nothing would be restarted"
	switch {
	case u.status != nil && u.status.Unit != "":
		how = fmt.Sprintf("would restart %s with systemctl and wait up to %s for it to be ready at %s, else roll back", u.status.Unit, u.o.readyTimeout, to)
	case u.status != nil:
		how = fmt.Sprintf("would re-exec the server (pid %d) and wait up to %s for it to be ready at %s, else roll back", u.status.PID, u.o.readyTimeout, to)
	}
	fmt.Fprintf(u.out, "release %s for %s: signature good, %s (%d bytes, sha256 %s)\nwould replace %s (%s → %s), keeping it as %s\n%s\n",
		to, provision.Platform(), bin.File, bin.Size, bin.SHA256, target, running, to, target+provision.PrevSuffix, how)
	return nil
}

// finish completes the upgrade j when reason is empty (the new version
// is ready), and otherwise rolls it back.
func (u *upgrader) finish(ctx context.Context, j journal, reason string) error {
	if reason == "" {
		u.record(ctx, provision.TypeUpgradeCompleted, provision.UpgradeCompleted{Upgrade: j.Upgrade, From: j.From, To: j.To})
		os.Remove(journalPath(u.o.data))
		fmt.Fprintf(u.out, "upgraded %s → %s: serving and ready\n", j.From, j.To)
		return nil
	}
	fmt.Fprintf(u.out, "%s did not become ready: %s\nrolling back to %s\n", j.To, reason, j.From)
	if err := provision.Restore(j.Binary); err != nil {
		return fmt.Errorf("upgrade to %s failed (%s) and the previous binary could not be restored: %w; copy %s over %s by hand", j.To, reason, err, j.Binary+provision.PrevSuffix, j.Binary)
	}
	return u.rolledBack(ctx, j, reason)
}

// rolledBack starts the previous binary, now in place, and records the
// rollback.
func (u *upgrader) rolledBack(ctx context.Context, j journal, reason string) error {
	if back := u.restart(ctx, j.From, true); back != "" {
		return fmt.Errorf("upgrade to %s failed (%s); %s is back in place at %s but did not become ready either: %s; see the server's log, then run fazt upgrade again to finish", j.To, reason, j.From, j.Binary, back)
	}
	u.record(ctx, provision.TypeUpgradeRolledBack, provision.UpgradeRolledBack{Upgrade: j.Upgrade, From: j.From, To: j.To, Reason: reason})
	os.Remove(journalPath(u.o.data))
	return fmt.Errorf("upgrade to %s failed: %s; rolled back: %s serves again (fazt events read %s tells the story)", j.To, reason, j.From, provision.UpgradeStream)
}

// resume finishes an upgrade that was interrupted after its journal was
// written: whichever binary is in place, the server ends up ready at the
// new version (completed) or back at the old one (rolled back).
func (u *upgrader) resume(ctx context.Context, j journal) error {
	fmt.Fprintf(u.out, "finishing the interrupted upgrade %s → %s first\n", j.From, j.To)
	u.id, u.status = j.Upgrade, &j.Server
	provision.Clean(j.Binary)
	b, err := os.ReadFile(j.Binary)
	if err != nil {
		return fmt.Errorf("the binary %s: %w; put %s back by hand", j.Binary, err, j.Binary+provision.PrevSuffix)
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != j.SHA256 {
		// The old binary is in place (the swap never happened, or the
		// restore did): make sure it serves.
		return u.rolledBack(ctx, j, "the upgrade was interrupted before "+j.To+" was ready")
	}
	if st, _ := u.serverStatus(ctx); st != nil && st.Version == j.From {
		// Swapped, but the server was never restarted.
		u.status = st
		return u.finish(ctx, j, u.restart(ctx, j.To, false))
	}
	wctx, cancel := context.WithTimeout(ctx, u.o.readyTimeout)
	defer cancel()
	pid := j.Server.PID
	return u.finish(ctx, j, u.waitReady(wctx, j.To, func() bool { return provision.Alive(pid) }))
}

// serverStatus asks the server running for the data directory what it
// runs; nil when none answers.
func (u *upgrader) serverStatus(ctx context.Context) (*provision.Status, error) {
	st, err := readState(u.o.data)
	if err != nil {
		return nil, nil
	}
	c, err := u.a.connect(serverFlags{data: u.o.data})
	if err != nil {
		return nil, nil
	}
	defer c.close()
	var s provision.Status
	if _, err := c.call(ctx, http.MethodGet, "/v1/provision/status", nil, nil, &s); err != nil {
		var se *serverError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("the server at %s (pid %d) cannot be upgraded this way: %w", st.Addr, st.PID, err)
		}
		return nil, nil // none answers: a stale serve.json
	}
	return &s, nil
}

// record appends one step to the log through the server; a step that
// cannot be recorded (no server answers) is reported, not fatal.
func (u *upgrader) record(ctx context.Context, typ string, data any) {
	if u.status == nil {
		return
	}
	b, err := json.Marshal(data)
	if err == nil {
		rec := provision.Record{ID: ulid.Make().String(), Type: typ, Data: b}
		for attempt := 0; attempt < 3; attempt++ {
			var c *client
			if c, err = u.a.connect(serverFlags{data: u.o.data}); err == nil {
				_, err = c.call(ctx, http.MethodPost, "/v1/provision/records", nil, rec, nil)
				c.close()
			}
			if err == nil {
				return
			}
			time.Sleep(time.Second)
		}
	}
	fmt.Fprintf(u.a.stderr, "warning: could not record %s in the log: %v\n", typ, err)
}

// restart starts the binary now in place and waits until the server is
// ready at version want; it returns why not, or "". Rolling back, a
// server that does not come back by re-exec is stopped and started
// afresh, detached, as it was started.
func (u *upgrader) restart(ctx context.Context, want string, rollingBack bool) string {
	st := u.status
	limit := u.o.readyTimeout
	if rollingBack {
		// Getting the previous version back is worth a longer wait.
		limit = max(limit, rollbackTimeout)
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if st.Unit != "" {
		fmt.Fprintf(u.out, "restarting %s with systemctl; waiting up to %s for %s to be ready\n", st.Unit, limit, want)
		// --no-block: the readiness (and a halted read model) is watched
		// here, within the limit, not by systemctl's own timeout.
		if out, err := exec.CommandContext(ctx, "systemctl", "restart", "--no-block", st.Unit).CombinedOutput(); err != nil {
			return fmt.Sprintf("systemctl restart %s: %v: %s", st.Unit, err, strings.TrimSpace(string(out)))
		}
		return u.waitReady(ctx, want, nil)
	}
	pid := st.PID
	if provision.Alive(pid) && syscall.Kill(pid, provision.ReexecSignal) == nil {
		fmt.Fprintf(u.out, "restarting the server (pid %d) by re-exec; waiting up to %s for %s to be ready\n", pid, limit, want)
		why := u.waitReady(ctx, want, func() bool { return provision.Alive(pid) })
		if why == "" || !rollingBack {
			return why
		}
		fmt.Fprintf(u.out, "the server did not come back by re-exec (%s); starting it afresh\n", why)
	} else if !rollingBack {
		return fmt.Sprintf("the server (pid %d) is gone", pid)
	}
	// The process is gone or stuck: stop it and start the binary afresh,
	// detached, as it was started.
	if err := stop(pid); err != nil {
		return err.Error()
	}
	logPath := filepath.Join(u.o.data, "provision", "server.log")
	fmt.Fprintf(u.out, "starting %s afresh (output in %s)\n", want, logPath)
	args := []string{"serve", "--data", u.o.data}
	if len(st.Args) > 1 {
		args = slices.Clone(st.Args[1:])
	}
	newPID, err := provision.StartDetached(st.Executable, args, st.Dir, logPath, os.Environ())
	if err != nil {
		return fmt.Sprintf("start %s: %v", st.Executable, err)
	}
	// Its process ID, for whoever started the first one (it knows that
	// one's only).
	_ = os.WriteFile(filepath.Join(u.o.data, "provision", "server.pid"), fmt.Appendf(nil, "%d\n", newPID), 0o600)
	fmt.Fprintf(u.out, "started as pid %d\n", newPID)
	ctx2, cancel2 := context.WithTimeout(context.WithoutCancel(ctx), limit)
	defer cancel2()
	return u.waitReady(ctx2, want, func() bool { return provision.Alive(newPID) })
}

// stop ends process pid: SIGTERM, then SIGKILL after a grace period.
func stop(pid int) error {
	if !provision.Alive(pid) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(kernel.DefaultShutdownTimeout + 5*time.Second)
	for provision.Alive(pid) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if provision.Alive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 100 && provision.Alive(pid); i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if provision.Alive(pid) {
		return fmt.Errorf("the server (pid %d) does not stop; stop it by hand", pid)
	}
	return nil
}

// waitReady polls the server of the data directory until it reports
// version want and /readyz answers 200. It gives up when ctx ends, when
// alive (if given) says the process is gone, or at once when the server
// at that version reports a halted read model, which waiting does not
// mend. It returns why it gave up, or "".
func (u *upgrader) waitReady(ctx context.Context, want string, alive func() bool) string {
	limit := u.o.readyTimeout
	if dl, ok := ctx.Deadline(); ok {
		limit = time.Until(dl).Round(time.Second)
	}
	const noAnswer = "no answer yet"
	last := noAnswer
	hc := &http.Client{Timeout: 5 * time.Second}
	for {
		if alive != nil && !alive() {
			if last == noAnswer {
				return fmt.Sprintf("the server exited before %s answered; see its output", want)
			}
			return fmt.Sprintf("the server exited before %s was ready (last seen: %s); see its output", want, last)
		}
		if why, ok := u.probe(ctx, hc, want); ok {
			return ""
		} else if strings.HasPrefix(why, "halted") {
			return why
		} else if why != "" {
			last = why
		}
		select {
		case <-ctx.Done():
			return fmt.Sprintf("not ready at %s within %s: %s", want, limit, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// probe asks the server once: ok when it runs want and is ready.
func (u *upgrader) probe(ctx context.Context, hc *http.Client, want string) (why string, ok bool) {
	c, err := u.a.connect(serverFlags{data: u.o.data})
	if err != nil {
		return "", false
	}
	defer c.close()
	var s provision.Status
	if _, err := c.call(ctx, http.MethodGet, "/v1/provision/status", nil, nil, &s); err != nil {
		return "", false
	}
	if s.Version != want {
		return fmt.Sprintf("still %s", s.Version), false
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/readyz", nil)
	if err != nil {
		return "", false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	var rd kernel.Readiness
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&rd)
	if resp.StatusCode == http.StatusOK {
		return "", true
	}
	why = rd.Status
	if rd.Reason != "" {
		why += ": " + rd.Reason
	}
	if len(rd.Projections) > 0 {
		why += " (" + strings.Join(rd.Projections, "; ") + ")"
	}
	return why, false
}
