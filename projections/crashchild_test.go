package projections_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
)

// Environment that turns TestProjectionCrashChild from a skip into the
// process TestCrashExactlyOnce kills.
const (
	envChildURL     = "FAZT_PROJ_CRASH_URL"     // the parent's NATS server
	envChildDir     = "FAZT_PROJ_CRASH_DIR"     // the runner's directory
	envChildBatch   = "FAZT_PROJ_CRASH_BATCH"   // Runner.BatchSize
	envChildRebuild = "FAZT_PROJ_CRASH_REBUILD" // "true": start a rebuild of each projection

	childMaxLife = 60 * time.Second // the child stops by itself if nobody kills it
)

// crashProjections are folded by the child: deliberately non-idempotent
// counters (UPDATE n = n + 1) with a filter by type and one by category,
// so an event applied twice or missed shows in the totals.
func crashProjections() []projections.Projection {
	return []projections.Projection{
		counter("hits", eventlog.Filter{Types: []string{"crash.hit"}}),
		counter("cat", eventlog.Filter{Categories: []string{"crash"}}),
	}
}

// TestProjectionCrashChild is the process killed by TestCrashExactlyOnce;
// on its own it skips.
func TestProjectionCrashChild(t *testing.T) {
	url := os.Getenv(envChildURL)
	if url == "" {
		t.Skip("helper process for TestCrashExactlyOnce")
	}
	// An orphan (parent gone) must not run for ever.
	time.AfterFunc(childMaxLife, func() { os.Exit(3) })
	fail := func(format string, args ...any) {
		fmt.Printf("err "+format+"\n", args...)
		os.Exit(2)
	}
	ctx := context.Background()
	l := eventlog.New("")
	l.URL = url
	l.PollInterval = 10 * time.Millisecond
	if err := l.Open(ctx); err != nil {
		fail("open log: %v", err)
	}
	r := projections.New(os.Getenv(envChildDir), l)
	r.BatchSize, _ = strconv.Atoi(os.Getenv(envChildBatch))
	r.RetryInterval = 50 * time.Millisecond
	r.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	for _, p := range crashProjections() {
		if err := r.Register(p); err != nil {
			fail("register: %v", err)
		}
	}
	if err := r.Open(ctx); err != nil {
		fail("open runner: %v", err)
	}
	if os.Getenv(envChildRebuild) == "true" {
		for _, p := range crashProjections() {
			if err := r.Rebuild(ctx, p.Name); err != nil {
				fail("rebuild: %v", err)
			}
		}
	}
	fmt.Println("ready")
	for {
		for _, s := range r.Statuses() {
			if s.Halted != nil {
				fail("%s halted: %s", s.Name, s.Halted.Error)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}
