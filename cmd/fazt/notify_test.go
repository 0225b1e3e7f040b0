package main

import (
	"context"
	"database/sql"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
)

// notifyListener is systemd's side of NOTIFY_SOCKET: a unixgram socket
// the test listens on.
func notifyListener(t *testing.T) (string, <-chan string) {
	t.Helper()
	name := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan string, 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return name, msgs
}

// nextNotify waits for the next message that has a line starting with
// prefix, and returns the messages up to it.
func nextNotify(t *testing.T, msgs <-chan string, prefix string) []string {
	t.Helper()
	var got []string
	for {
		select {
		case m := <-msgs:
			got = append(got, m)
			for l := range strings.SplitSeq(m, "\n") {
				if strings.HasPrefix(l, prefix) {
					return got
				}
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no sd_notify %q within 30s; got %q", prefix, got)
		}
	}
}

func readyz(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get(addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// fazt serve under systemd (Type=notify): READY=1 comes only once the
// read models have caught up (what /readyz says), watchdog pings come
// at half of WATCHDOG_USEC, and STOPPING=1 when it shuts down. The
// read model is held back by a critical projection whose Apply waits
// for the test.
func TestServeNotifiesSystemd(t *testing.T) {
	dir := t.TempDir()
	// A first start writes events the projection below has not seen.
	s := startServer(t, dir)
	s.appendJSON(t, oneEvent)
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}

	gate := make(chan struct{})
	gated := func(k *kernel.Kernel) error {
		return k.RegisterProjection(projections.Projection{
			Name:     "gated",
			Version:  1,
			Critical: true,
			Tables: []schemas.Table{{Name: "seen", Columns: []schemas.Column{
				{Name: "id", Type: "TEXT", PrimaryKey: true},
			}}},
			Filter: eventlog.Filter{Types: []string{"orders.created"}},
			Apply: func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
				select {
				case <-gate:
				case <-ctx.Done():
					return ctx.Err()
				}
				_, err := tx.ExecContext(ctx, `INSERT INTO seen (id) VALUES (?)`, e.ID)
				return err
			},
		})
	}
	sock, msgs := notifyListener(t)
	env := envMap(map[string]string{
		"NOTIFY_SOCKET": sock,
		"WATCHDOG_USEC": "100000", // pings every 50ms
		"WATCHDOG_PID":  strconv.Itoa(os.Getpid()),
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	var stdout, stderr syncBuffer
	go func() {
		done <- run(ctx, append(slices.Clone(testVerticals), gated), []string{"serve", "--data", dir, "--addr", "127.0.0.1:0"}, env, strings.NewReader(""), &stdout, &stderr)
	}()

	// Catching up: STATUS= says so, the watchdog is pinged, no READY=1.
	before := nextNotify(t, msgs, "STATUS=catching_up: critical projections are catching up with the log: ")
	if last := before[len(before)-1]; !strings.Contains(last, "gated (catching_up, seq 0 of 1)") {
		t.Fatalf("the status does not name the projection it waits for: %q", last)
	}
	var st serveState
	waitFor(t, "serve.json", func() bool {
		var err error
		st, err = readState(dir)
		return err == nil
	})
	if code := readyz(t, st.Addr); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d while the critical projection waits", code)
	}
	before = append(before, nextNotify(t, msgs, "WATCHDOG=1")...)
	before = append(before, nextNotify(t, msgs, "WATCHDOG=1")...)
	for _, m := range before {
		if strings.Contains(m, "READY=1") {
			t.Fatalf("READY=1 before the read models caught up: %q", before)
		}
	}

	close(gate)
	got := nextNotify(t, msgs, "READY=1")
	if last := got[len(got)-1]; last != "READY=1\nSTATUS=ready" {
		t.Fatalf("ready message %q", last)
	}
	if code := readyz(t, st.Addr); code != http.StatusOK {
		t.Fatalf("/readyz %d after READY=1", code)
	}
	nextNotify(t, msgs, "WATCHDOG=1") // pings go on once ready

	cancel()
	got = nextNotify(t, msgs, "STOPPING=1")
	if last := got[len(got)-1]; last != "STOPPING=1\nSTATUS=stopping" {
		t.Fatalf("stopping message %q", last)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
}

// Run by systemd, serve keeps the API token out of its output (the
// journal), and a notify socket nobody listens on is a warning, not a
// failure.
func TestServeUnderSystemdQuirks(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	var stdout, stderr syncBuffer
	env := envMap(map[string]string{"NOTIFY_SOCKET": filepath.Join(t.TempDir(), "nobody"), "INVOCATION_ID": "0123456789abcdef"})
	go func() {
		done <- run(ctx, testVerticals, []string{"serve", "--data", dir, "--addr", "127.0.0.1:0"}, env, strings.NewReader(""), &stdout, &stderr)
	}()
	waitFor(t, "the warning", func() bool { return strings.Contains(stderr.String(), "telling systemd the service state failed") })
	var st serveState
	waitFor(t, "serve.json", func() bool {
		var err error
		st, err = readState(dir)
		return err == nil
	})
	waitFor(t, "ready", func() bool { return readyz(t, st.Addr) == http.StatusOK })
	token, err := os.ReadFile(filepath.Join(dir, kernel.TokenFile))
	if err != nil || len(strings.TrimSpace(string(token))) < 32 {
		t.Fatalf("token: %q %v", token, err)
	}
	out := stdout.String()
	if !strings.Contains(out, "API token created in "+filepath.Join(dir, kernel.TokenFile)+" (not logged: read it there)\n") {
		t.Errorf("stdout does not say where the token is:\n%s", out)
	}
	if strings.Contains(out+stderr.String(), strings.TrimSpace(string(token))) {
		t.Errorf("the token is in the output:\n%s", out)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v\n%s", err, stderr.String())
	}
}
