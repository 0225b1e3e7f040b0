package provision

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// ReexecSignal asks a server to re-exec its binary: nginx's signal for
// a binary upgrade.
const ReexecSignal = syscall.SIGUSR2

// Reexec is a server's readiness to re-exec itself (WatchReexec).
type Reexec struct {
	exe       string
	requested atomic.Bool
	stop      func()
}

// WatchReexec returns a context that ends when the process receives
// ReexecSignal, and the Reexec that then execs the binary: a server
// serves with the context, shuts down, and calls Exec. The executable's
// path is taken now, before an upgrade replaces the file.
func WatchReexec(ctx context.Context) (context.Context, *Reexec) {
	exe, err := os.Executable()
	if err != nil {
		return ctx, &Reexec{stop: func() {}}
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &Reexec{exe: exe}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, ReexecSignal)
	done := make(chan struct{})
	r.stop = func() {
		signal.Stop(ch)
		select {
		case <-done:
		default:
			close(done)
		}
	}
	go func() {
		select {
		case <-ch:
			r.requested.Store(true)
			cancel()
		case <-done:
		case <-ctx.Done():
		}
	}()
	return ctx, r
}

// Requested reports whether the signal came.
func (r *Reexec) Requested() bool { return r.requested.Load() }

// Stop stops watching for the signal.
func (r *Reexec) Stop() { r.stop() }

// Exec replaces the process with the binary at its path, with the same
// arguments and environment; it returns only on failure. Call it after
// everything is closed (the listener, the log's lock): descriptors are
// closed on exec, the process ID stays.
func (r *Reexec) Exec() error {
	r.Stop()
	if r.exe == "" {
		return fmt.Errorf("re-exec: the path of this binary is unknown")
	}
	if err := syscall.Exec(r.exe, os.Args, os.Environ()); err != nil {
		return fmt.Errorf("re-exec %s: %w", r.exe, err)
	}
	return nil
}

// SystemdUnit returns the systemd service unit this process runs as, or
// "" when systemd did not start it (INVOCATION_ID, which systemd sets
// for every unit it starts, is unset).
func SystemdUnit() string {
	if os.Getenv("INVOCATION_ID") == "" {
		return ""
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	return unitFromCgroup(b)
}

// unitFromCgroup finds the service in /proc/self/cgroup's text: the
// last ".service" element of the path (cgroup v2 "0::/system.slice/
// fazt.service", or a v1 line).
func unitFromCgroup(b []byte) string {
	for _, line := range bytes.Split(b, []byte("\n")) {
		parts := strings.SplitN(string(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		p := parts[2]
		for p != "/" && p != "." && p != "" {
			if base := path.Base(p); strings.HasSuffix(base, ".service") {
				return base
			}
			p = path.Dir(p)
		}
	}
	return ""
}

// Alive reports whether the process pid runs (a zombie does not).
func Alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // no procfs: trust kill
	}
	// "pid (comm) S ...": the state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return true
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

// StartDetached starts exe with args in dir, in a session of its own
// (it outlives the caller and its terminal), its output appended to
// logPath, and returns its process ID without waiting for it.
func StartDetached(exe string, args []string, dir, logPath string, env []string) (int, error) {
	out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer out.Close()
	cmd := exec.Command(exe, args...)
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	pid := cmd.Process.Pid
	go cmd.Wait() // reaps it if it ends while the caller lives
	return pid, nil
}
