package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/kerneltest"
)

// syncBuffer is a buffer the kernel and the test use at once.
type syncBuffer = kerneltest.Buffer

// oneEvent is an append of one event.
const oneEvent = `{"events":[{"stream":"orders.1","type":"orders.created","data":{"total":12}}]}`

// noEnv keeps the tests independent of the environment they run in.
func noEnv(string) string { return "" }

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// testServer is `fazt serve` running in-process through run().
type testServer struct {
	dir    string
	addr   string // http://127.0.0.1:PORT
	token  string
	nats   string // with --nats-listen
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan error
	cancel context.CancelFunc
	once   sync.Once
	err    error
}

// startServer runs `fazt serve --data dir --addr 127.0.0.1:0` with the
// test verticals and waits for its serve.json. At cleanup it stops the
// server and requires a clean shutdown.
func startServer(t *testing.T, dir string, extra ...string) *testServer {
	t.Helper()
	return startServerWith(t, testVerticals, dir, extra...)
}

// startServerWith is startServer with the given verticals.
func startServerWith(t *testing.T, verticals []vertical, dir string, extra ...string) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &testServer{dir: dir, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1), cancel: cancel}
	args := append([]string{"serve", "--data", dir, "--addr", "127.0.0.1:0"}, extra...)
	go func() { s.done <- run(ctx, verticals, args, noEnv, strings.NewReader(""), s.stdout, s.stderr) }()
	t.Cleanup(func() {
		if err := s.stop(t); err != nil {
			t.Errorf("serve returned %v; want nil after a graceful shutdown\nstderr:\n%s", err, s.stderr)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := readState(dir)
		if err == nil {
			s.addr, s.nats = st.Addr, st.NATS
			break
		}
		select {
		case err := <-s.done:
			s.done <- err // for stop
			t.Fatalf("serve ended before it was serving: %v\nstderr:\n%s", err, s.stderr)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 30s: %v\nstderr:\n%s", stateFile, err, s.stderr)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, kernel.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	s.token = strings.TrimSpace(string(b))
	return s
}

// stop cancels the server's context and returns what run returned.
func (s *testServer) stop(t *testing.T) error {
	t.Helper()
	s.once.Do(func() {
		s.cancel()
		select {
		case s.err = <-s.done:
		case <-time.After(20 * time.Second):
			s.err = errors.New("serve did not return within 20s of cancellation")
		}
	})
	return s.err
}

// do sends a request with the server's token (unless headers set
// Authorization; "" sends none) and returns the status and body.
func (s *testServer) do(t *testing.T, method, path string, body io.Reader, headers map[string]string) (int, string, http.Header) {
	t.Helper()
	return s.client().Do(t, method, path, body, headers)
}

// appendJSON posts a body to /v1/events and requires success.
func (s *testServer) appendJSON(t *testing.T, body string) eventlog.Result {
	t.Helper()
	return s.client().Append(t, body)
}

func (s *testServer) client() kerneltest.Client {
	return kerneltest.Client{Base: s.addr, Token: s.token}
}

// events returns every event in the log.
func (s *testServer) events(t *testing.T) []eventlog.Event {
	t.Helper()
	status, body, _ := s.do(t, "GET", "/v1/events?after=0&limit=1000", nil, nil)
	if status != http.StatusOK {
		t.Fatalf("list events: %d %s", status, body)
	}
	var p eventlog.Page
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	return p.Events
}

// waitFor polls until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func fileMode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// grepLines returns the lines of s that hold sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
