package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/fazt-sh/fazt/kernel"
)

func (a *app) doctorCmd() *cobra.Command {
	var (
		data   string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check a data directory and its server, and say what to fix",
		Long: `Doctor checks the data directory (permissions, free space, the token
file), the event stream's configuration (immutable, unlimited), SQLite,
and the health of every projection and reactor, and prints what to fix.
With a server running on the directory it asks the server; otherwise it
only reads the directory: its permissions, free space, the token file,
the files of the event log and read models, and the SQLite built into
fazt. What only an open log can tell (the stream's configuration,
schemas, projections, reactors) is then reported as skipped: opening the
log would write to the directory. It exits with status 1 when a check
fails; warnings and skipped checks do not fail.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			checks, err := a.doctor(cmd.Context(), data)
			if err != nil {
				return err
			}
			if asJSON {
				b, err := json.Marshal(struct {
					Checks []kernel.Check `json:"checks"`
				}{checks})
				if err != nil {
					return err
				}
				if err := a.printRaw(b); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(a.stdout, 0, 8, 2, ' ', 0)
				for _, c := range checks {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", safe(string(c.Status)), safe(c.Name), safe(c.Detail))
					if c.Fix != "" {
						fmt.Fprintf(tw, "\t\tfix: %s\n", safe(c.Fix))
					}
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			var failed []string
			for _, c := range checks {
				if c.Status == kernel.CheckFail {
					failed = append(failed, c.Name)
				}
			}
			if len(failed) > 0 {
				return fmt.Errorf("%d check(s) failed: %s", len(failed), strings.Join(failed, ", "))
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&data, "data", a.envOr("FAZT_DATA", defaultData), "data directory (env FAZT_DATA)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the checks as JSON")
	return cmd
}

// doctor runs the checks through the running server, or on the
// directory itself when none runs.
func (a *app) doctor(ctx context.Context, dir string) ([]kernel.Check, error) {
	st, running := runningServer(ctx, dir)
	if running {
		c, err := a.connect(serverFlags{data: dir, addr: st.Addr})
		if err != nil {
			return nil, err
		}
		defer c.close()
		var res struct {
			Checks []kernel.Check `json:"checks"`
		}
		if _, err := c.call(ctx, http.MethodGet, "/v1/doctor", nil, nil, &res); err != nil {
			return nil, err
		}
		server := kernel.Check{Name: "server", Status: kernel.CheckOK, Detail: fmt.Sprintf("running at %s (pid %d)", st.Addr, st.PID)}
		return append([]kernel.Check{server}, res.Checks...), nil
	}
	// No server: read the directory, write nothing (not even the token).
	server := kernel.Check{Name: "server", Status: kernel.CheckOK, Detail: "not running; checked the directory without opening it"}
	if st.Addr != "" {
		server.Detail += fmt.Sprintf("; %s names %s (pid %d), which does not answer: left by a server that stopped without cleaning up", stateFile, st.Addr, st.PID)
	}
	return append([]kernel.Check{server}, kernel.DiagnoseStopped(ctx, dir)...), nil
}
