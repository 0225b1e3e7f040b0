package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version, commit and commitTime, when set at link time (-ldflags
// "-X main.version=v1.2.3 -X main.commit=$(git rev-parse HEAD)"),
// override what the build info says. go build in a git clone records
// the commit, its time and whether the tree was modified by itself
// (the vcs.* settings of runtime/debug.BuildInfo); go run, go test,
// -buildvcs=false and a git worktree (whose .git is a file, which Go
// does not recognise) record none.
var version, commit, commitTime string

// noVCS explains a commit printed as unknown.
const noVCS = "unknown (this binary carries no VCS information: go run, go test, -buildvcs=false and git worktrees leave it out; build with go build in a git clone)"

type versionInfo struct {
	Version    string `json:"version"`
	Commit     string `json:"commit,omitempty"`
	CommitTime string `json:"commit_time,omitempty"`
	Modified   bool   `json:"modified,omitempty"`
	Go         string `json:"go"`
	Platform   string `json:"platform"`
}

func buildVersion() versionInfo {
	v := versionInfo{Version: "(devel)", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v.Version = bi.Main.Version
		}
		v.Go = bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Commit = s.Value
			case "vcs.time":
				v.CommitTime = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	if version != "" {
		v.Version = version
	}
	if commit != "" {
		v.Commit = commit
	}
	if commitTime != "" {
		v.CommitTime = commitTime
	}
	return v
}

func (a *app) versionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of fazt and how it was built",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			v := buildVersion()
			if asJSON {
				return json.NewEncoder(a.stdout).Encode(v)
			}
			rev, when := v.Commit, v.CommitTime
			if rev == "" {
				rev = noVCS
			}
			if v.Modified {
				rev += " (modified)"
			}
			if when == "" {
				when = "unknown"
			}
			_, err := fmt.Fprintf(a.stdout, "fazt %s\ncommit: %s\ntime:   %s\ngo:     %s %s\n", v.Version, rev, when, v.Go, v.Platform)
			return err
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}
