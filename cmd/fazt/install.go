package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel/provision"
)

func (a *app) installCmd() *cobra.Command {
	var in provision.Install
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install Fazt as a hardened systemd service, enabled and started",
		Long: `Install makes this machine serve Fazt as a systemd service: it copies the
binary to ` + provision.BinPath + ` (unless one is installed), writes
` + provision.UnitPath + ` (Type=notify, a dynamic user, its data in
` + provision.DataDir + `, CAP_NET_BIND_SERVICE only, ProtectSystem=strict and
the rest of systemd's sandboxing), then runs systemctl daemon-reload,
enable and start, which waits until the server is ready. It needs root
and systemd.

Run it again with the same options and it changes nothing; with other
options it shows the unit's difference and restarts the service. An
installed binary is kept: fazt upgrade replaces it. Secrets the service
needs (a backup store's credentials) go in ` + provision.EnvFile + `, KEY=value
lines, mode 0600. --dry-run prints the plan; --root DIR writes the files
under DIR and runs no systemctl.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			if _, err := in.Options.Validate(); err != nil {
				return usagef(cmd, "%v", trimInvalid(err))
			}
			// The unit passes the options to serve: refuse one this
			// binary's serve does not take, rather than write a unit
			// that cannot start.
			serve := a.serveCmd().Flags()
			for _, name := range []string{"domain", "email", "backup"} {
				if cmd.Flags().Changed(name) && serve.Lookup(name) == nil {
					return usagef(cmd, "--%s: this fazt's serve has no --%s flag: install a release whose serve has one", name, name)
				}
			}
			if !cmd.Flags().Changed("binary") {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("find this binary: %w; give --binary FILE", err)
				}
				in.Binary = exe
			}
			in.Out = a.stdout
			return in.Run(cmd.Context())
		}),
	}
	f := cmd.Flags()
	f.StringVar(&in.Domain, "domain", "", "the public domain to serve, such as example.com (serve --domain)")
	f.StringVar(&in.Email, "email", "", "the ACME contact email for certificates (serve --email)")
	f.StringArrayVar(&in.Backup, "backup", nil, "a backup replica URL, such as s3://bucket/fazt, or file://"+provision.StateDir+"/backup (serve --backup); repeatable; no credentials in it (use "+provision.EnvFile+")")
	f.StringVar(&in.Root, "root", "", "stage the files under this directory instead of / and run no systemctl")
	f.StringVar(&in.Binary, "binary", "", "the fazt binary to install (default: this one)")
	f.BoolVar(&in.DryRun, "dry-run", false, "print the plan and change nothing")
	return cmd
}

func (a *app) uninstallCmd() *cobra.Command {
	var u provision.Uninstall
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Stop the Fazt service and remove its unit; the data stays unless --purge",
		Long: `Uninstall stops and disables the service installed by fazt install and
removes its unit. The data and the binary in ` + provision.StateDir + ` stay,
so installing again picks up where it stopped; --purge removes them
too, for good. --dry-run prints the plan; --root DIR works on files
staged there and runs no systemctl.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			u.Out = a.stdout
			return u.Run(cmd.Context())
		}),
	}
	f := cmd.Flags()
	f.StringVar(&u.Root, "root", "", "work on the files staged under this directory and run no systemctl")
	f.BoolVar(&u.Purge, "purge", false, "also remove the data and the binary ("+provision.StateDir+"): everything the server stored is lost")
	f.BoolVar(&u.DryRun, "dry-run", false, "print the plan and change nothing")
	return cmd
}

// trimInvalid drops the "invalid: " prefix ErrInvalid gives a message
// that is shown as a usage error anyway.
func trimInvalid(err error) string {
	msg := err.Error()
	if errors.Is(err, eventlog.ErrInvalid) {
		if p := eventlog.ErrInvalid.Error() + ": "; len(msg) > len(p) && msg[:len(p)] == p {
			return msg[len(p):]
		}
	}
	return msg
}
