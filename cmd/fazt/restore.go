package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/backup"
)

func (a *app) restoreCmd() *cobra.Command {
	var (
		from, data, asOf string
		asJSON, rebuild  bool
	)
	cmd := &cobra.Command{
		Use:   "restore --from URL|FILE --data NEWDIR [--as-of SEQ|TIME]",
		Short: "Rebuild a data directory from a backup, exact to the event",
		Long: `Restore rebuilds a data directory from a backup made with
fazt serve --backup URL: it restores the archive from the replica with
Litestream (or copies an archive file), writes its events into a new
event log with their original sequences, IDs, types, times and data, puts
the site files back, and builds the read models. Then
fazt serve --data NEWDIR answers as the original did at that point.

--as-of restores the log up to a sequence number, or up to a time (the
events stored at or before it): exact to the event. NEWDIR must not hold
an event log. Progress goes to stderr.

When the backup replicated projection files too (large read models), each
is restored from its replica as of the same point and installed if it is
sound and its checkpoint is not past the restored log: the read model
then catches up from its checkpoint instead of being rebuilt from the
first event. A projection whose file is missing, damaged or ahead is
rebuilt from the log, and the output says which and why;
--rebuild-projections rebuilds them all.`,
		Example: `  fazt restore --from s3://my-bucket/fazt --data ./restored
  fazt restore --from file:///backups/fazt --data ./yesterday --as-of 2026-12-03T18:00:00Z
  fazt restore --from ./fazt-data/backup/archive.db --data ./copy --as-of 1500`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			opt := backup.RestoreOptions{From: from, Data: data, RebuildProjections: rebuild}
			if asOf != "" {
				seq, t, err := parseAsOf(asOf)
				if err != nil {
					return usagef(cmd, "%v", err)
				}
				opt.AsOfSeq, opt.AsOfTime = seq, t
			}
			return a.restore(cmd.Context(), opt, asJSON)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "the backup: a replica URL (file:///dir, s3://bucket/path?endpoint=…), a replica folder, or an archive file (required)")
	f.StringVar(&data, "data", "", "the new data directory; it must not hold an event log (required)")
	f.StringVar(&asOf, "as-of", "", "restore up to a log sequence number, or a time (RFC 3339 or YYYY-MM-DD, UTC); default: everything")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	f.BoolVar(&rebuild, "rebuild-projections", false, "rebuild every read model from the log, also those the backup replicated as files")
	_ = cmd.MarkFlagRequired("from")
	_ = cmd.MarkFlagRequired("data")
	return cmd
}

// parseAsOf reads a sequence number or a time.
func parseAsOf(s string) (uint64, time.Time, error) {
	if seq, err := strconv.ParseUint(s, 10, 64); err == nil {
		if seq == 0 {
			return 0, time.Time{}, fmt.Errorf("--as-of 0: sequences start at 1")
		}
		return seq, time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return 0, t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return 0, t, nil
	}
	return 0, time.Time{}, fmt.Errorf("--as-of %q: want a sequence number (1500), an RFC 3339 time (2026-11-20T12:00:00Z) or a date (2026-11-20)", s)
}

// restoreResult is what fazt restore prints with --json.
type restoreResult struct {
	backup.RestoreResult
	Data            string  `json:"data"`
	BuildSeconds    float64 `json:"build_seconds"`
	EventsPerSecond float64 `json:"events_per_second"`
}

func (a *app) restore(ctx context.Context, opt backup.RestoreOptions, asJSON bool) error {
	var bar *progress
	stage := ""
	opt.Progress = func(s string, done, total uint64) {
		if s != stage {
			if bar != nil {
				bar.finish()
			}
			stage = s
			what := map[string]string{"fetch": "fetching the archive", "events": "events", "blobs": "files", "projections": "projection files"}[s]
			bar = newProgress(a.stderr, what, int64(total))
		}
		bar.set(int64(done))
	}
	res, err := backup.Restore(ctx, opt)
	if bar != nil {
		bar.finish()
	}
	if err != nil {
		return err
	}
	for _, p := range res.Projections {
		if p.FromFile {
			fmt.Fprintf(a.stderr, "projection %s: restored from its replica (generation %s, checkpoint %d); it catches up from there\n", p.Name, p.Generation, p.Checkpoint)
		} else {
			fmt.Fprintf(a.stderr, "projection %s: rebuilt from the log: %s\n", p.Name, p.Reason)
		}
	}
	out := restoreResult{RestoreResult: res, Data: opt.Data}
	if res.Seconds > 0 {
		out.EventsPerSecond = float64(res.Events) / res.Seconds
	}
	fmt.Fprintf(a.stderr, "building the read models ...\n")
	start := time.Now()
	if err := a.buildReadModels(ctx, opt.Data); err != nil {
		return fmt.Errorf("the log and files are restored in %s, but building the read models failed (fazt serve --data %s builds them at start): %w", opt.Data, opt.Data, err)
	}
	out.BuildSeconds = time.Since(start).Seconds()
	if asJSON {
		b, _ := json.Marshal(out)
		_, err := fmt.Fprintf(a.stdout, "%s\n", b)
		return err
	}
	_, err = fmt.Fprintf(a.stdout, "restored %d events (up to seq %d) and %d files into %s in %.1fs (%.0f events/s), read models built in %.1fs\nevents hash %s\nstart it with: fazt serve --data %s\n",
		res.Events, res.LastSeq, res.Blobs, opt.Data, res.Seconds, out.EventsPerSecond, out.BuildSeconds, res.Hash, opt.Data)
	return err
}

// buildReadModels opens a kernel on dir without HTTP until every read
// model has caught up with the log, then closes it.
func (a *app) buildReadModels(ctx context.Context, dir string) error {
	k, err := a.newKernel(dir, func(k *kernel.Kernel) {
		k.NoHTTP = true
		k.Logger = slog.New(slog.DiscardHandler)
	})
	if err != nil {
		return err
	}
	if err := k.Open(ctx); err != nil {
		return err
	}
	err = k.WaitReady(ctx)
	return joinErr(err, k.Close(context.WithoutCancel(ctx)))
}

func joinErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
