package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/projections"
)

func (a *app) queryCmd() *cobra.Command {
	var (
		sf         serverFlags
		projection string
		args       []string
		minSeq     uint64
		maxRows    int
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "query --projection NAME \"SQL\"",
		Short: "Run a read-only SQL query on a projection of a running server",
		Long: `Query runs one SQL statement, read-only, on a projection's tables and
prints the rows as a table, then how many and the log sequence they are
consistent with. Each --arg binds the next ? in the SQL, as a string.`,
		Example: `  fazt query --projection orders_total "SELECT stream, n FROM totals WHERE n > ?" --arg 1
  fazt query --projection orders_total "SELECT * FROM totals" --min-seq 42 --json`,
		Args: cobra.ExactArgs(1),
		RunE: a.action(func(cmd *cobra.Command, pos []string) error {
			c, err := a.connect(sf)
			if err != nil {
				return err
			}
			defer c.close()
			qargs := make([]any, len(args))
			for i, v := range args {
				qargs[i] = v
			}
			body := map[string]any{"projection": projection, "sql": pos[0], "args": qargs}
			if minSeq > 0 {
				body["min_seq"] = minSeq
			}
			if maxRows > 0 {
				body["max_rows"] = maxRows
			}
			raw, err := c.call(cmd.Context(), http.MethodPost, "/v1/query", nil, body, nil)
			if err != nil {
				return err
			}
			var res kernel.QueryResponse
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.UseNumber() // integers as the server sent them
			if err := dec.Decode(&res); err != nil {
				return fmt.Errorf("unreadable answer from the server: %w", err)
			}
			if asJSON {
				return a.printRaw(raw)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 8, 2, ' ', 0)
			cols := make([]string, len(res.Columns))
			for i, c := range res.Columns {
				cols[i] = safe(c)
			}
			fmt.Fprintln(tw, strings.Join(cols, "\t"))
			for _, row := range res.Rows {
				cells := make([]string, len(row))
				for i, v := range row {
					cells[i] = safe(formatCell(v))
				}
				fmt.Fprintln(tw, strings.Join(cells, "\t"))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			noun := "rows"
			if len(res.Rows) == 1 {
				noun = "row"
			}
			trunc := ""
			if res.Truncated {
				trunc = " (truncated)"
			}
			_, err = fmt.Fprintf(a.stdout, "(%d %s, as of seq %d)%s\n", len(res.Rows), noun, res.Seq, trunc)
			return err
		}),
	}
	serverFlagsOn(cmd, &sf)
	f := cmd.Flags()
	f.StringVar(&projection, "projection", "", "projection to query (required)")
	f.StringArrayVar(&args, "arg", nil, "value for the next ? in the SQL (repeatable)")
	f.Uint64Var(&minSeq, "min-seq", 0, "wait until the projection has folded the log up to this seq")
	f.IntVar(&maxRows, "max-rows", 0, fmt.Sprintf("most rows to return (default %d, at most %d)", projections.DefaultQueryMaxRows, projections.MaxQueryRows))
	f.BoolVar(&asJSON, "json", false, "print the server's JSON answer")
	_ = cmd.MarkFlagRequired("projection")
	return cmd
}

// formatCell renders one value of a query row for the table.
func formatCell(v any) string {
	switch v := v.(type) {
	case nil:
		return "NULL"
	case string:
		return v
	case json.Number:
		return v.String()
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func (a *app) projectionsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "projections",
		Short: "Inspect and operate the projections of a running server",
		Long: `Projections are SQLite read models folded from the event log. "status"
shows how far each is; "rebuild" builds one again from the log while the
current file keeps serving; "retry" and "skip" resume one halted at an
event; "build" builds one as of a past point into a separate file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.projectionsStatusCmd(), a.projectionsRebuildCmd(), a.projectionsRetryCmd(), a.projectionsSkipCmd(), a.projectionsBuildCmd())
	return cmd
}

func (a *app) projectionsStatusCmd() *cobra.Command {
	var (
		sf     serverFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "status [NAME]",
		Short: "Show the state of every projection, or of one",
		Long: `Status prints one line per projection: name, version, state, the log
sequence it has folded, how far behind the log it is, and a halt or a
rebuild's progress when there is one.`,
		Args: cobra.MaximumNArgs(1),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			c, err := a.connect(sf)
			if err != nil {
				return err
			}
			defer c.close()
			var list []projections.Status
			var raw []byte
			if len(args) == 1 {
				var st projections.Status
				raw, err = c.call(cmd.Context(), http.MethodGet, "/v1/projections/"+url.PathEscape(args[0]), nil, nil, &st)
				list = []projections.Status{st}
			} else {
				var res struct {
					Projections []projections.Status `json:"projections"`
				}
				raw, err = c.call(cmd.Context(), http.MethodGet, "/v1/projections", nil, nil, &res)
				list = res.Projections
			}
			if err != nil {
				return err
			}
			if asJSON {
				return a.printRaw(raw)
			}
			if len(list) == 0 {
				_, err = fmt.Fprintln(a.stdout, "no projections")
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 8, 2, ' ', 0)
			for _, st := range list {
				fmt.Fprintf(tw, "%s\tv%d\t%s\tseq %d\tlag %d%s\n", safe(st.Name), st.Version, safe(string(st.State)), st.Seq, st.Lag, statusNotes(st))
			}
			return tw.Flush()
		}),
	}
	serverFlagsOn(cmd, &sf)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the server's JSON answer")
	return cmd
}

// statusNotes describes a halt, a rebuild and an error, for status lines.
func statusNotes(st projections.Status) string {
	var notes []string
	if h := st.Halted; h != nil {
		what := "malformed message"
		if h.Type != "" {
			what = h.Type + " " + h.EventID
		}
		notes = append(notes, fmt.Sprintf("halted at seq %d (%s): %s", h.Seq, what, h.Error))
	}
	if p := st.Rebuild; p != nil {
		s := fmt.Sprintf("rebuild (%s) %d/%d", p.Reason, p.Done, p.Total)
		if p.Total > 0 {
			s += fmt.Sprintf(" %.0f%%", 100*float64(p.Done)/float64(p.Total))
		}
		if p.ETA > 0 {
			s += " eta " + p.ETA.Round(time.Second).String()
		}
		notes = append(notes, s)
	}
	if st.Error != "" && st.Halted == nil {
		notes = append(notes, "error: "+st.Error)
	}
	if st.ServingVersion != 0 && st.ServingVersion != st.Version {
		notes = append(notes, fmt.Sprintf("serving v%d", st.ServingVersion))
	}
	if len(notes) == 0 {
		return ""
	}
	return "\t" + safe(strings.Join(notes, "; "))
}

// projectionOp is a POST to /v1/projections/NAME/OP.
func (a *app) projectionOp(cmd *cobra.Command, sf serverFlags, name, op string, body any) error {
	return a.post(cmd.Context(), sf, "/v1/projections/"+url.PathEscape(name)+"/"+op, body)
}

func (a *app) projectionsRebuildCmd() *cobra.Command {
	var sf serverFlags
	cmd := &cobra.Command{
		Use:   "rebuild NAME",
		Short: "Rebuild a projection from the log, blue/green",
		Long: `Rebuild builds the projection again from the start of the log into a new
file, in the background; the current file keeps serving until the new
one has caught up. Follow it with "fazt projections status NAME".`,
		Args: cobra.ExactArgs(1),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			if err := a.projectionOp(cmd, sf, args[0], "rebuild", nil); err != nil {
				return err
			}
			_, err := fmt.Fprintf(a.stdout, "rebuilding %s; follow it with: fazt projections status %s\n", args[0], args[0])
			return err
		}),
	}
	serverFlagsOn(cmd, &sf)
	return cmd
}

func (a *app) projectionsRetryCmd() *cobra.Command {
	var sf serverFlags
	cmd := &cobra.Command{
		Use:   "retry NAME",
		Short: "Resume a halted projection: try the failing event again",
		Args:  cobra.ExactArgs(1),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			if err := a.projectionOp(cmd, sf, args[0], "retry", nil); err != nil {
				return err
			}
			_, err := fmt.Fprintf(a.stdout, "resumed %s\n", args[0])
			return err
		}),
	}
	serverFlagsOn(cmd, &sf)
	return cmd
}

func (a *app) projectionsSkipCmd() *cobra.Command {
	var (
		sf  serverFlags
		seq uint64
	)
	cmd := &cobra.Command{
		Use:   "skip NAME --seq N",
		Short: "Skip the event a projection is halted at, and resume",
		Long: `Skip records in the log the decision to skip the event at --seq, which
must be the one the projection is halted at, then resumes it.`,
		Args: cobra.ExactArgs(1),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			if seq == 0 {
				return usagef(cmd, "--seq must be the sequence the projection is halted at")
			}
			if err := a.projectionOp(cmd, sf, args[0], "skip", map[string]uint64{"seq": seq}); err != nil {
				return err
			}
			_, err := fmt.Fprintf(a.stdout, "skipped seq %d in %s and resumed\n", seq, args[0])
			return err
		}),
	}
	serverFlagsOn(cmd, &sf)
	cmd.Flags().Uint64Var(&seq, "seq", 0, "the sequence the projection is halted at (required)")
	_ = cmd.MarkFlagRequired("seq")
	return cmd
}

func (a *app) projectionsBuildCmd() *cobra.Command {
	var (
		sf        serverFlags
		asOf, out string
	)
	cmd := &cobra.Command{
		Use:   "build NAME --as-of SEQ|TIME --out FILE",
		Short: "Build a projection as of a past point of the log into a new file",
		Long: `Build folds the log from its start up to --as-of into a new SQLite file,
the read model as it was then (time travel). --as-of is a sequence number
or a time (RFC 3339, or a UTC date such as 2026-11-20, meaning its start);
a time selects the last event stored at or before it. The server writes
the file in its data directory's builds folder (DIR/builds, mode 0700):
--out is the file's name there, which must not exist yet, and the command
prints its full path. Query it with sqlite3 or any SQLite tool, or copy
it elsewhere. The serving projection is not touched.`,
		Example: `  fazt projections build analytics --as-of 1500 --out analytics-1500.db
  fazt projections build analytics --as-of 2026-11-20T12:00:00Z --out noon.db
  sqlite3 fazt-data/builds/noon.db 'SELECT count(*) FROM pageviews'`,
		Args: cobra.ExactArgs(1),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			req, err := buildRequest(asOf, out)
			if err != nil {
				return usagef(cmd, "%v", err)
			}
			c, err := a.connect(sf)
			if err != nil {
				return err
			}
			defer c.close()
			fmt.Fprintf(a.stderr, "building %s as of %s into %s in the server's builds folder ...\n", args[0], asOf, req.Out)
			// No request timeout: a build folds the whole log up to the point.
			resp, err := c.do(cmd.Context(), http.MethodPost, "/v1/projections/"+url.PathEscape(args[0])+"/build", nil, req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var res struct {
				Seq     uint64  `json:"seq"`
				File    string  `json:"file"`
				Seconds float64 `json:"seconds"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
				return fmt.Errorf("unreadable answer from the server: %w", err)
			}
			_, err = fmt.Fprintf(a.stdout, "built %s as of seq %d into %s in %.1fs\n", args[0], res.Seq, safe(res.File), res.Seconds)
			return err
		}),
	}
	serverFlagsOn(cmd, &sf)
	cmd.Flags().StringVar(&asOf, "as-of", "", "a log sequence number, or a time (RFC 3339 or YYYY-MM-DD, UTC) (required)")
	cmd.Flags().StringVar(&out, "out", "", "name of the new SQLite file in the server's DIR/builds, like analytics-1500.db (required; must not exist)")
	_ = cmd.MarkFlagRequired("as-of")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

// buildRequest parses build's flags into the request body.
func buildRequest(asOf, out string) (kernel.BuildRequest, error) {
	var req kernel.BuildRequest
	if out == "" {
		return req, fmt.Errorf("--out is required")
	}
	if strings.ContainsAny(out, `/\`) || out == "." || out == ".." {
		return req, fmt.Errorf("--out %q: give a file name, not a path: the server writes it in its data directory's %s folder", out, kernel.BuildsDir)
	}
	req.Out = out
	if seq, err := strconv.ParseUint(asOf, 10, 64); err == nil {
		if seq == 0 {
			return req, fmt.Errorf("--as-of 0: sequences start at 1")
		}
		req.AsOfSeq = seq
		return req, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, asOf); err == nil {
		req.AsOfTime = t.Format(time.RFC3339Nano)
		return req, nil
	}
	if t, err := time.Parse(time.DateOnly, asOf); err == nil {
		req.AsOfTime = t.Format(time.RFC3339Nano)
		return req, nil
	}
	return req, fmt.Errorf("--as-of %q: want a sequence number (1500), an RFC 3339 time (2026-11-20T12:00:00Z) or a date (2026-11-20)", asOf)
}
