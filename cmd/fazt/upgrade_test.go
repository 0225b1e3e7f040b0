package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"aead.dev/minisign"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/kerneltest"
	"github.com/fazt-sh/fazt/kernel/provision"
)

// upgradeKit is what the upgrade tests share: real builds of the binary
// (tag fazt_upgradetest adds the notes vertical), v0.1.0 with notes
// release 1, v0.2.0 with notes release 2, and a bad v0.2.0 whose notes
// fold halts on a note v0.1.0 wrote, all with the release key pub built
// in; and another key pair, which is not the release key.
type upgradeKit struct {
	dir              string
	old, new, bad    string
	pub, otherPub    minisign.PublicKey
	priv, otherPriv  minisign.PrivateKey
	oldSum, platform string
}

const (
	oldVersion = "v0.1.0"
	newVersion = "v0.2.0"
)

// kitBuild holds the kit, built once per run of the test binary for
// TestUpgrade and TestClusterRollingUpgrade; TestMain removes it.
var kitBuild struct {
	once sync.Once
	kit  *upgradeKit
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if kitBuild.kit != nil {
		os.RemoveAll(kitBuild.kit.dir)
	}
	os.Exit(code)
}

// sharedUpgradeKit returns the kit, building it at the first call.
func sharedUpgradeKit(t *testing.T) *upgradeKit {
	t.Helper()
	kitBuild.once.Do(func() { kitBuild.kit, kitBuild.err = buildUpgradeKit() })
	if kitBuild.err != nil {
		t.Fatal(kitBuild.err)
	}
	return kitBuild.kit
}

// buildUpgradeKit compiles the package once and links it three times
// (the -X values differ only at link time), without symbol tables,
// which makes each link cheaper.
func buildUpgradeKit() (*upgradeKit, error) {
	dir, err := os.MkdirTemp("", "fazt-upgrade-kit-")
	if err != nil {
		return nil, err
	}
	k := &upgradeKit{dir: dir, platform: runtime.GOOS + "/" + runtime.GOARCH}
	fail := func(err error) (*upgradeKit, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	if k.pub, k.priv, err = minisign.GenerateKey(nil); err != nil {
		return fail(err)
	}
	if k.otherPub, k.otherPriv, err = minisign.GenerateKey(nil); err != nil {
		return fail(err)
	}
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	k.old = filepath.Join(dir, "fazt-"+oldVersion)
	k.new = filepath.Join(dir, "fazt-"+newVersion)
	k.bad = filepath.Join(dir, "fazt-"+newVersion+"-halting")
	for _, b := range []struct{ out, ldflags string }{
		{k.old, "-X main.version=" + oldVersion},
		{k.new, "-X main.version=" + newVersion + " -X main.upgradeTestRelease=2"},
		{k.bad, "-X main.version=" + newVersion + " -X main.upgradeTestRelease=2-halting"},
	} {
		ldflags := "-s -w " + b.ldflags + " -X main.releaseKey=" + k.pub.String()
		cmd := exec.Command(goCmd, "build", "-tags", "fazt_upgradetest", "-ldflags", ldflags, "-o", b.out, ".")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fail(fmt.Errorf("go build -ldflags %q: %v\n%s", ldflags, err, out))
		}
	}
	k.oldSum, err = sumFile(k.old)
	if err != nil {
		return fail(err)
	}
	return k, nil
}

func sumFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), nil
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	s, err := sumFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// linkOrCopy makes dst the file src: the swap renames over names and
// never writes into a file, so sharing the build's inode is safe.
func linkOrCopy(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.Link(src, dst); err == nil {
		return
	}
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// release writes a release of binary as version into a new directory,
// signed with key, and returns its manifest's path. edit, when given,
// changes the manifest before it is signed.
func (k *upgradeKit) release(t *testing.T, version, binary string, key minisign.PrivateKey, edit func(*provision.Manifest)) string {
	t.Helper()
	dir := t.TempDir()
	name := "fazt-" + version + "-" + strings.ReplaceAll(k.platform, "/", "-")
	linkOrCopy(t, binary, filepath.Join(dir, name))
	b, err := provision.Describe(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	m := provision.Manifest{Product: provision.Product, Version: version, Platforms: map[string]provision.Binary{k.platform: b}}
	if edit != nil {
		edit(&m)
	}
	manifest, sig, err := provision.Sign(m, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, provision.ManifestName)
	if err := os.WriteFile(path, manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+provision.SignatureSuffix, sig, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// install puts the old build at DIR/bin/fazt, as an operator would.
func (k *upgradeKit) install(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bin")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "fazt")
	linkOrCopy(t, k.old, bin)
	return bin
}

// node is a data directory with `fazt serve` started on it from a binary.
type upNode struct {
	data string
	out  *kerneltest.Buffer
}

// serve starts bin serve on data as a child process and waits until it
// is ready; at cleanup it stops whatever server then runs on data (the
// same process after a re-exec, or one a rollback started afresh).
func serve(t *testing.T, bin, data string) *upNode {
	t.Helper()
	n := &upNode{data: data, out: &kerneltest.Buffer{}}
	cmd := exec.Command(bin, "serve", "--data", data, "--addr", "127.0.0.1:0")
	cmd.Stdout, cmd.Stderr = n.out, n.out
	cmd.Env = append(os.Environ(), "FAZT_DATA=", "FAZT_ADDR=", "FAZT_TOKEN=")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }() // reaps it, so that a dead server is seen gone
	t.Cleanup(func() {
		n.stop(t)
		// A server a rollback started afresh, should serve.json be gone.
		if b, err := os.ReadFile(filepath.Join(data, "provision", "server.pid")); err == nil {
			var p int
			if _, err := fmt.Sscan(string(b), &p); err == nil && provision.Alive(p) {
				_ = stop(p)
			}
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		<-exited
		if t.Failed() {
			t.Logf("output of the server started with %s:\n%s", bin, n.out.String())
			if b, err := os.ReadFile(filepath.Join(data, "provision", "server.log")); err == nil {
				t.Logf("output of the server a rollback started:\n%s", b)
			}
		}
	})
	n.waitVersion(t, oldVersionOf(bin))
	return n
}

func oldVersionOf(bin string) string {
	out, err := exec.Command(bin, "version", "--json").Output()
	if err != nil {
		return ""
	}
	var v versionInfo
	_ = json.Unmarshal(out, &v)
	return v.Version
}

// client finds the server of the data directory now.
func (n *upNode) client(t *testing.T) (kerneltest.Client, serveState, bool) {
	t.Helper()
	st, err := readState(n.data)
	if err != nil {
		return kerneltest.Client{}, st, false
	}
	tok, err := os.ReadFile(filepath.Join(n.data, kernel.TokenFile))
	if err != nil {
		return kerneltest.Client{}, st, false
	}
	return kerneltest.Client{Base: st.Addr, Token: strings.TrimSpace(string(tok))}, st, true
}

// status is what the server now running on the data directory reports,
// and whether it is ready; ok is false when none answers.
func (n *upNode) status(t *testing.T) (s provision.Status, ready, ok bool) {
	t.Helper()
	c, _, ok := n.client(t)
	if !ok {
		return s, false, false
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	get := func(path string, auth bool, out any) int {
		req, _ := http.NewRequest(http.MethodGet, c.Base+path, nil)
		if auth {
			req.Header.Set("Authorization", "Bearer "+c.Token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		if out != nil {
			_ = json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode
	}
	if get("/v1/provision/status", true, &s) != http.StatusOK {
		return s, false, false
	}
	return s, get("/readyz", false, nil) == http.StatusOK, true
}

// waitVersion waits until the server on the data directory runs version
// and is ready.
func (n *upNode) waitVersion(t *testing.T, version string) provision.Status {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute) // a start on a loaded machine; not a timing assertion
	for {
		s, ready, ok := n.status(t)
		if ok && ready && s.Version == version {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("no server ready at %s on %s (last: %+v ready %v)\n%s", version, n.data, s, ready, n.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop stops the server running on the data directory, if any.
func (n *upNode) stop(t *testing.T) {
	t.Helper()
	st, err := readState(n.data)
	if err != nil || !provision.Alive(st.PID) {
		return
	}
	if err := stop(st.PID); err != nil {
		t.Error(err)
	}
}

// runFazt runs the binary with args and returns its output and exit status.
func runFazt(t *testing.T, bin string, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.Env = append(os.Environ(), "FAZT_DATA=", "FAZT_ADDR=", "FAZT_TOKEN=")
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		status = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return o.String(), e.String(), status
}

// history is the upgrade history in the log.
func (n *upNode) history(t *testing.T) []eventlog.Event {
	t.Helper()
	c, _, ok := n.client(t)
	if !ok {
		t.Fatal("no server to read the history from")
	}
	status, body, _ := c.Do(t, http.MethodGet, "/v1/streams/"+provision.UpgradeStream, nil, nil)
	if status == http.StatusNotFound {
		return nil
	}
	if status != http.StatusOK {
		t.Fatalf("read %s: %d %s", provision.UpgradeStream, status, body)
	}
	var res struct {
		Events []eventlog.Event `json:"events"`
	}
	if err := json.Unmarshal([]byte(body), &res); err != nil {
		t.Fatal(err)
	}
	return res.Events
}

func eventTypes(evs []eventlog.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, strings.TrimPrefix(e.Type, "provision.upgrade_"))
	}
	return out
}

func dataOf[T any](t *testing.T, e eventlog.Event) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(e.Data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestUpgrade upgrades real servers with real releases: builds of the
// binary, made once for all its cases (and TestClusterRollingUpgrade).
func TestUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary twice")
	}
	kit := sharedUpgradeKit(t)

	// A good release: the new version serves the same data, the history
	// says so, the old binary is kept; and (EDD) the old binary then runs
	// on the data the new one wrote, reads what it knows and serves.
	t.Run("good release", func(t *testing.T) {
		t.Parallel()
		bin := kit.install(t)
		data := filepath.Join(t.TempDir(), "data")
		n := serve(t, bin, data)
		before := n.waitVersion(t, oldVersion)
		if _, e, st := runFazt(t, bin, "schema", "register", "orders.placed", "--data", data, "--file", writeTemp(t, `{"type":"object","properties":{"total":{"type":"number"}}}`)); st != 0 {
			t.Fatalf("schema register: %s", e)
		}
		appendEvent(t, bin, data, "orders.1", "orders.placed", `{"total":12}`)
		rel := kit.release(t, newVersion, kit.new, kit.priv, nil)

		// A dry run checks and says, and changes nothing.
		out, errOut, st := runFazt(t, bin, "upgrade", "--dry-run", "--from", rel, "--data", data)
		if st != 0 || !strings.Contains(out, "would replace "+bin+" ("+oldVersion+" → "+newVersion+")") || !strings.Contains(out, fmt.Sprintf("would re-exec the server (pid %d)", before.PID)) {
			t.Fatalf("dry run: status %d\n%s%s", st, out, errOut)
		}
		if fileSum(t, bin) != kit.oldSum || len(n.history(t)) != 0 {
			t.Fatal("the dry run changed something")
		}
		out, errOut, st = runFazt(t, bin, "upgrade", "--from", rel, "--data", data)
		if st != 0 || !strings.Contains(out, "upgraded "+oldVersion+" → "+newVersion+": serving and ready") {
			t.Fatalf("upgrade: status %d\n%s%s", st, out, errOut)
		}
		after := n.waitVersion(t, newVersion)
		if after.PID != before.PID {
			t.Errorf("re-exec keeps the process: pid %d became %d", before.PID, after.PID)
		}
		if got := fileSum(t, bin); got != fileSum(t, kit.new) {
			t.Errorf("%s is not the new release after the upgrade", bin)
		}
		if got := fileSum(t, bin+provision.PrevSuffix); got != kit.oldSum {
			t.Errorf("%s is not the previous binary", bin+provision.PrevSuffix)
		}
		// The same data: the order written before is there.
		if out, e, st := runFazt(t, bin, "events", "read", "orders.1", "--data", data); st != 0 || !strings.Contains(out, `{"total":12}`) {
			t.Fatalf("the new version lost the data: %s%s", out, e)
		}
		h := n.history(t)
		if got := strings.Join(eventTypes(h), " "); got != "requested started completed" {
			t.Fatalf("history %q, want requested started completed", got)
		}
		started := dataOf[provision.UpgradeStarted](t, h[1])
		done := dataOf[provision.UpgradeCompleted](t, h[2])
		if started.From != oldVersion || started.To != newVersion || started.Via != "reexec" || started.Binary != bin ||
			done.From != oldVersion || done.To != newVersion || done.Upgrade != started.Upgrade || dataOf[provision.UpgradeRequested](t, h[0]).Upgrade != started.Upgrade {
			t.Errorf("history data: %s / %s / %s", h[0].Data, h[1].Data, h[2].Data)
		}

		// The newer release writes with its new event version and column.
		c, _, _ := n.client(t)
		res := c.Append(t, `{"events":[{"stream":"notes.1","type":"notes.added","schema":2,"data":{"id":"n1","text":"written by v2","priority":3}}]}`)
		seq := fmt.Sprint(res.LastSeq)
		if out, e, st := runFazt(t, bin, "query", "--data", data, "--projection", "notes", "--min-seq", seq, "SELECT id, text, priority FROM notes"); st != 0 || !strings.Contains(out, "written by v2") || !strings.Contains(out, "3") {
			t.Fatalf("v2 notes: %s%s", out, e)
		}

		t.Run("old binary on the new data", func(t *testing.T) {
			n.stop(t)
			old := serve(t, bin+provision.PrevSuffix, data)
			old.waitVersion(t, oldVersion)
			out, e, st := runFazt(t, kit.old, "query", "--data", data, "--projection", "notes", "--min-seq", seq, "SELECT id, text FROM notes")
			if st != 0 || !strings.Contains(out, "n1") || !strings.Contains(out, "written by v2") {
				t.Fatalf("the old binary does not read the new note: %s%s", out, e)
			}
			c, _, _ := old.client(t)
			status, body, _ := c.Do(t, http.MethodGet, "/v1/streams/notes.1", nil, nil)
			var got struct{ Events []eventlog.Event }
			if status != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil || len(got.Events) != 1 ||
				got.Events[0].Schema != 2 || !strings.Contains(string(got.Events[0].Data), `"priority":3`) {
				t.Fatalf("the old binary does not read the version 2 event: %d %s", status, body)
			}
			// It writes too, at the version it knows.
			seq := appendEvent(t, kit.old, data, "notes.2", "notes.added", `{"id":"n2","text":"written by v1"}`)
			if out, e, st := runFazt(t, kit.old, "query", "--data", data, "--projection", "notes", "--min-seq", seq, "SELECT id, text FROM notes ORDER BY id"); st != 0 || !strings.Contains(out, "written by v1") || !strings.Contains(out, "written by v2") {
				t.Fatalf("the old binary's notes: %s%s", out, e)
			}
			if got := strings.Join(eventTypes(old.history(t)), " "); got != "requested started completed" {
				t.Errorf("history read by the old binary: %q", got)
			}
		})
	})

	// A release that never becomes ready on this data: a bad v0.2.0's read
	// model cannot fold a note v0.1.0 wrote and halts, so /readyz never
	// turns 200. The upgrade puts v0.1.0 back by itself and it serves.
	t.Run("release that never becomes ready", func(t *testing.T) {
		t.Parallel()
		bin := kit.install(t)
		data := filepath.Join(t.TempDir(), "data")
		n := serve(t, bin, data)
		appendEvent(t, bin, data, "notes.1", "notes.added", `{"id":"n1","text":"written by v1"}`)
		rel := kit.release(t, newVersion, kit.bad, kit.priv, nil)
		out, errOut, st := runFazt(t, bin, "upgrade", "--from", rel, "--data", data)
		if st != 1 || !strings.Contains(errOut, "rolled back: "+oldVersion+" serves again") || !strings.Contains(errOut, "note n1 has no priority") {
			t.Fatalf("upgrade: status %d\n%s%s", st, out, errOut)
		}
		n.waitVersion(t, oldVersion)
		if got := fileSum(t, bin); got != kit.oldSum {
			t.Errorf("%s is not the old binary after the rollback", bin)
		}
		if out, e, st := runFazt(t, bin, "query", "--data", data, "--projection", "notes", "SELECT id, text FROM notes"); st != 0 || !strings.Contains(out, "written by v1") {
			t.Fatalf("after the rollback: %s%s", out, e)
		}
		h := n.history(t)
		if got := strings.Join(eventTypes(h), " "); got != "requested started rolled_back" {
			t.Fatalf("history %q, want requested started rolled_back", got)
		}
		rb := dataOf[provision.UpgradeRolledBack](t, h[2])
		if rb.From != oldVersion || rb.To != newVersion || !strings.Contains(rb.Reason, "halted") || !strings.Contains(rb.Reason, "no priority") {
			t.Errorf("rolled_back: %s", h[2].Data)
		}
	})

	// Releases whose binary exits at once or never answers: the server
	// is gone or stuck, so the rollback starts the old binary afresh.
	for _, tc := range []struct {
		name, script, reason string
		timeout              string // the limit: the hang waits it out
	}{
		{"release that exits at start", "#!/bin/sh\necho cannot open the data >&2\nexit 3\n", "the server exited", "2m"},
		{"release that hangs at start", "#!/bin/sh\nexec sleep 600\n", "not ready at v0.3.0 within 5s", "5s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bin := kit.install(t)
			data := filepath.Join(t.TempDir(), "data")
			n := serve(t, bin, data)
			script := filepath.Join(t.TempDir(), "fazt-broken")
			if err := os.WriteFile(script, []byte(tc.script), 0o755); err != nil {
				t.Fatal(err)
			}
			rel := kit.release(t, "v0.3.0", script, kit.priv, nil)
			out, errOut, st := runFazt(t, bin, "upgrade", "--from", rel, "--data", data, "--ready-timeout", tc.timeout)
			if st != 1 || !strings.Contains(errOut, "rolled back: "+oldVersion+" serves again") {
				t.Fatalf("upgrade: status %d\n%s%s", st, out, errOut)
			}
			t.Logf("%s%s", out, errOut)
			s := n.waitVersion(t, oldVersion)
			if got := fileSum(t, bin); got != kit.oldSum {
				t.Errorf("%s is not the old binary after the rollback", bin)
			}
			if s.Executable != bin {
				t.Errorf("the server runs %s, want %s", s.Executable, bin)
			}
			h := n.history(t)
			if got := strings.Join(eventTypes(h), " "); got != "requested started rolled_back" {
				t.Fatalf("history %q, want requested started rolled_back", got)
			}
			if rb := dataOf[provision.UpgradeRolledBack](t, h[2]); rb.To != "v0.3.0" || !strings.Contains(rb.Reason, tc.reason) {
				t.Errorf("rolled_back: %s", h[2].Data)
			}
		})
	}

	// Refusals: nothing on disk changes, the server keeps serving, and
	// the log records each refusal with its reason.
	t.Run("refused releases", func(t *testing.T) {
		t.Parallel()
		bin := kit.install(t)
		data := filepath.Join(t.TempDir(), "data")
		n := serve(t, bin, data)
		before := n.waitVersion(t, oldVersion)
		listing := func() string {
			ents, err := os.ReadDir(filepath.Dir(bin))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			return strings.Join(names, " ")
		}
		wantListing := listing()
		good := func(t *testing.T) string { return kit.release(t, newVersion, kit.new, kit.priv, nil) }
		cases := []struct {
			name  string
			make  func(t *testing.T) string
			args  []string
			error string
		}{
			{"unsigned", func(t *testing.T) string {
				m := good(t)
				os.Remove(m + provision.SignatureSuffix)
				return m
			}, nil, "the manifest is not signed"},
			{"signed by another key", func(t *testing.T) string {
				return kit.release(t, newVersion, kit.new, kit.otherPriv, nil)
			}, nil, "not by a release key"},
			{"checked against another key given by flag", good, []string{"--key", kit.otherPub.String()}, "not by a release key"},
			{"manifest changed after signing", func(t *testing.T) string {
				m := good(t)
				b, _ := os.ReadFile(m)
				os.WriteFile(m, bytes.Replace(b, []byte(newVersion), []byte("v9.0.0"), 1), 0o644)
				return m
			}, nil, "does not match its content"},
			{"other platform", func(t *testing.T) string {
				return kit.release(t, newVersion, kit.new, kit.priv, func(m *provision.Manifest) {
					m.Platforms = map[string]provision.Binary{"plan9/arm": m.Platforms[kit.platform]}
				})
			}, nil, "has no binary for " + kit.platform},
			{"older", func(t *testing.T) string { return kit.release(t, "v0.0.9", kit.new, kit.priv, nil) }, nil, "older than the running " + oldVersion},
			{"same version", func(t *testing.T) string { return kit.release(t, oldVersion, kit.new, kit.priv, nil) }, nil, "the version already running"},
			{"binary replaced after signing", func(t *testing.T) string {
				m := good(t)
				f := filepath.Join(filepath.Dir(m), "fazt-"+newVersion+"-"+strings.ReplaceAll(kit.platform, "/", "-"))
				os.Remove(f)
				linkOrCopy(t, kit.old, f) // another binary, same name
				return m
			}, nil, "the signed manifest says"},
			{"truncated binary", func(t *testing.T) string {
				m := good(t)
				f := filepath.Join(filepath.Dir(m), "fazt-"+newVersion+"-"+strings.ReplaceAll(kit.platform, "/", "-"))
				b, _ := os.ReadFile(f)
				os.Remove(f)
				os.WriteFile(f, b[:len(b)/2], 0o755)
				return m
			}, nil, "truncated or replaced"},
			{"missing binary", func(t *testing.T) string {
				m := good(t)
				os.Remove(filepath.Join(filepath.Dir(m), "fazt-"+newVersion+"-"+strings.ReplaceAll(kit.platform, "/", "-")))
				return m
			}, nil, "which is not there"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				m := tc.make(t)
				out, errOut, st := runFazt(t, bin, append([]string{"upgrade", "--from", m, "--data", data}, tc.args...)...)
				if st != 1 || !strings.Contains(errOut, "release refused") || !strings.Contains(errOut, tc.error) {
					t.Fatalf("status %d, want 1 and %q\n%s%s", st, tc.error, out, errOut)
				}
				if got := fileSum(t, bin); got != kit.oldSum {
					t.Fatalf("the binary changed")
				}
				if got := listing(); got != wantListing {
					t.Fatalf("the binary's directory changed: %q, was %q", got, wantListing)
				}
			})
		}
		s := n.waitVersion(t, oldVersion)
		if s.PID != before.PID {
			t.Errorf("the server was restarted: pid %d, was %d", s.PID, before.PID)
		}
		h := n.history(t)
		want := strings.TrimSpace(strings.Repeat("requested refused ", len(cases)))
		if got := strings.Join(eventTypes(h), " "); got != want {
			t.Fatalf("history %q, want %q", got, want)
		}
		for i, tc := range cases {
			r := dataOf[provision.UpgradeRefused](t, h[2*i+1])
			if r.Running != oldVersion || !strings.Contains(r.Reason, tc.error) {
				t.Errorf("%s: refused %s", tc.name, h[2*i+1].Data)
			}
		}
	})

	// SIGKILL the upgrade at each step: a whole, working binary is in
	// place after every one, and the next `fazt upgrade` finishes the
	// interrupted upgrade (its journal says which) before anything else.
	for _, tc := range []struct {
		name    string
		bad     bool   // the release that halts on a note v0.1.0 wrote
		after   string // the output line after which the upgrade is killed
		history string // the history once the next upgrade has finished
		version string // the version serving then
	}{
		// The binary comes over HTTP and stalls half way; the kill comes
		// then, while it is written.
		{"killed while staging", false, "", "requested requested started completed", newVersion},
		{"killed after the swap", false, "installed " + newVersion, "requested started completed", newVersion},
		{"killed while the new version starts", false, "restarting the server", "requested started completed", newVersion},
		{"killed while a bad release starts", true, "restarting the server", "requested started rolled_back", oldVersion},
		{"killed while rolling back", true, "rolling back to", "requested started rolled_back", oldVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bin := kit.install(t)
			data := filepath.Join(t.TempDir(), "data")
			n := serve(t, bin, data)
			if tc.bad {
				appendEvent(t, bin, data, "notes.1", "notes.added", `{"id":"n1","text":"written by v1"}`)
			}
			relBin := kit.new
			if tc.bad {
				relBin = kit.bad
			}
			var edit func(*provision.Manifest)
			var stalled chan struct{}
			if tc.after == "" {
				stalled = make(chan struct{})
				edit = func(m *provision.Manifest) {
					b := m.Platforms[kit.platform]
					b.URL = stallingServer(t, relBin, stalled) + "/" + b.File
					m.Platforms[kit.platform] = b
				}
			}
			rel := kit.release(t, newVersion, relBin, kit.priv, edit)
			newSum := fileSum(t, relBin)
			out := killUpgrade(t, bin, tc.after, stalled, "upgrade", "--from", rel, "--data", data)

			if got := fileSum(t, bin); got != kit.oldSum && got != newSum {
				t.Fatalf("after the kill %s is neither binary\n%s", bin, out)
			}
			if _, e, st := runFazt(t, bin, "version"); st != 0 {
				t.Fatalf("the binary in place does not run: %s", e)
			}
			o, e, st := runFazt(t, bin, "upgrade", "--from", rel, "--data", data, "--ready-timeout", "2m")
			if tc.version == newVersion && st != 0 || tc.version == oldVersion && (st != 1 || !strings.Contains(e, "rolled back")) {
				t.Fatalf("the next upgrade: status %d\n%s%s\n(the killed one said:\n%s)", st, o, e, out)
			}
			if !strings.HasPrefix(tc.history, "requested requested") && !strings.Contains(o, "finishing the interrupted upgrade "+oldVersion+" → "+newVersion) {
				t.Errorf("the next upgrade did not finish the interrupted one:\n%s", o)
			}
			n.waitVersion(t, tc.version)
			want := kit.oldSum
			if tc.version == newVersion {
				want = newSum
			}
			if got := fileSum(t, bin); got != want {
				t.Errorf("the binary in place is not %s", tc.version)
			}
			if got := strings.Join(eventTypes(n.history(t)), " "); got != tc.history {
				t.Errorf("history %q, want %q", got, tc.history)
			}
			ents, _ := os.ReadDir(filepath.Dir(bin))
			if len(ents) != 2 {
				t.Errorf("leftovers beside the binary: %v", ents)
			}
			if _, err := os.Stat(filepath.Join(data, "provision", "upgrade.json")); !os.IsNotExist(err) {
				t.Errorf("the journal is still there: %v", err)
			}
		})
	}

	// With no server running, the binary is swapped and nothing is
	// started: the next fazt serve runs the new version.
	t.Run("no server running", func(t *testing.T) {
		t.Parallel()
		bin := kit.install(t)
		data := filepath.Join(t.TempDir(), "data")
		rel := kit.release(t, newVersion, kit.new, kit.priv, nil)
		out, e, st := runFazt(t, bin, "upgrade", "--from", rel, "--data", data)
		if st != 0 || !strings.Contains(out, "no server is running for "+data+": "+newVersion+" starts with the next fazt serve") {
			t.Fatalf("status %d\n%s%s", st, out, e)
		}
		if fileSum(t, bin) != fileSum(t, kit.new) || fileSum(t, bin+provision.PrevSuffix) != kit.oldSum {
			t.Fatal("the binaries are not swapped")
		}
		n := serve(t, bin, data)
		n.waitVersion(t, newVersion)
	})

	// An upgrade asked for by an event: the service's reactor carries it
	// out, in the background, and the history shows it.
	t.Run("requested by an event", func(t *testing.T) {
		t.Parallel()
		bin := kit.install(t)
		data := filepath.Join(t.TempDir(), "data")
		n := serve(t, bin, data)
		rel := kit.release(t, newVersion, kit.new, kit.priv, nil)
		c, _, _ := n.client(t)
		status, body, _ := c.Do(t, http.MethodPost, "/v1/provision/upgrades", strings.NewReader(fmt.Sprintf(`{"from":%q}`, rel)), nil)
		if status != http.StatusAccepted {
			t.Fatalf("request: %d %s", status, body)
		}
		n.waitVersion(t, newVersion)
		deadline := time.Now().Add(time.Minute)
		for {
			h := n.history(t)
			if got := strings.Join(eventTypes(h), " "); got == "requested started completed" {
				if r := dataOf[provision.UpgradeRequested](t, h[0]); r.By != provision.ByService || r.From != rel {
					t.Errorf("requested: %s", h[0].Data)
				}
				break
			} else if time.Now().After(deadline) {
				log, _ := os.ReadFile(filepath.Join(data, "provision", "upgrade-"+dataOf[provision.UpgradeRequested](t, h[0]).Upgrade+".log"))
				t.Fatalf("history %q\n%s", got, log)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if got := fileSum(t, bin); got != fileSum(t, kit.new) {
			t.Errorf("%s is not the new release", bin)
		}
	})
}

// stallingServer serves the file at any path over loopback HTTP: the
// first request gets half of it, closes stalled, and then waits until
// the test ends; the others get all of it.
func stallingServer(t *testing.T, file string, stalled chan<- struct{}) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var first atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		if first.CompareAndSwap(false, true) {
			w.Write(b[:len(b)/2])
			w.(http.Flusher).Flush()
			close(stalled)
			select {
			case <-done:
			case <-r.Context().Done():
			}
			return
		}
		w.Write(b)
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	return srv.URL
}

// killUpgrade runs the binary with args and SIGKILLs it once it has
// printed a line starting with after, or (after "") once stalled is
// closed; it returns what it printed.
func killUpgrade(t *testing.T, bin, after string, stalled <-chan struct{}, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "FAZT_DATA=", "FAZT_ADDR=", "FAZT_TOKEN=")
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(pipe)
	var killed atomic.Bool
	if after == "" {
		go func() {
			<-stalled
			_ = cmd.Process.Kill()
			killed.Store(true)
		}()
	}
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if after != "" && !killed.Load() && strings.HasPrefix(sc.Text(), after) {
			_ = cmd.Process.Kill()
			killed.Store(true)
		}
	}
	_ = cmd.Wait()
	if !killed.Load() {
		t.Fatalf("the upgrade never printed %q:\n%s%s", after, out.String(), errOut.String())
	}
	return out.String()
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// appendEvent appends one event with the binary's CLI and returns its
// sequence, for --min-seq.
func appendEvent(t *testing.T, bin, data, stream, typ, body string) string {
	t.Helper()
	out, e, st := runFazt(t, bin, "events", "append", "--data-dir", data, "--stream", stream, "--type", typ, "--data", body)
	i := strings.LastIndex(out, "at seq ")
	if st != 0 || i < 0 {
		t.Fatalf("append %s to %s: %s%s", typ, stream, out, e)
	}
	return strings.TrimSpace(out[i+len("at seq "):])
}

// Without a release source built in, upgrade asks for one (a usage
// error, exit status 2).
func TestUpgradeNeedsASource(t *testing.T) {
	var stderr strings.Builder
	err := run(context.Background(), testVerticals, []string{"upgrade", "--data", t.TempDir()}, noEnv, strings.NewReader(""), io.Discard, io.Discard)
	if got := exitStatus(err, &stderr); got != 2 || !strings.Contains(stderr.String(), "--from: no release source built in") {
		t.Fatalf("exit %d: %s", got, stderr.String())
	}
}
