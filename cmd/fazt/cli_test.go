package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
)

// fazt runs a command in-process and returns its stdout, stderr and error.
func fazt(t *testing.T, env func(string) string, stdin string, args ...string) (string, string, error) {
	t.Helper()
	if env == nil {
		env = noEnv
	}
	var stdout, stderr syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, testVerticals, args, env, strings.NewReader(stdin), &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

func TestCLIAppendReadTail(t *testing.T) {
	s := startServer(t, t.TempDir())
	d := []string{"--data-dir", s.dir}

	out, _, err := fazt(t, nil, "", append([]string{"events", "append", "--stream", "orders.1", "--type", "orders.created", "--data", `{"total": 12}`, "--expect-new"}, d...)...)
	if err != nil || out != "appended orders.1 version 1 at seq 1\n" {
		t.Fatalf("append: %q %v", out, err)
	}
	out, _, err = fazt(t, nil, `{"paid": true}`+"\n", append([]string{"events", "append", "--stream", "orders.1", "--type", "orders.paid", "--data", "-", "--expect", "1"}, d...)...)
	if err != nil || out != "appended orders.1 version 2 at seq 2\n" {
		t.Fatalf("append from stdin: %q %v", out, err)
	}
	out, _, err = fazt(t, nil, "", append([]string{"events", "append", "--stream", "stock.1", "--type", "stock.reserved", "--json"}, d...)...)
	var res eventlog.Result
	if err != nil || json.Unmarshal([]byte(out), &res) != nil || res.LastSeq != 3 || res.Events[0].Version != 1 {
		t.Fatalf("append --json: %q %v", out, err)
	}

	// Conflicts and other server errors fail the command with the
	// server's message and code.
	_, _, err = fazt(t, nil, "", append([]string{"events", "append", "--stream", "orders.1", "--type", "orders.created", "--expect-new"}, d...)...)
	var se *serverError
	if !errors.As(err, &se) || se.Code != "conflict" || !strings.HasSuffix(err.Error(), "stream is at version 2 (conflict)") {
		t.Fatalf("conflict: %v", err)
	}
	_, _, err = fazt(t, nil, "", append([]string{"events", "append", "--stream", "orders", "--type", "x"}, d...)...)
	if !errors.As(err, &se) || se.Code != "invalid" || !strings.Contains(err.Error(), "category and an id") {
		t.Fatalf("bad stream: %v", err)
	}
	_, _, err = fazt(t, nil, "", append([]string{"events", "read", "orders.404"}, d...)...)
	if err == nil || !strings.HasSuffix(err.Error(), "(not_found)") {
		t.Fatalf("read missing stream: %v", err)
	}

	// Retrying with the same id writes nothing.
	id := []string{"events", "append", "--stream", "orders.9", "--type", "orders.created", "--id", "01JZ0000000000000000000009"}
	if out, _, err = fazt(t, nil, "", append(id, d...)...); err != nil || out != "appended orders.9 version 1 at seq 4\n" {
		t.Fatalf("append with id: %q %v", out, err)
	}
	if out, _, err = fazt(t, nil, "", append(id, d...)...); err != nil || !strings.HasPrefix(out, "appended orders.9 version 1 at seq 4 (already in the log") {
		t.Fatalf("retry with id: %q %v", out, err)
	}

	out, _, err = fazt(t, nil, "", append([]string{"events", "read", "orders.1"}, d...)...)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	line := regexp.MustCompile(`^(\d+) +(\d+) +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z +(\S+) +(.*)$`)
	want := [][]string{{"1", "1", "orders.created", `{"total":12}`}, {"2", "2", "orders.paid", `{"paid":true}`}}
	if len(lines) != len(want) {
		t.Fatalf("read printed %d lines:\n%s", len(lines), out)
	}
	for i, l := range lines {
		m := line.FindStringSubmatch(l)
		if m == nil || strings.Join(m[1:], " ") != strings.Join(want[i], " ") {
			t.Fatalf("line %d: %q, want %q", i, l, want[i])
		}
	}
	out, _, err = fazt(t, nil, "", append([]string{"events", "read", "orders.1", "--from", "2", "--limit", "1", "--json"}, d...)...)
	if err != nil || !strings.HasPrefix(out, `{"stream":"orders.1","events":[{`) || strings.Count(out, `"type"`) != 1 || !strings.Contains(out, `"version":2`) {
		t.Fatalf("read --json: %q %v", out, err)
	}

	// tail: history first, then new events, until cancelled.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var tailOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, testVerticals, append([]string{"events", "tail", "--after", "1", "--category", "orders"}, d...), noEnv, strings.NewReader(""), &tailOut, io.Discard)
	}()
	waitFor(t, "tail to print the history", func() bool { return strings.Count(tailOut.String(), "\n") == 2 })
	if _, _, err := fazt(t, nil, "", append([]string{"events", "append", "--stream", "stock.2", "--type", "stock.reserved"}, d...)...); err != nil {
		t.Fatal(err)
	}
	if _, _, err := fazt(t, nil, "", append([]string{"events", "append", "--stream", "orders.1", "--type", "orders.shipped", "--data", `{"when":"soon"}`}, d...)...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "tail to print the new event", func() bool { return strings.Contains(tailOut.String(), "orders.shipped") })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("tail returned %v after cancel; want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tail did not return after cancel")
	}
	got := strings.Split(strings.TrimSuffix(tailOut.String(), "\n"), "\n")
	if len(got) != 3 || !strings.HasPrefix(got[0], "2  orders.1  2  ") || !strings.HasSuffix(got[0], `orders.paid  {"paid":true}`) ||
		!strings.HasPrefix(got[1], "4  orders.9  1  ") || !strings.HasPrefix(got[2], "6  orders.1  3  ") || !strings.HasSuffix(got[2], `orders.shipped  {"when":"soon"}`) {
		t.Fatalf("tail printed:\n%s", tailOut.String())
	}

	// tail --json prints one event per line (--after 0: the whole log).
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	var jsonOut syncBuffer
	go func() {
		done <- run(ctx, testVerticals, append([]string{"events", "tail", "--after", "0", "--type", "stock.reserved", "--json"}, d...), noEnv, strings.NewReader(""), &jsonOut, io.Discard)
	}()
	waitFor(t, "tail --json", func() bool { return strings.Count(jsonOut.String(), "\n") == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(jsonOut.String()), "\n") {
		var e eventlog.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Type != "stock.reserved" {
			t.Fatalf("tail --json line %q: %v", l, err)
		}
	}
}

func TestCLIFindsServer(t *testing.T) {
	s := startServer(t, t.TempDir())
	empty := t.TempDir()
	read := []string{"events", "append", "--stream", "a.1", "--type", "t"}

	// Flags.
	if _, _, err := fazt(t, nil, "", append(read, "--data-dir", empty, "--addr", s.addr, "--token", s.token)...); err != nil {
		t.Fatalf("with --addr and --token: %v", err)
	}
	// Environment; FAZT_ADDR may be serve's host:port form.
	env := envMap(map[string]string{"FAZT_ADDR": strings.TrimPrefix(s.addr, "http://"), "FAZT_TOKEN": s.token, "FAZT_DATA": empty})
	if _, _, err := fazt(t, env, "", read...); err != nil {
		t.Fatalf("with FAZT_ADDR and FAZT_TOKEN: %v", err)
	}
	// FAZT_DATA.
	if _, _, err := fazt(t, envMap(map[string]string{"FAZT_DATA": s.dir}), "", read...); err != nil {
		t.Fatalf("with FAZT_DATA: %v", err)
	}
	// Nothing to go on.
	_, _, err := fazt(t, nil, "", append(read, "--data-dir", empty)...)
	if err == nil || !strings.Contains(err.Error(), "no running server found in "+empty+": start one with `fazt serve --data "+empty+"` or pass --addr and --token") {
		t.Fatalf("without a server: %v", err)
	}
	// A wrong token.
	_, _, err = fazt(t, nil, "", append(read, "--data-dir", s.dir, "--token", "nope")...)
	if err == nil || !strings.HasSuffix(err.Error(), "(unauthorized)") {
		t.Fatalf("wrong token: %v", err)
	}
	// A server that is gone.
	_, _, err = fazt(t, nil, "", append(read, "--addr", "http://127.0.0.1:1", "--token", "x")...)
	if err == nil || !strings.Contains(err.Error(), "cannot reach the fazt server at http://127.0.0.1:1") {
		t.Fatalf("no server at the address: %v", err)
	}
	if n := len(s.events(t)); n != 3 {
		t.Fatalf("%d events, want 3", n)
	}
}

func TestCLIUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"bogus"},
		{"events", "bogus"},
		{"events", "append", "--type", "t"},
		{"events", "append", "--stream", "a.1", "--type", "t", "--expect", "1", "--expect-new"},
		{"events", "append", "--stream", "a.1", "--type", "t", "--data", "{nope", "--data-dir", dir},
		{"events", "append", "--stream", "a.1", "--type", "t", "--expect", "-1"},
		{"events", "read"},
		{"events", "read", "a.1", "a.2"},
		{"events", "read", "a.1", "--limit", "x"},
		{"events", "tail", "--nope"},
		{"serve", "--data", dir, "--durability", "forever"},
		{"serve", "--data", dir, "--log-format", "xml"},
		{"serve", "--data", dir, "--nats-url", "nats://127.0.0.1:1", "--nats-listen", "127.0.0.1:0"},
		{"version", "extra"},
	} {
		_, _, err := fazt(t, nil, "", args...)
		var u *usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), "--help' for usage") {
			t.Errorf("%q: %v; want a usage error", args, err)
		}
	}
	// Help is not an error.
	out, _, err := fazt(t, nil, "", "events", "--help")
	if err != nil || !strings.Contains(out, "append") {
		t.Errorf("help: %q %v", out, err)
	}
}

func TestVersion(t *testing.T) {
	out, _, err := fazt(t, nil, "", "version")
	if err != nil || !strings.HasPrefix(out, "fazt ") || !strings.Contains(out, runtime.Version()) {
		t.Fatalf("version: %q %v", out, err)
	}
	// A test binary carries no VCS information: the output says why.
	if !strings.Contains(out, "commit: unknown (this binary carries no VCS information: go run, go test") {
		t.Fatalf("version of a test binary: %q", out)
	}
	out, _, err = fazt(t, nil, "", "version", "--json")
	var v versionInfo
	if err != nil || json.Unmarshal([]byte(out), &v) != nil || v.Go != runtime.Version() || v.Version == "" {
		t.Fatalf("version --json: %q %v", out, err)
	}
}

func TestTokenShownOnceAndPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := startServer(t, dir)
	if m := fileMode(t, dir); m != 0o700 {
		t.Errorf("data dir mode %v, want 0700", m)
	}
	if m := fileMode(t, filepath.Join(dir, kernel.TokenFile)); m != 0o600 {
		t.Errorf("token mode %v, want 0600", m)
	}
	if m := fileMode(t, filepath.Join(dir, stateFile)); m != 0o600 {
		t.Errorf("serve.json mode %v, want 0600", m)
	}
	if len(s.token) != 64 {
		t.Errorf("token %q: want 32 bytes in hex", s.token)
	}
	out := s.stdout.String()
	if want := "API token (stored in " + filepath.Join(dir, kernel.TokenFile) + ", shown once): " + s.token + "\n"; !strings.HasPrefix(out, want) {
		t.Errorf("first start printed %q, want it to begin with %q", out, want)
	}
	if !strings.Contains(out, "fazt serving on "+s.addr+"\n") {
		t.Errorf("first start printed %q", out)
	}
	s.appendJSON(t, oneEvent)

	// A second server on the same data is refused while the first runs.
	_, _, err := fazt(t, nil, "", "serve", "--data", dir, "--addr", "127.0.0.1:0")
	if err == nil || !strings.Contains(err.Error(), "already serving") {
		t.Fatalf("second server: %v", err)
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}

	s2 := startServer(t, dir)
	waitFor(t, "the serving line", func() bool { return strings.Contains(s2.stdout.String(), "fazt serving on") })
	if out := s2.stdout.String(); strings.Contains(out, "token") || strings.Contains(out, s.token) {
		t.Errorf("restart printed the token: %q", out)
	}
	if s2.token != s.token {
		t.Errorf("the token changed across restarts")
	}
	if n := len(s2.events(t)); n != 1 {
		t.Errorf("%d events after restart, want 1", n)
	}
}

func TestServeFailsClearly(t *testing.T) {
	dir := t.TempDir()
	_, _, err := fazt(t, nil, "", "serve", "--data", dir, "--addr", "127.0.0.1:0", "--nats-url", "nats://127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "open event log") {
		t.Fatalf("unreachable NATS: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, stateFile)); err == nil {
		t.Fatal("serve.json left behind by a failed start")
	}
	_, _, err = fazt(t, nil, "", "serve", "--data", dir, "--addr", "256.0.0.1:0")
	if err == nil || !strings.Contains(err.Error(), "listen on 256.0.0.1:0") {
		t.Fatalf("bad address: %v", err)
	}
}

func TestServeWarnsAboutOpenNATS(t *testing.T) {
	s := startServer(t, t.TempDir(), "--nats-listen", "0.0.0.0:0", "--log-format", "json")
	if !strings.Contains(s.stderr.String(), `"level":"WARN","msg":"the NATS listener has no authentication`) {
		t.Fatalf("no warning on stderr:\n%s", s.stderr)
	}
}

// While the log opens, the server is live but not ready, and the API
// answers 503. A NATS "server" that accepts connections but never speaks
// holds serve in that state until the NATS client gives up.
func TestNotReadyWhileOpening(t *testing.T) {
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	go func() {
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()

	dir := t.TempDir()
	done := make(chan error, 1)
	go func() {
		done <- run(context.Background(), testVerticals, []string{"serve", "--data", dir, "--addr", addr, "--nats-url", "nats://" + mute.Addr().String()}, noEnv, strings.NewReader(""), io.Discard, io.Discard)
	}()
	get := func(path string) int {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor(t, "healthz", func() bool { return get("/healthz") == http.StatusOK })
	if s := get("/readyz"); s != http.StatusServiceUnavailable {
		t.Errorf("readyz %d while opening, want 503", s)
	}
	token, _ := os.ReadFile(filepath.Join(dir, kernel.TokenFile))
	req, _ := http.NewRequest("GET", "http://"+addr+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), `"unavailable"`) {
		t.Errorf("API while opening: %d %s", resp.StatusCode, b)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "open event log") {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not give up on a mute NATS server")
	}
	if get("/healthz") != 0 {
		t.Error("the HTTP server still answers after a failed start")
	}
}
