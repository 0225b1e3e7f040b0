package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/provision"
)

// Files in the data directory besides the log's own (DIR/jetstream).
const stateFile = "serve.json"

const (
	defaultData     = "./fazt-data"
	defaultAddr     = kernel.DefaultAddr
	shutdownTimeout = 10 * time.Second
)

type serveOptions struct {
	data       string
	addr       string
	natsListen string
	natsWrite  bool
	natsURL    string
	durability string
	logFormat  string
	storeLimit string
	reserve    string
	edge       edgeOptions
	backup     []string
	backupProj bool
	cluster    clusterOptions
}

// serveState is DIR/serve.json: how clients on this machine find a
// running server.
type serveState struct {
	Addr string `json:"addr"`
	PID  int    `json:"pid"`
	NATS string `json:"nats,omitempty"` // the NATS listener, with --nats-listen
	// The edge's listeners, with --domain.
	EdgeHTTP  string `json:"edge_http,omitempty"`
	EdgeHTTPS string `json:"edge_https,omitempty"`
}

func (a *app) serveCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the kernel: the event log, the read models and the HTTP API",
		Long: `Serve opens the kernel in the data directory, in order: the event log,
the schemas, the read models (catching up with the log), the verticals'
routes; and serves the HTTP API until interrupted, then stops in reverse
order. /readyz turns ready once the critical read models have caught
up. On first start it creates an API token in DIR/token and prints it
once. While running, DIR/serve.json tells the other fazt commands where
to find the server.

With --domain and --email, the edge also serves every app publicly at
https://NAME.DOMAIN/ (and its aliases and custom domains) on :80 and
:443, obtaining and renewing certificates by itself, and the API at
https://fazt.DOMAIN/ with the token ("fazt certs list" shows them).`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			return a.serve(cmd, o)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&o.data, "data", a.envOr("FAZT_DATA", defaultData), "data directory (env FAZT_DATA)")
	f.StringVar(&o.addr, "addr", a.envOr("FAZT_ADDR", defaultAddr), "HTTP listen address host:port; port 0 picks a free one (env FAZT_ADDR)")
	f.StringVar(&o.natsListen, "nats-listen", "", "also expose the embedded NATS server on host:port for NATS tools such as the nats CLI: clients may read the event log (stream info/ls/get/view) and nothing else; no auth, so keep it on loopback")
	f.BoolVar(&o.natsWrite, "nats-writable", false, "let --nats-listen clients also publish to "+eventlog.AllSubjects+" (writes around the kernel, stored as they come; appends then guard every write); stream administration stays refused")
	f.StringVar(&o.natsURL, "nats-url", "", "use an existing NATS server instead of the embedded one; several, comma separated, for a cluster")
	f.StringVar(&o.durability, "durability", "strict", "strict (fsync before acknowledging) or relaxed (fsync every second)")
	f.StringVar(&o.logFormat, "log-format", "text", "server log format on stderr: text or json")
	f.StringVar(&o.storeLimit, "store-limit", "0", "most disk the log may use, e.g. 20GiB; 0: no limit but the disk and --disk-reserve (appends past it get 507 insufficient_storage)")
	f.StringVar(&o.reserve, "disk-reserve", humanize.IBytes(eventlog.DefaultDiskReserve), "free space appends leave on the data directory's disk, for the read models and SQLite; 0: none. Appends below it get 507 and resume once space is freed")
	a.edgeFlags(f, &o.edge)
	f.StringArrayVar(&o.backup, "backup", nil, "copy every event and site file continuously to this replica (file:///dir, s3://bucket/path?endpoint=…, a folder; any Litestream replica URL); repeatable. See fazt backup, fazt restore")
	f.BoolVar(&o.backupProj, "backup-projections", false, "also replicate each read model's SQLite file to the --backup replicas (under URL/projections/NAME/GENERATION), for read models too large to rebuild from the log quickly")
	a.clusterFlags(f, &o.cluster)
	return cmd
}

func (a *app) serve(cmd *cobra.Command, o serveOptions) error {
	// SIGUSR2 (fazt upgrade) ends serve to re-exec the binary in place.
	ctx, reexec := provision.WatchReexec(cmd.Context())
	defer reexec.Stop()
	logger, err := newLogger(o.logFormat, a.stderr)
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	durability, err := eventlog.ParseDurability(o.durability)
	if err != nil {
		return usagef(cmd, "--durability: %v", err)
	}
	storeLimit, err := parseBytes(o.storeLimit)
	if err != nil {
		return usagef(cmd, "--store-limit: %v", err)
	}
	reserve, err := parseBytes(o.reserve)
	if err != nil {
		return usagef(cmd, "--disk-reserve: %v", err)
	}
	if reserve == 0 {
		reserve = -1 // none
	}
	if o.natsURL != "" && (cmd.Flags().Changed("store-limit") || cmd.Flags().Changed("disk-reserve")) {
		logger.Warn("--store-limit and --disk-reserve have no effect with --nats-url: storage is the NATS server's configuration")
	}
	if o.natsWrite && o.natsListen == "" {
		return usagef(cmd, "--nats-writable needs --nats-listen")
	}
	if o.natsURL != "" && o.natsListen != "" {
		return usagef(cmd, "--nats-listen exposes the embedded NATS server; it cannot be used with --nats-url")
	}
	if o.natsURL != "" && cmd.Flags().Changed("durability") {
		logger.Warn("--durability has no effect with --nats-url: durability is the NATS server's configuration")
	}

	dir := o.data
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	if st, ok := runningServer(ctx, dir); ok {
		return fmt.Errorf("a fazt server (pid %d) is already serving %s at %s", st.PID, dir, st.Addr)
	}
	token, created, err := kernel.LoadOrCreateToken(dir, logger)
	if err != nil {
		return err
	}
	switch {
	case created && a.getenv("INVOCATION_ID") != "":
		// Run by systemd: stdout goes to the journal, which more users
		// may read than the token file.
		fmt.Fprintf(a.stdout, "API token created in %s (not logged: read it there)\n", filepath.Join(dir, kernel.TokenFile))
	case created:
		fmt.Fprintf(a.stdout, "API token (stored in %s, shown once): %s\n", filepath.Join(dir, kernel.TokenFile), token)
	}

	k, err := a.newKernel(dir, func(k *kernel.Kernel) {
		k.Addr = o.addr
		k.Token = token
		k.Durability = durability
		k.NATSURL, k.NATSListen, k.NATSWritable = o.natsURL, o.natsListen, o.natsWrite
		k.StoreLimit, k.DiskReserve = storeLimit, reserve
		k.Logger = logger
	})
	if err != nil {
		return fmt.Errorf("the binary's verticals: %w", err)
	}
	if err := a.applyCluster(cmd, o.cluster, dir, o.natsURL, k); err != nil {
		return err
	}
	cn, err := registerCluster(k)
	if err != nil {
		return err
	}
	bk, err := registerBackup(k, o.backup)
	if err == nil && o.backupProj {
		err = bk.UseProjections()
	}
	if err != nil {
		return usagef(cmd, "--backup: %v", err)
	}
	ed, err := a.setupEdge(k, dir, o.edge, cmd.Flags().Changed)
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	// Under systemd (Type=notify): READY=1 once /readyz would say ready,
	// STOPPING=1 when ctx ends, watchdog pings if the unit asks.
	stopNotify := a.notifySystemd(ctx, k, logger)
	defer stopNotify()
	if err := k.Open(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while starting
		}
		return err
	}
	if err := bk.Start(ctx); err != nil {
		return errors.Join(err, k.Close(context.WithoutCancel(ctx)))
	}

	st := serveState{Addr: "http://" + k.ListenAddr(), PID: os.Getpid()}
	if err := cn.start(st.Addr); err != nil {
		return errors.Join(err, k.Close(context.WithoutCancel(ctx)))
	}
	if o.natsListen != "" {
		st.NATS = k.Log().ClientURL()
	}
	statePath := filepath.Join(dir, stateFile)
	if err := writeFileAtomic(statePath, st); err != nil {
		return errors.Join(err, k.Close(context.WithoutCancel(ctx)))
	}
	fmt.Fprintf(a.stdout, "fazt serving on %s\n", st.Addr)
	if st.NATS != "" {
		fmt.Fprintf(a.stdout, "NATS listening on %s\n", st.NATS)
	}
	err = a.serveEdge(ctx, k, ed, &st, statePath, func(ctx context.Context) error { return serveWithBackup(ctx, k, bk, logger) })
	os.Remove(statePath)
	if err == nil && reexec.Requested() {
		return reexec.Exec()
	}
	return err
}

// parseBytes reads a size such as 64MiB, 20GB or 1048576 (go-humanize).
func parseBytes(s string) (int64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size (like 512MiB or 20GB)", s)
	}
	if n > 1<<62 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(n), nil
}

func newLogger(format string, w io.Writer) (*slog.Logger, error) {
	switch format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// writeFileAtomic writes v as JSON to path with mode 0600, so that a
// reader never sees half a file (provision.WriteFile).
func writeFileAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := provision.WriteFile(path, bytes.NewReader(append(b, '\n')), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// readState reads DIR/serve.json.
func readState(dir string) (serveState, error) {
	var st serveState
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s is damaged; delete it: %w", filepath.Join(dir, stateFile), err)
	}
	if st.Addr == "" {
		return st, fmt.Errorf("%s is damaged (no address); delete it", filepath.Join(dir, stateFile))
	}
	return st, nil
}

// runningServer reports a server already answering for dir. A stale
// serve.json (left by a killed server) does not count.
func runningServer(ctx context.Context, dir string) (serveState, bool) {
	st, err := readState(dir)
	if err != nil {
		return st, false
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(st.Addr, "/")+"/healthz", nil)
	if err != nil {
		return st, false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, false
	}
	resp.Body.Close()
	return st, resp.StatusCode == http.StatusOK
}
