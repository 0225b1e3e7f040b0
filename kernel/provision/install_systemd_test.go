package provision

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestInstallUnderSystemd installs Fazt for real, under a real systemd:
// it boots this machine's own system in a container (systemd-nspawn,
// a throwaway overlay over /, a private network), runs `fazt install`
// in it without --root, and checks that the service starts (Type=notify:
// only after READY=1), runs as a dynamic user with CAP_NET_BIND_SERVICE
// alone, that a second install changes nothing, and that uninstall
// keeps the data until --purge. Opt-in: it needs root, systemd and
// systemd-nspawn (apt-get install -y systemd systemd-container), and
// takes a few seconds to boot.
func TestInstallUnderSystemd(t *testing.T) {
	if os.Getenv("FAZT_SYSTEMD_E2E") == "" {
		t.Skip("boots a systemd container: set FAZT_SYSTEMD_E2E=1 (needs root; apt-get install -y systemd systemd-container)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, tool := range []string{"systemd-nspawn", "unshare", "nsenter", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: %v", tool, err)
		}
	}
	// Not under /tmp: the container's systemd may mount a tmpfs there.
	work, err := os.MkdirTemp("/var/tmp", "fazt-systemd-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	bin := filepath.Join(work, "fazt")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/fazt").CombinedOutput(); err != nil {
		t.Fatalf("build fazt: %v\n%s", err, out)
	}

	// The container's root is an overlay on a bind mount of /, made in a
	// mount namespace of its own: nothing it writes reaches the host.
	rootDir := filepath.Join(work, "root")
	if err := os.Mkdir(rootDir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, hadNspawnRun := os.Stat("/run/systemd/nspawn")
	logf, err := os.Create(filepath.Join(work, "nspawn.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	boot := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount --make-rprivate / && mount --bind / "$1" && exec systemd-nspawn --quiet --register=no --keep-unit --private-network --volatile=overlay -D "$1" -b`,
		"boot", rootDir)
	boot.Stdout, boot.Stderr = logf, logf
	boot.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := boot.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { boot.Wait(); close(exited) }()
	t.Cleanup(func() {
		boot.Process.Signal(syscall.SIGTERM) // nspawn powers the container off
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			boot.Process.Kill()
			<-exited
		}
		// What nspawn leaves on the host: its cgroups (empty now) and,
		// when it made it, its runtime directory.
		for _, h := range []string{"/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"} {
			for _, d := range []string{"payload", "supervisor"} {
				removeEmptyCgroup(filepath.Join(h, d))
			}
		}
		if hadNspawnRun != nil {
			os.RemoveAll("/run/systemd/nspawn")
		}
	})

	init := waitContainerInit(t, boot.Process.Pid, exited, logf.Name())
	in := func(args ...string) (string, error) {
		out, err := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(init), "-a"}, args...)...).CombinedOutput()
		return string(out), err
	}
	for start := time.Now(); ; time.Sleep(200 * time.Millisecond) {
		out, _ := in("systemctl", "is-system-running")
		if s := strings.TrimSpace(out); s == "running" || s == "degraded" {
			break
		}
		if time.Since(start) > 2*time.Minute {
			t.Fatalf("the container's systemd did not finish booting: %s", out)
		}
	}

	out, err := in(bin, "install")
	if err != nil || !strings.Contains(out, "run    systemctl start fazt.service") || !strings.Contains(out, "fazt is running") {
		t.Fatalf("install: %v\n%s", err, out)
	}
	// systemctl start returned: READY=1 came. The service is active,
	// ready, a dynamic user's, with one capability.
	show, err := in("systemctl", "show", "fazt", "-p", "ActiveState", "-p", "StatusText", "-p", "MainPID", "-p", "NRestarts")
	if err != nil || !strings.Contains(show, "ActiveState=active\n") || !strings.Contains(show, "StatusText=ready\n") || !strings.Contains(show, "NRestarts=0\n") {
		t.Fatalf("systemctl show: %v\n%s", err, show)
	}
	var pid string
	for l := range strings.SplitSeq(show, "\n") {
		if v, ok := strings.CutPrefix(l, "MainPID="); ok {
			pid = v
		}
	}
	status, err := in("cat", "/proc/"+pid+"/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CapEff:\t0000000000000400\n", "CapBnd:\t0000000000000400\n", "CapAmb:\t0000000000000400\n", "NoNewPrivs:\t1\n", "Seccomp:\t2\n"} {
		if !strings.Contains(status, want) {
			t.Errorf("the server's /proc/%s/status lacks %q:\n%s", pid, want, status)
		}
	}
	if strings.Contains(status, "Uid:\t0\t") {
		t.Errorf("the server runs as root:\n%s", status)
	}
	if out, err := in(bin, "schema", "list", "--data", DataDir); err != nil || !strings.Contains(out, "declared by the binary") {
		t.Errorf("the server does not answer its API: %v\n%s", err, out)
	}
	if out, err := in("journalctl", "-u", "fazt", "--no-pager"); err != nil || !strings.Contains(out, "API token created in "+DataDir+"/token (not logged") {
		t.Errorf("the journal: %v\n%s", err, out)
	}

	if out, err := in(bin, "install"); err != nil || out != "fazt is installed as asked: nothing changed\n" {
		t.Fatalf("second install: %v %q", err, out)
	}

	if out, err := in(bin, "uninstall"); err != nil || !strings.Contains(out, "kept "+StateDir) {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	if out, err := in("systemctl", "is-active", "fazt"); err == nil {
		t.Fatalf("fazt still active after uninstall: %s", out)
	}
	if out, err := in("test", "-s", DataDir+"/token"); err != nil {
		t.Fatalf("uninstall removed the data: %v %s", err, out)
	}
	if out, err := in(bin, "uninstall", "--purge"); err != nil || !strings.Contains(out, "remove "+StateDir) {
		t.Fatalf("uninstall --purge: %v\n%s", err, out)
	}
	if out, err := in("test", "-e", PrivateStateDir); err == nil {
		t.Fatalf("purge left %s: %s", PrivateStateDir, out)
	}
}

// waitContainerInit returns the pid of the container's systemd: the
// process named systemd among nspawn's descendants.
func waitContainerInit(t *testing.T, nspawn int, exited <-chan struct{}, log string) int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			b, _ := os.ReadFile(log)
			t.Fatalf("systemd-nspawn ended:\n%s", b)
		default:
		}
		parent := map[int]int{}
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
			if err != nil {
				continue
			}
			// pid (comm) state ppid ...: comm may hold spaces; cut at the last ')'.
			f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
			if len(f) > 1 {
				parent[pid], _ = strconv.Atoi(f[1])
			}
		}
		for pid := range parent {
			comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
			if strings.TrimSpace(string(comm)) != "systemd" {
				continue
			}
			for p := parent[pid]; p > 1; p = parent[p] {
				if p == nspawn {
					return pid
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no systemd in the container after 60s")
	return 0
}

// removeEmptyCgroup removes a cgroup directory tree that holds no
// process (rmdir refuses one that does).
func removeEmptyCgroup(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.IsDir() {
			removeEmptyCgroup(filepath.Join(dir, e.Name()))
		}
	}
	syscall.Rmdir(dir)
}
