package main

import (
	"fmt"
	"net/url"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/fazt-sh/fazt/kernel/reactor"
)

func (a *app) reactorsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reactors",
		Short: "Inspect the reactors of a running server and retry parked events",
		Long: `Reactors are the durable consumers that perform side effects. An event
whose side effect keeps failing is parked, with the reason; "status"
shows them, and "retry" runs a parked event's side effect again once
the cause is fixed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.reactorsStatusCmd(), a.reactorsRetryCmd())
	return cmd
}

func (a *app) reactorsStatusCmd() *cobra.Command {
	var (
		sf     serverFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each reactor's progress and its parked events",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			var res struct {
				Reactors []reactor.Status `json:"reactors"`
			}
			raw, err := a.get(cmd.Context(), sf, "/v1/reactors", &res)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printRaw(raw)
			}
			if len(res.Reactors) == 0 {
				_, err = fmt.Fprintln(a.stdout, "no reactors")
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 8, 2, ' ', 0)
			for _, r := range res.Reactors {
				fmt.Fprintf(tw, "%s\tdone to seq %d\tpending %d\tparked %d\n", safe(r.Name), r.Delivered, r.Pending, len(r.Parked))
				for _, p := range r.Parked {
					fmt.Fprintf(tw, "\tparked seq %d\t%s\tafter %d attempts: %s\n", p.Seq, safe(p.Type), p.Attempts, safe(p.Error))
				}
			}
			return tw.Flush()
		}),
	}
	serverFlagsOn(cmd, &sf)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the server's JSON answer")
	return cmd
}

func (a *app) reactorsRetryCmd() *cobra.Command {
	var (
		sf  serverFlags
		seq uint64
	)
	cmd := &cobra.Command{
		Use:   "retry NAME --seq N",
		Short: "Run a parked event's side effect again",
		Long: `Retry calls the reactor's handler again for the event parked at --seq,
with the same idempotency key. If it works the event is no longer
parked; if it fails the event stays parked with the new reason, and the
command fails.`,
		Args: cobra.ExactArgs(1),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			if seq == 0 {
				return usagef(cmd, "--seq must be the sequence of the parked event")
			}
			if err := a.post(cmd.Context(), sf, "/v1/reactors/"+url.PathEscape(args[0])+"/retry", map[string]uint64{"seq": seq}); err != nil {
				return err
			}
			_, err := fmt.Fprintf(a.stdout, "retried seq %d in %s: handled, no longer parked\n", seq, args[0])
			return err
		}),
	}
	serverFlagsOn(cmd, &sf)
	cmd.Flags().Uint64Var(&seq, "seq", 0, "the sequence of the parked event (required)")
	_ = cmd.MarkFlagRequired("seq")
	return cmd
}
