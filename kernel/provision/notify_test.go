package provision

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
)

// notifySocket is a unixgram socket standing in for systemd's: it
// listens where NOTIFY_SOCKET will say and hands each datagram over.
type notifySocket struct {
	name string
	msgs chan string
}

func listenNotify(t *testing.T, name string) *notifySocket {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	s := &notifySocket{name: name, msgs: make(chan string, 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			s.msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return s
}

// next returns the next message, failing after a generous wait.
func (s *notifySocket) next(t *testing.T) string {
	t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-time.After(30 * time.Second):
		t.Fatal("no sd_notify message within 30s")
		return ""
	}
}

// until returns the messages up to and including the first that has
// the line want.
func (s *notifySocket) until(t *testing.T, want string) []string {
	t.Helper()
	var got []string
	for {
		m := s.next(t)
		got = append(got, m)
		if hasLine(m, want) {
			return got
		}
	}
}

func hasLine(msg, line string) bool {
	for l := range strings.SplitSeq(msg, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

func TestNotifierFromEnv(t *testing.T) {
	pid := os.Getpid()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	if n, err := NotifierFromEnv(env(nil), pid); n != nil || err != nil {
		t.Fatalf("no NOTIFY_SOCKET: %v %v", n, err)
	}
	if _, err := NotifierFromEnv(env(map[string]string{"NOTIFY_SOCKET": "relative/sock"}), pid); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("relative socket: %v", err)
	}
	if _, err := NotifierFromEnv(env(map[string]string{"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "soon"}), pid); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("bad WATCHDOG_USEC: %v", err)
	}
	for _, tc := range []struct {
		pid  string
		want time.Duration
	}{{"", 3 * time.Second}, {strconv.Itoa(pid), 3 * time.Second}, {strconv.Itoa(pid + 1), 0}} {
		n, err := NotifierFromEnv(env(map[string]string{"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": tc.pid}), pid)
		if err != nil || n.Watchdog != tc.want {
			t.Errorf("WATCHDOG_PID=%q: %v %v; want watchdog %v", tc.pid, n, err, tc.want)
		}
	}

	// A path socket and an abstract one (@name) both get the message.
	for _, name := range []string{filepath.Join(t.TempDir(), "notify"), fmt.Sprintf("@fazt-test-%d-%d", pid, time.Now().UnixNano())} {
		s := listenNotify(t, name)
		n, err := NotifierFromEnv(env(map[string]string{"NOTIFY_SOCKET": name}), pid)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Notify("READY=1"); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if m := s.next(t); m != "READY=1" {
			t.Fatalf("%s: got %q", name, m)
		}
	}
	// Nobody listening: an error, not a hang or a panic.
	n, _ := NotifierFromEnv(env(map[string]string{"NOTIFY_SOCKET": filepath.Join(t.TempDir(), "gone")}), pid)
	if err := n.Notify("READY=1"); err == nil {
		t.Fatal("notify to a missing socket succeeded")
	}
	var none *Notifier
	if err := none.Notify("READY=1"); err != nil {
		t.Fatalf("nil notifier: %v", err)
	}
}

// Supervise says READY=1 only once ready() does, keeps STATUS= current,
// pings the watchdog and says STOPPING=1 at the end.
func TestSupervise(t *testing.T) {
	s := listenNotify(t, filepath.Join(t.TempDir(), "notify"))
	n, err := NotifierFromEnv(func(k string) string {
		return map[string]string{"NOTIFY_SOCKET": s.name, "WATCHDOG_USEC": "20000"}[k]
	}, os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer func(d time.Duration) { extendEvery = d }(extendEvery)
	extendEvery = 0 // extend at every look while catching up
	var ready, halted atomic.Bool
	var calls atomic.Int64
	readiness := func() Readiness {
		calls.Add(1)
		switch {
		case ready.Load():
			return Readiness{Ready: true, Status: "ready"}
		case halted.Load():
			return Readiness{Status: "halted: apps (halted at seq 4: boom)"}
		}
		return Readiness{Status: "catching_up: apps (seq 3 of 9)", CatchingUp: true}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Supervise(ctx, readiness, func(msg string, err error) { t.Errorf("%s: %v", msg, err) })
	}()

	first := s.until(t, "STATUS=catching_up: apps (seq 3 of 9)")
	// Pings come while it waits, and the start timeout is extended while
	// it catches up; never READY.
	extend := fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", extendBy.Microseconds())
	for pings, extended := 0, false; pings < 3 || !extended; {
		m := s.next(t)
		if hasLine(m, "READY=1") {
			t.Fatalf("READY=1 while not ready: %q (before: %q)", m, first)
		}
		pings += strings.Count(m, "WATCHDOG=1")
		extended = extended || m == extend
	}
	// Halted is not progress: no more extensions.
	halted.Store(true)
	s.until(t, "STATUS=halted: apps (halted at seq 4: boom)")
	for pings := 0; pings < 3; {
		m := s.next(t)
		if m == extend || hasLine(m, "READY=1") {
			t.Fatalf("%q while halted", m)
		}
		pings += strings.Count(m, "WATCHDOG=1")
	}
	ready.Store(true)
	got := s.until(t, "READY=1")
	if last := got[len(got)-1]; last != "READY=1\nSTATUS=ready" {
		t.Fatalf("ready message %q", last)
	}
	cancel()
	<-done
	if got := s.until(t, "STOPPING=1"); got[len(got)-1] != "STOPPING=1\nSTATUS=stopping" {
		t.Fatalf("stopping message %q", got[len(got)-1])
	}
	if calls.Load() < 2 {
		t.Fatalf("readiness asked %d times", calls.Load())
	}
}
