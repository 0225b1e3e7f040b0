package main

import (
	"context"
	"log/slog"
	"os"
	"strings"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/provision"
)

// notifySystemd tells systemd, when it runs the server (NOTIFY_SOCKET),
// how the kernel is doing; see provision.Notifier.Supervise. The
// returned func stops it and waits until it has.
func (a *app) notifySystemd(ctx context.Context, k *kernel.Kernel, logger *slog.Logger) func() {
	n, err := provision.NotifierFromEnv(a.getenv, os.Getpid())
	if err != nil {
		logger.Warn("not telling systemd the service state", "err", err)
	}
	if n == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Supervise(ctx, func() provision.Readiness { return readinessOf(k) }, func(msg string, err error) {
			logger.Warn(msg, "err", err)
		})
	}()
	return func() { cancel(); <-done }
}

// readinessOf is the kernel's /readyz as systemd's start-up sees it.
func readinessOf(k *kernel.Kernel) provision.Readiness {
	rd := k.Readiness()
	status := rd.Status
	if rd.Ready {
		status = "ready"
	}
	if rd.Reason != "" {
		status += ": " + rd.Reason
	}
	if len(rd.Projections) > 0 {
		status += ": " + strings.Join(rd.Projections, ", ")
	}
	if len(rd.Degraded) > 0 {
		status += "; degraded: " + strings.Join(rd.Degraded, ", ")
	}
	// The log opening and the read models catching up are progress;
	// a halted critical projection is not.
	return provision.Readiness{Ready: rd.Ready, Status: status, CatchingUp: rd.Status == "catching_up" || rd.Status == "unavailable"}
}
