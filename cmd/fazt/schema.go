package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

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
			cat, err := catalog()
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
			cat, err := catalog()
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
	cmd.AddCommand(check, lock)
	return cmd
}
