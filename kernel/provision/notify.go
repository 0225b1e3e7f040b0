package provision

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
)

// The notify protocol (sd_notify(3)) is one datagram of KEY=VALUE lines
// on the socket systemd names in NOTIFY_SOCKET: a dozen lines, so Fazt
// speaks it itself rather than importing a module for it.

// Intervals of Supervise (variables for the tests).
var (
	// readyPollMax bounds the wait between two looks at readiness while
	// the server starts (the first looks come sooner).
	readyPollMax = 500 * time.Millisecond
	// statusEvery is how often, once ready, a change of readiness is
	// passed on as STATUS=.
	statusEvery = 5 * time.Second
	// extendEvery and extendBy: while the read models catch up, each
	// extendEvery asks systemd for extendBy more than TimeoutStartSec=,
	// so a long catch-up is not killed; a halted one is not extended.
	extendEvery = 10 * time.Second
	extendBy    = 30 * time.Second
)

// Notifier sends state changes to the service manager. A nil
// *Notifier (not run by systemd) sends nothing.
type Notifier struct {
	addr *net.UnixAddr
	// Watchdog is the interval systemd expects WATCHDOG=1 within
	// (WatchdogSec=), or 0 when the unit asks for none.
	Watchdog time.Duration
}

// NotifierFromEnv returns the notifier systemd asks for through
// NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID, read with getenv, for
// the process pid; nil, nil when NOTIFY_SOCKET is unset. A socket that
// is neither an absolute path nor an abstract name (@name) is
// ErrInvalid.
func NotifierFromEnv(getenv func(string) string, pid int) (*Notifier, error) {
	sock := getenv("NOTIFY_SOCKET")
	if sock == "" {
		return nil, nil
	}
	if !strings.HasPrefix(sock, "/") && !strings.HasPrefix(sock, "@") {
		return nil, fmt.Errorf("%w: NOTIFY_SOCKET=%q: want an absolute path or an abstract socket (@name)", eventlog.ErrInvalid, sock)
	}
	// Go maps a leading @ to Linux's abstract namespace.
	n := &Notifier{addr: &net.UnixAddr{Name: sock, Net: "unixgram"}}
	if us := getenv("WATCHDOG_USEC"); us != "" {
		v, err := strconv.ParseUint(us, 10, 63)
		if err != nil || v == 0 {
			return nil, fmt.Errorf("%w: WATCHDOG_USEC=%q: want a positive number of microseconds", eventlog.ErrInvalid, us)
		}
		// WATCHDOG_PID names the process the watchdog is meant for; a
		// child that inherited the variables is not it.
		if p := getenv("WATCHDOG_PID"); p == "" || p == strconv.Itoa(pid) {
			n.Watchdog = time.Duration(v) * time.Microsecond
		}
	}
	return n, nil
}

// Notify sends one message: lines such as READY=1 or STATUS=text.
func (n *Notifier) Notify(state string) error {
	if n == nil {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %q: %w", state, err)
	}
	return nil
}

// Readiness is what Supervise needs to know of the server, each time it
// asks: whether it is ready, a one-line status for `systemctl status`,
// and whether it is still working toward ready (catching up), which
// extends systemd's start timeout.
type Readiness struct {
	Ready      bool
	Status     string
	CatchingUp bool
}

// Supervise keeps systemd informed until ctx ends: STATUS= while the
// server starts, READY=1 once ready() says so (not before), STATUS= on
// changes after that, WATCHDOG=1 at half the watchdog interval (each
// after ready() has answered, so a server stuck in its own locks stops
// pinging and is restarted), and STOPPING=1 when ctx ends. Errors of
// the socket are passed to logf and do not stop it.
func (n *Notifier) Supervise(ctx context.Context, ready func() Readiness, logf func(msg string, err error)) {
	if n == nil {
		return
	}
	send := func(state string) {
		if err := n.Notify(state); err != nil && logf != nil {
			logf("telling systemd the service state failed", err)
		}
	}
	var watchdog <-chan time.Time
	if n.Watchdog > 0 {
		t := time.NewTicker(n.Watchdog / 2)
		defer t.Stop()
		watchdog = t.C
	}
	isReady, status := false, ""
	poll := 10 * time.Millisecond
	lastExtend := time.Now()
	check := time.NewTimer(0)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			send("STOPPING=1\nSTATUS=stopping")
			return
		case <-watchdog:
			ready()
			send("WATCHDOG=1")
		case <-check.C:
			r := ready()
			switch {
			case r.Ready && !isReady:
				isReady, status = true, r.Status
				send("READY=1\nSTATUS=" + oneLine(r.Status))
			case r.Status != status:
				status = r.Status
				send("STATUS=" + oneLine(r.Status))
			}
			if !isReady && r.CatchingUp && time.Since(lastExtend) >= extendEvery {
				lastExtend = time.Now()
				send(fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", extendBy.Microseconds()))
			}
			if isReady {
				check.Reset(statusEvery)
			} else {
				poll = min(2*poll, readyPollMax)
				check.Reset(poll)
			}
		}
	}
}

// oneLine keeps a status to one line: a newline would start a new
// assignment in the message.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}
