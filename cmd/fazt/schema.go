package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/schemas"
)

func (a *app) schemaCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schema",
		Short: "Hold the code's schemas to the committed ledger",
		Long: `The ledger (schemas/ledger.jsonl) records every event schema version and
table declaration that has shipped. "fazt schema check" fails when the
code breaks it; "fazt schema lock" appends the new, compatible ones.`,
	}
	var ledger, base string
	var asJSON bool
	check := &cobra.Command{
		Use:   "check",
		Short: "Fail if the code's schemas break the ledger",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			cat, err := a.catalog()
			if err != nil {
				return err
			}
			l, err := schemas.ReadLedger(ledger)
			if err != nil {
				return err
			}
			var problems []string
			if base != "" {
				old, err := schemas.ReadLedger(base)
				if err != nil {
					return fmt.Errorf("--base: %w", err)
				}
				if err := old.IsPrefixOf(l); err != nil {
					problems = append(problems, err.Error())
				}
			}
			r := l.Check(cat)
			problems = append(problems, r.Problems...)
			if asJSON {
				out := struct {
					OK       bool                  `json:"ok"`
					Problems []string              `json:"problems"`
					Unlocked []schemas.LedgerEntry `json:"unlocked"`
				}{len(problems) == 0, problems, r.Unlocked}
				if out.Problems == nil {
					out.Problems = []string{}
				}
				if out.Unlocked == nil {
					out.Unlocked = []schemas.LedgerEntry{}
				}
				if err := json.NewEncoder(a.stdout).Encode(out); err != nil {
					return err
				}
			} else {
				for _, p := range problems {
					fmt.Fprintf(a.stdout, "BREAKS LEDGER: %s\n", p)
				}
				for _, e := range r.Unlocked {
					fmt.Fprintf(a.stdout, "not yet locked: %s %s version %d (run: fazt schema lock)\n", e.Kind, e.Name, e.Version)
				}
				if len(problems) == 0 {
					fmt.Fprintf(a.stdout, "ok: the code keeps every promise of %s (%d entries)\n", ledger, len(l.Entries))
				}
			}
			if len(problems) > 0 {
				return fmt.Errorf("%w: %d problem(s) with %s", schemas.ErrEDDViolation, len(problems), ledger)
			}
			return nil
		}),
	}
	check.Flags().StringVar(&base, "base", "", "an older copy of the ledger that must be a prefix of it (CI passes the last commit's)")
	check.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	lock := &cobra.Command{
		Use:   "lock",
		Short: "Append the code's new, compatible schemas to the ledger",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			cat, err := a.catalog()
			if err != nil {
				return err
			}
			added, err := schemas.Lock(ledger, cat)
			if err != nil {
				return err
			}
			if len(added) == 0 {
				fmt.Fprintf(a.stdout, "nothing to lock: %s is up to date\n", ledger)
			}
			for _, e := range added {
				fmt.Fprintf(a.stdout, "locked %s %s version %d\n", e.Kind, e.Name, e.Version)
			}
			return nil
		}),
	}
	for _, c := range []*cobra.Command{check, lock} {
		c.Flags().StringVar(&ledger, "ledger", schemas.DefaultLedger, "the ledger file")
	}
	cmd.AddCommand(check, lock, a.schemaRegisterCmd(), a.schemaListCmd(), a.schemaShowCmd())
	return cmd
}

// serverFlagsOn adds the flags that find a running server.
func serverFlagsOn(cmd *cobra.Command, sf *serverFlags) {
	addServerFlags(cmd.Flags(), sf)
}

// addServerFlags adds --addr, --token and --data (the data directory, as
// serve and doctor name it) to f; --data-dir, its name before, still
// works, hidden and deprecated.
func addServerFlags(f *pflag.FlagSet, sf *serverFlags) {
	f.StringVar(&sf.addr, "addr", "", "server URL, like http://127.0.0.1:8080 (env FAZT_ADDR; default: from DIR/serve.json)")
	f.StringVar(&sf.token, "token", "", "API token (env FAZT_TOKEN; default: from DIR/token)")
	f.StringVar(&sf.data, "data", "", "data directory of a local server, to find it (env FAZT_DATA; default ./fazt-data)")
	f.StringVar(&sf.data, "data-dir", "", "the old name of --data")
	_ = f.MarkHidden("data-dir")
	_ = f.SetAnnotation("data-dir", replacedBy, []string{"--data"})
}

// replacedBy annotates a hidden flag kept for old scripts with the flag
// to use instead; a command given it prints a note.
const replacedBy = "fazt-replaced-by"

func (a *app) schemaRegisterCmd() *cobra.Command {
	var sf serverFlags
	var file string
	cmd := &cobra.Command{
		Use:   "register TYPE --file SCHEMA.json",
		Short: "Register the next version of an event type on a running server",
		Long: `Register sends a JSON Schema for the event type's data. The first version
can be any object schema; each later one may only add optional
properties. The registration is itself an event in the log.`,
		Example: `  fazt schema register orders.placed --file orders.placed.v1.json
  echo '{"type":"object","properties":{"total":{"type":"number"}},"required":["total"]}' | fazt schema register orders.placed --file -`,
		Args: cobra.ExactArgs(1),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			var b []byte
			var err error
			if file == "-" {
				b, err = io.ReadAll(io.LimitReader(a.stdin, kernel.MaxSchemaBytes+1))
			} else {
				b, err = os.ReadFile(file)
			}
			if err != nil {
				return fmt.Errorf("read schema: %w", err)
			}
			if !json.Valid(b) {
				return usagef(cmd, "%s is not valid JSON", file)
			}
			c, err := a.connect(sf)
			if err != nil {
				return err
			}
			defer c.close()
			var out struct {
				Type    string `json:"type"`
				Version int    `json:"version"`
			}
			if _, err := c.call(cmd.Context(), http.MethodPost, "/v1/schemas/"+url.PathEscape(args[0]), nil, json.RawMessage(b), &out); err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "registered %s version %d\n", safe(out.Type), out.Version)
			return err
		}),
	}
	serverFlagsOn(cmd, &sf)
	cmd.Flags().StringVar(&file, "file", "", "the JSON Schema file; - reads standard input (required)")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

func (a *app) schemaListCmd() *cobra.Command {
	var sf serverFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the event types a running server knows",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Types []kernel.SchemaInfo `json:"types"`
			}
			raw, err := a.get(cmd.Context(), sf, "/v1/schemas", &out)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printRaw(raw)
			}
			for _, t := range out.Types {
				origin := "registered at run time"
				if t.InCode {
					origin = "declared by the binary"
				}
				fmt.Fprintf(a.stdout, "%s  v%d  %s\n", safe(t.Type), t.Latest, origin)
			}
			return nil
		}),
	}
	serverFlagsOn(cmd, &sf)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the server's JSON answer")
	return cmd
}

func (a *app) schemaShowCmd() *cobra.Command {
	var sf serverFlags
	cmd := &cobra.Command{
		Use:   "show TYPE",
		Short: "Print every version of an event type's schema (JSON)",
		Args:  cobra.ExactArgs(1),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			raw, err := a.get(cmd.Context(), sf, "/v1/schemas/"+url.PathEscape(args[0]), nil)
			if err != nil {
				return err
			}
			return a.printRaw(raw)
		}),
	}
	serverFlagsOn(cmd, &sf)
	return cmd
}
