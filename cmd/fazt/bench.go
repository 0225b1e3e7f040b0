package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fazt-sh/fazt/cmd/fazt/internal/bench"
)

// benchChildEnv is added to the environment of the process `fazt bench`
// re-executes for its start-up scenario; a test binary sets it to know
// that it is that child.
var benchChildEnv []string

type benchOptions struct {
	scenarios     string
	duration      time.Duration
	rounds        int
	sizes         string
	callers       string
	events        string
	rebuildEvents string
	dir           string
	settle        bool
	keep          bool
	asJSON        bool
}

func (a *app) benchCmd() *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the kernel against its raw ingredients on this machine",
		Long: `Bench measures the kernel (the event log and a projection runner) in a
temporary directory and, in the same run, the raw ingredients it is made
of: bare JetStream and plain SQLite. Every figure is reported as a ratio
to its raw counterpart, from alternated rounds, because absolute numbers
drift between machines and runs and ratios much less.

Scenarios:
  1  append, relaxed, vs JetStream async publish (each --sizes payload)
  2  append, strict, at each --callers vs JetStream publish with fsync
  3  projection catch-up and full rebuild vs ordered replay and batched
     SQLite insert (--rebuild-events events); the same for the analytics
     read model, rebuilt from --rebuild-events realistic page views
  4  append to visible in the read model: the maximum rate, then paced
     at 1,000 events/s and at 50% and 80% of the maximum
  5  read-only queries on a projection vs SELECTs on SQLite
  6  start-up with --events events projected, and restart after SIGKILL,
     vs a bare JetStream server recovering the same store; JetStream
     re-reads its last two minutes at start (both sides), here every
     event, unless --settle waits them out first
  7  static serving: a site deployed through the deploy API, its 9 KiB
     and 1 MiB files fetched over 32 keep-alive connections from the
     kernel's listener (Host NAME.localhost) vs the same files from disk
     by Go's http.FileServer and by nginx when nginx is on PATH

The defaults (200k events at start-up, 50k folded) take a minute and a half
on 2 cores. The table goes to stdout (--json for one JSON
document), progress to stderr. Every file is removed at the end unless
--keep.`,
		Example: `  fazt bench
  fazt bench --scenarios 1,2 --duration 2s --rounds 5
  fazt bench --scenarios 6 --events 1M --settle --dir .
  fazt bench --scenarios 7 --duration 2s
  fazt bench --json > bench.json`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.config(cmd)
			if err != nil {
				return err
			}
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find this program to re-execute: %w", err)
			}
			cfg.Child = func(ctx context.Context, args []string) *exec.Cmd {
				c := exec.CommandContext(ctx, exe, append([]string{"bench", "child"}, args...)...)
				if len(benchChildEnv) > 0 {
					c.Env = append(os.Environ(), benchChildEnv...)
				}
				return c
			}
			cfg.Progress = a.stderr
			if f, ok := a.stderr.(*os.File); ok {
				if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
					cfg.Overwrite = true
				}
			}
			rep, err := bench.Run(cmd.Context(), cfg)
			if rep == nil || (err != nil && len(rep.Results) == 0) {
				return err
			}
			// What was measured before a failure is still worth showing.
			write := rep.WriteTable
			if o.asJSON {
				write = rep.WriteJSON
			}
			return errors.Join(write(a.stdout), err)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&o.scenarios, "scenarios", "1,2,3,4,5,6,7", "scenarios to run, comma-separated")
	f.DurationVar(&o.duration, "duration", 500*time.Millisecond, "length of each timed round (scenario 4 paces each rate for 4 rounds' worth)")
	f.IntVar(&o.rounds, "rounds", 3, "rounds per case; raw and kernel rounds alternate and the medians are reported")
	f.StringVar(&o.sizes, "sizes", "256,4KiB", "payload sizes of scenario 1 (scenario 2 uses the first): bytes, or with k/KiB")
	f.StringVar(&o.callers, "callers", "1,16,64,256", "concurrent appenders of scenario 2")
	f.StringVar(&o.events, "events", "200k", "events in the log at start-up (scenario 6): a count, or with k/M (1M takes minutes: --scenarios 6 --events 1M)")
	f.StringVar(&o.rebuildEvents, "rebuild-events", "50k", "events folded by scenario 3 (scenario 5 reads up to 20k of them)")
	f.BoolVar(&o.settle, "settle", false, "scenario 6: wait until the events are older than the 2-minute dedupe window, which JetStream re-reads at start (adds up to 2 minutes)")
	f.StringVar(&o.dir, "dir", "", "make the temporary directory here, on the disk to measure (default: the system's temporary directory)")
	f.BoolVar(&o.keep, "keep", false, "keep the temporary directory and say where it is")
	f.BoolVar(&o.asJSON, "json", false, "print one JSON document instead of the table")
	cmd.AddCommand(a.benchChildCmd())
	return cmd
}

// config turns the flags into a bench.Config; mistakes are usage errors.
func (o benchOptions) config(cmd *cobra.Command) (bench.Config, error) {
	cfg := bench.Config{Duration: o.duration, Rounds: o.rounds, Dir: o.dir, Keep: o.keep, Settle: o.settle}
	var err error
	if cfg.Scenarios, err = parseList(o.scenarios, strconv.Atoi); err != nil {
		return cfg, usagef(cmd, "--scenarios: %v", err)
	}
	if cfg.Sizes, err = parseList(o.sizes, parseSize); err != nil {
		return cfg, usagef(cmd, "--sizes: %v", err)
	}
	if cfg.Callers, err = parseList(o.callers, strconv.Atoi); err != nil {
		return cfg, usagef(cmd, "--callers: %v", err)
	}
	if cfg.Events, err = parseCount(o.events); err != nil {
		return cfg, usagef(cmd, "--events: %v", err)
	}
	if cfg.RebuildEvents, err = parseCount(o.rebuildEvents); err != nil {
		return cfg, usagef(cmd, "--rebuild-events: %v", err)
	}
	if err := cfg.Check(); err != nil {
		return cfg, usagef(cmd, "%v", err)
	}
	return cfg, nil
}

func parseList(s string, parse func(string) (int, error)) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := parse(f)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", f, err)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%q: empty list", s)
	}
	return out, nil
}

// parseSize reads 256, 256B, 4k, 4K or 4KiB (1024 bytes).
func parseSize(s string) (int, error) {
	mult := 1
	for _, suf := range []string{"KiB", "k", "K"} {
		if t, ok := strings.CutSuffix(s, suf); ok {
			s, mult = t, 1024
			break
		}
	}
	s = strings.TrimSuffix(s, "B")
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("want a positive size such as 256 or 4KiB")
	}
	return n * mult, nil
}

// parseCount reads 1000000, 1000k or 1M (decimal).
func parseCount(s string) (int, error) {
	mult := 1
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		s, mult = s[:len(s)-1], 1000
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "m"):
		s, mult = s[:len(s)-1], 1_000_000
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q: want a positive count such as 200000, 200k or 1M", s)
	}
	return n * mult, nil
}

// benchChildCmd is the process the start-up scenario starts and kills.
func (a *app) benchChildCmd() *cobra.Command {
	var c bench.ChildConfig
	cmd := &cobra.Command{
		Use:    "child --dir DIR [--raw]",
		Short:  "The start-up scenario's child process (internal)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			if c.Dir == "" {
				return usagef(cmd, "--dir is required")
			}
			return bench.RunChild(cmd.Context(), c, a.stdin, a.stdout)
		}),
	}
	cmd.Flags().StringVar(&c.Dir, "dir", "", "data directory of the log")
	cmd.Flags().BoolVar(&c.Raw, "raw", false, "start a bare JetStream server on the store instead of the kernel")
	return cmd
}
