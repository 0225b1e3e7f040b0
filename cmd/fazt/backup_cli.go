package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/backup"
)

func (a *app) backupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Inspect and check the continuous backup of a running server",
		Long: `fazt serve --backup URL, or "add URL" on a running server (no restart),
copies every event and site file into an archive (DIR/backup/archive.db)
and replicates it with Litestream to each URL. "status" shows each
replica's progress and lag (also in fazt doctor and /metrics), "verify"
runs a restore drill: it restores a replica's latest copy and compares
it with the log. fazt restore rebuilds a data directory from a replica.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.backupStatusCmd(), a.backupVerifyCmd(), a.backupChangeCmd(true), a.backupChangeCmd(false))
	return cmd
}

// backupChangeCmd is "backup add URL" or "backup remove URL": an event
// the running server follows at once, and every later start too.
func (a *app) backupChangeCmd(add bool) *cobra.Command {
	var sf serverFlags
	use, short := "add URL", "Start copying to a replica now, without a restart (recorded in the log)"
	if !add {
		use, short = "remove URL", "Stop copying to a replica added with fazt backup add (a last sync first)"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + `.
URL is a Litestream replica URL (file:///dir, s3://bucket/path?endpoint=…)
or a folder. Credentials never go in the URL (it is kept in the log):
the server reads them from its environment (AWS_ACCESS_KEY_ID, ...).`,
		Args: cobra.ExactArgs(1),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			u := args[0]
			var res struct {
				URL string `json:"url"`
				Seq uint64 `json:"seq"`
			}
			var err error
			if add {
				_, err = a.once(cmd.Context(), sf, "POST", "/v1/backup/replicas", map[string]string{"url": u}, &res)
			} else {
				_, err = a.once(cmd.Context(), sf, "DELETE", "/v1/backup/replicas?url="+url.QueryEscape(u), nil, &res)
			}
			if err != nil {
				return err
			}
			verb := "added replica"
			if !add {
				verb = "removed replica"
			}
			_, err = fmt.Fprintf(a.stdout, "%s %s (seq %d); fazt backup status shows its progress\n", verb, safe(res.URL), res.Seq)
			return err
		}),
	}
	serverFlagsOn(cmd, &sf)
	return cmd
}

func (a *app) backupStatusCmd() *cobra.Command {
	var (
		sf     serverFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the archive's and each replica's last sequence, lag and last error",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			var st backup.Status
			raw, err := a.get(cmd.Context(), sf, "/v1/backup", &st)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printRaw(raw)
			}
			if !st.Enabled {
				_, err := fmt.Fprintln(a.stdout, "backup is off: start the server with --backup URL (repeatable)")
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintf(tw, "log\tseq %d\t\t\n", st.LogSeq)
			fmt.Fprintf(tw, "archive\tseq %d\tlag %d events, %s\t%s\n", st.ArchivedSeq, st.LagEvents, secs(st.LagSeconds), safe(st.LastError))
			for _, r := range st.Replicas {
				fmt.Fprintf(tw, "%s\tseq %d\tlag %d events, %s\t%s\n", safe(r.URL), r.CopiedSeq, r.LagEvents, secs(r.LagSeconds), safe(r.LastError))
			}
			return tw.Flush()
		}),
	}
	serverFlagsOn(cmd, &sf)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the server's JSON answer")
	return cmd
}

func secs(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Millisecond).String()
}

func (a *app) backupVerifyCmd() *cobra.Command {
	var (
		sf      serverFlags
		replica string
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Restore the latest copy of a replica and compare it with the live log",
		Long: `Verify is a restore drill in one command: the server restores a replica's
latest copy (the first replica unless --replica) into a temporary file,
checks it, and compares it with the live log over the events it holds:
their count, the last sequence and a hash over every event. It fails
when they differ.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			var res backup.VerifyResult
			body := map[string]string{}
			if replica != "" {
				body["replica"] = replica
			}
			raw, err := a.once(cmd.Context(), sf, "POST", "/v1/backup/verify", body, &res)
			if err != nil {
				return err
			}
			if asJSON {
				if err := a.printRaw(raw); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(a.stdout, "replica %s: %d events up to seq %d, %d files (log at seq %d), in %.1fs\ncopy hash %s\nlog hash  %s\n",
					safe(res.Replica), res.Events, res.LastSeq, res.Blobs, res.LogSeq, res.Seconds, res.Hash, res.LiveHash)
			}
			if !res.OK {
				return fmt.Errorf("verify failed: %s", safe(res.Problem))
			}
			if !asJSON {
				fmt.Fprintln(a.stdout, "ok: the copy matches the log")
			}
			return nil
		}),
	}
	serverFlagsOn(cmd, &sf)
	cmd.Flags().StringVar(&replica, "replica", "", "the replica URL to verify, as fazt backup status shows it (default: the first)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the server's JSON answer")
	return cmd
}

// registerBackup gives the backup service the verticals registered on
// k (or registers it) the --backup URLs; serve starts it once the
// kernel is open.
func registerBackup(k *kernel.Kernel, urls []string) (*backup.Service, error) {
	bk := backup.ServiceOf(k)
	if bk == nil {
		var err error
		if bk, err = backup.Register(k, backup.Config{}); err != nil {
			return nil, err
		}
	}
	return bk, bk.UseReplicas(urls)
}

// serveWithBackup serves until ctx ends, then stops the backup (a last
// sync, bounded) before the kernel closes, while the log is still open.
func serveWithBackup(ctx context.Context, k *kernel.Kernel, bk *backup.Service, logger *slog.Logger) error {
	if bk == nil {
		return k.Serve(ctx)
	}
	kctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
		case <-kctx.Done(): // the kernel stopped by itself
		}
		if err := bk.Close(context.WithoutCancel(ctx)); err != nil {
			logger.Warn("backup: stopped before everything was copied; it resumes at the next start", "err", err)
		}
		cancel()
	}()
	err := k.Serve(kctx)
	cancel()
	<-stopped
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}
