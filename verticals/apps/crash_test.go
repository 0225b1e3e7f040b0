package apps

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/kernel/vfs"
)

// envCrashDir turns TestCrashChild from a skip into the server process
// that TestSIGKILLDuringDeploy kills: a kernel with vfs and the vertical
// on the directory it names.
const envCrashDir = "FAZT_APPS_CRASH_CHILD"

// TestCrashChild is the server killed by TestSIGKILLDuringDeploy; on
// its own it skips. It prints "ready ADDR TOKEN" once serving and runs
// until killed (at most two minutes).
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(envCrashDir)
	if dir == "" {
		t.Skip("the child of TestSIGKILLDuringDeploy")
	}
	e := start(t, dir, nil, Config{})
	fmt.Printf("ready %s %s\n", e.k.ListenAddr(), e.token)
	time.Sleep(2 * time.Minute)
}

// child is a server in a child process.
type child struct {
	cmd *exec.Cmd
	env *env
}

func startChild(t *testing.T, dir string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), envCrashDir+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd}
	t.Cleanup(func() { c.kill(t) })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "ready" {
			_, port, _ := net.SplitHostPort(f[1])
			c.env = &env{base: "http://" + f[1], port: port, token: f[2]}
			go io.Copy(io.Discard, out)
			return c
		}
	}
	t.Fatalf("the child ended before serving: %v", sc.Err())
	return nil
}

// kill SIGKILLs the child and waits for it.
func (c *child) kill(t *testing.T) {
	if c.cmd.ProcessState != nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGKILL)
	c.cmd.Wait()
}

// whole checks that app serves exactly files.
func whole(t *testing.T, e *env, app string, files map[string]string) {
	t.Helper()
	for p, want := range files {
		if r := e.site(t, app+".localhost", "/"+p); r.status != 200 || r.body != want {
			t.Errorf("%s/%s: %d %q, want %q", app, p, r.status, clip(r.body), clip(want))
		}
	}
}

// A server SIGKILLed in the middle of a deploy (blobs half uploaded, one
// upload cut in its body) restarts with the old deploy live and whole;
// the deploy run again uploads only what is missing. A server killed
// while it finalises restarts with one deploy or the other live, whole.
func TestSIGKILLDuringDeploy(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns server processes")
	}
	dir := t.TempDir()
	c := startChild(t, dir)
	v1 := map[string]string{}
	for i := range 10 {
		v1[fmt.Sprintf("p%d.html", i)] = fmt.Sprintf("<p>v1 page %d</p>", i)
	}
	v1["index.html"] = "<h1>v1</h1>"
	c.env.deploy(t, "blog", v1)

	v2 := map[string]string{"index.html": "<h1>v2</h1>", "big.bin": strings.Repeat("0123456789abcdef", 1<<16)}
	for i := range 20 {
		v2[fmt.Sprintf("p%d.html", i)] = fmt.Sprintf("<p>v2 page %d</p>", i)
	}
	m2 := manifestOf(v2)
	miss := c.env.missing(t, "blog", m2)
	if len(miss) != len(v2) {
		t.Fatalf("missing %d, want %d", len(miss), len(v2))
	}
	bigHash := vfs.Hash([]byte(v2["big.bin"]))
	var small []string
	for _, h := range miss {
		if h != bigHash {
			small = append(small, h)
		}
	}
	c.env.upload(t, "blog", v2, small[:len(small)/2])
	// Half of big.bin's body, then SIGKILL while the server reads it.
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("PUT", c.env.base+BlobPath("blog", bigHash), pr)
	req.Header.Set("Authorization", "Bearer "+c.env.token)
	req.ContentLength = int64(len(v2["big.bin"]))
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	if _, err := pw.Write([]byte(v2["big.bin"][:len(v2["big.bin"])/2])); err != nil {
		t.Fatal(err)
	}
	c.kill(t)
	pw.Close()
	<-done

	c = startChild(t, dir)
	whole(t, c.env, "blog", v1)
	var h struct{ Deploys []vfs.Deploy }
	json.Unmarshal([]byte(c.env.api(t, "GET", DeploysPath("blog"), nil).body), &h)
	if len(h.Deploys) != 1 || !h.Deploys[0].Live {
		t.Errorf("history after the crash: %+v, want the one deploy, live", h.Deploys)
	}
	again := c.env.missing(t, "blog", m2)
	want := append([]string{bigHash}, small[len(small)/2:]...)
	slices.Sort(again)
	slices.Sort(want)
	if !slices.Equal(again, want) {
		t.Errorf("missing after restart: %d blobs, want the %d not uploaded before the kill", len(again), len(want))
	}
	c.env.upload(t, "blog", v2, again)
	wantStatus(t, "finalise after restart", c.env.api(t, "POST", DeploysPath("blog"), m2), http.StatusCreated)
	whole(t, c.env, "blog", v2)

	// Killed while finalising v3: after restart v2 or v3 is live, whole.
	v3 := map[string]string{}
	for p, s := range v2 {
		v3[p] = strings.ReplaceAll(s, "v2", "v3")
	}
	m3 := manifestOf(v3)
	c.env.upload(t, "blog", v3, c.env.missing(t, "blog", m3))
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b, _ := json.Marshal(m3)
		req, _ := http.NewRequestWithContext(ctx, "POST", c.env.base+DeploysPath("blog"), strings.NewReader(string(b)))
		req.Header.Set("Authorization", "Bearer "+c.env.token)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond)
	c.kill(t)
	c = startChild(t, dir)
	if r := c.env.site(t, "blog.localhost", "/"); strings.Contains(r.body, "v3") {
		whole(t, c.env, "blog", v3)
	} else {
		whole(t, c.env, "blog", v2)
	}
}
