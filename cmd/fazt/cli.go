package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// usageError is a mistake in how fazt was invoked (exit status 2), as
// opposed to a failure while doing the work (exit status 1).
type usageError struct {
	err     error
	command string // the command path, for the help hint
}

func (e *usageError) Error() string {
	return fmt.Sprintf("%v\nRun '%s --help' for usage.", e.err, e.command)
}

func (e *usageError) Unwrap() error { return e.err }

// usagef reports a bad flag value found inside a command.
func usagef(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...), command: cmd.CommandPath()}
}

// app carries what run was given to the commands, so that nothing reads
// the process's globals and tests can run it in-process.
type app struct {
	verticals []vertical // registered on every kernel the commands make
	getenv    func(string) string
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
	// started is set when a command's own code begins: cobra's errors
	// before that point (flags, arguments) are usage errors.
	started bool
}

// run parses args and runs the command, with verticals registered on the
// kernel that serve (and schema's catalog) makes. It returns a
// *usageError for bad invocations.
func run(ctx context.Context, verticals []vertical, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	a := &app{verticals: verticals, getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCmd()
	if args == nil {
		args = []string{} // nil makes cobra fall back to os.Args
	}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil && !a.started {
		if cmd == nil {
			cmd = root
		}
		var u *usageError
		if errors.As(err, &u) {
			return err
		}
		return &usageError{err: err, command: cmd.CommandPath()}
	}
	return err
}

// action wraps a command's code: from here on errors are runtime errors,
// not usage errors.
func (a *app) action(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		a.started = true
		cmd.SilenceUsage = true
		cmd.Flags().Visit(func(f *pflag.Flag) {
			if use := f.Annotations[replacedBy]; f.Hidden && len(use) > 0 {
				fmt.Fprintf(a.stderr, "note: --%s is deprecated: use %s\n", f.Name, use[0])
			}
		})
		return fn(cmd, args)
	}
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "fazt",
		Short: "Fazt: a personal cloud kernel on an event-sourced log",
		Long: `Fazt is a personal cloud kernel: an append-only event log on embedded NATS
JetStream, SQLite read models built from it, and the verticals compiled
in (page analytics), served over HTTP. Run "fazt serve" to start a
server; the other commands talk to it, and "fazt demo" fills it with a
sample to explore.`,
		SilenceErrors: true, // main prints the error once
		SilenceUsage:  true, // usage goes to stdout in cobra; a hint is enough
	}
	root.AddCommand(a.serveCmd(), a.doctorCmd(), a.analyticsCmd(), a.deployCmd(), a.appsCmd(), a.demoCmd(), a.eventsCmd(), a.schemaCmd(), a.queryCmd(), a.projectionsCmd(), a.reactorsCmd(), a.certsCmd(), a.backupCmd(), a.restoreCmd(), a.clusterCmd(), a.benchCmd(), a.installCmd(), a.uninstallCmd(), a.upgradeCmd(), a.releaseCmd(), a.versionCmd())
	return root
}

// envOr returns the environment variable's value, or def when unset.
func (a *app) envOr(name, def string) string {
	if v := a.getenv(name); v != "" {
		return v
	}
	return def
}
