package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fazt-sh/fazt/kernel/edge"
)

func (a *app) certsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Inspect the certificates of a running server's edge",
		Long: `With "fazt serve --domain", the edge obtains a certificate for every host
bound to an app (NAME.DOMAIN, aliases, custom domains, the admin host)
and renews it. "list" shows each certificate's names, issuer, expiry
and the last error met obtaining or renewing it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.certsListCmd())
	return cmd
}

func (a *app) certsListCmd() *cobra.Command {
	var (
		sf     serverFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the certificates: names, issuer, expiry, last error",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			var res struct {
				Certificates []edge.Cert `json:"certificates"`
			}
			raw, err := a.get(cmd.Context(), sf, EdgeCertsPath, &res)
			if err != nil {
				if se := (*serverError)(nil); errors.As(err, &se) && se.Code == "not_found" {
					return fmt.Errorf("the server runs without an edge: start it with --domain and --email")
				}
				return err
			}
			if asJSON {
				return a.printRaw(raw)
			}
			if len(res.Certificates) == 0 {
				_, err = fmt.Fprintln(a.stdout, "no certificates yet: they are obtained when a host is bound or first visited")
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "NAMES\tISSUER\tEXPIRES\tBOUND\tLAST ERROR")
			for _, c := range res.Certificates {
				exp := "none yet"
				if !c.NotAfter.IsZero() {
					exp = c.NotAfter.UTC().Format(time.RFC3339)
				}
				last := "-"
				if c.LastError != "" {
					last = c.ErrorAt.UTC().Format(time.RFC3339) + " " + c.LastError
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", safe(strings.Join(c.Names, ",")), safe(c.Issuer), exp, c.Bound, safe(last))
			}
			return tw.Flush()
		}),
	}
	serverFlagsOn(cmd, &sf)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the server's JSON answer")
	return cmd
}
