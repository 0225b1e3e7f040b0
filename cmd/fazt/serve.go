package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
)

// Files in the data directory besides the log's own (DIR/jetstream).
const (
	tokenFile = "token"
	stateFile = "serve.json"
)

const (
	defaultData     = "./fazt-data"
	defaultAddr     = "127.0.0.1:8080"
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
}

// serveState is DIR/serve.json: how clients on this machine find a
// running server.
type serveState struct {
	Addr string `json:"addr"`
	PID  int    `json:"pid"`
	NATS string `json:"nats,omitempty"` // the NATS listener, with --nats-listen
}

func (a *app) serveCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the event log and its HTTP API",
		Long: `Serve opens the event log in the data directory and serves the HTTP API
until interrupted. On first start it creates an API token in DIR/token
and prints it once. While running, DIR/serve.json tells the other fazt
commands where to find the server.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			return a.serve(cmd, o)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&o.data, "data", a.envOr("FAZT_DATA", defaultData), "data directory (env FAZT_DATA)")
	f.StringVar(&o.addr, "addr", a.envOr("FAZT_ADDR", defaultAddr), "HTTP listen address host:port; port 0 picks a free one (env FAZT_ADDR)")
	f.StringVar(&o.natsListen, "nats-listen", "", "also expose the embedded NATS server on host:port, read-only, for NATS tools (no auth: keep it on loopback)")
	f.BoolVar(&o.natsWrite, "nats-writable", false, "let --nats-listen clients publish into the event stream too (writes around the kernel; appends then guard every write)")
	f.StringVar(&o.natsURL, "nats-url", "", "use an existing NATS server instead of the embedded one")
	f.StringVar(&o.durability, "durability", "strict", "strict (fsync before acknowledging) or relaxed (fsync every second)")
	f.StringVar(&o.logFormat, "log-format", "text", "server log format on stderr: text or json")
	return cmd
}

func (a *app) serve(cmd *cobra.Command, o serveOptions) error {
	ctx := cmd.Context()
	logger, err := newLogger(o.logFormat, a.stderr)
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	durability, err := eventlog.ParseDurability(o.durability)
	if err != nil {
		return usagef(cmd, "--durability: %v", err)
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
	if o.natsListen != "" && !isLoopback(o.natsListen) {
		logger.Warn("the NATS listener has no authentication: anyone who reaches it can read and write the log", "nats_listen", o.natsListen)
	}
	addr := strings.TrimPrefix(o.addr, "http://")
	if !isLoopback(addr) {
		logger.Warn("serving HTTP without TLS beyond loopback: the API token travels in clear text; put a TLS proxy in front", "addr", addr)
	}

	dir := o.data
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	if st, ok := runningServer(ctx, dir); ok {
		return fmt.Errorf("a fazt server (pid %d) is already serving %s at %s", st.PID, dir, st.Addr)
	}
	token, created, err := loadOrCreateToken(dir, logger)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(a.stdout, "API token (stored in %s, shown once): %s\n", filepath.Join(dir, tokenFile), token)
	}

	cat, err := catalog()
	if err != nil {
		return fmt.Errorf("the binary's schemas: %w", err)
	}
	log := eventlog.New(dir)
	log.URL = o.natsURL
	log.Listen = o.natsListen
	log.ListenWritable = o.natsWrite
	log.Durability = durability
	log.Logger = logger
	log.Validate = cat.Events.Validate // every append, from any route
	api := newAPI(log, cat.Events, token, logger)

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	// Shutdown waits for handlers; live streams only end when told to.
	srv.RegisterOnShutdown(api.stopStreams)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	shutdownHTTP := func() error {
		api.ready.Store(false)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
			return fmt.Errorf("http shutdown: %w", err)
		}
		return nil
	}

	// The HTTP server answers /healthz (and 503 on /readyz) while the log
	// opens, which can take a while on a big store.
	if err := log.Open(ctx); err != nil {
		shutdownHTTP()
		if ctx.Err() != nil {
			return nil // interrupted while starting
		}
		return fmt.Errorf("open event log in %s: %w", dir, err)
	}
	if err := cat.Events.Load(ctx, log); err != nil {
		return errors.Join(err, shutdownHTTP(), log.Close(context.WithoutCancel(ctx)))
	}
	runner := projections.New(filepath.Join(dir, "projections"), log)
	runner.Logger = logger
	for _, def := range projectionDefs {
		if err := runner.Register(def()); err != nil {
			return errors.Join(fmt.Errorf("register projection: %w", err), shutdownHTTP(), log.Close(context.WithoutCancel(ctx)))
		}
	}
	if err := runner.Open(ctx); err != nil {
		if ctx.Err() != nil {
			err = nil // interrupted while starting
		} else {
			err = fmt.Errorf("open projections: %w", err)
		}
		return errors.Join(err, shutdownHTTP(), runner.Close(context.WithoutCancel(ctx)), log.Close(context.WithoutCancel(ctx)))
	}
	closeAll := func() error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		perr := runner.Close(cctx)
		if perr != nil {
			perr = fmt.Errorf("close projections: %w", perr)
		}
		lerr := log.Close(cctx)
		if lerr != nil {
			lerr = fmt.Errorf("close event log: %w", lerr)
		}
		return errors.Join(perr, lerr)
	}
	api.projections = runner
	api.ready.Store(true)

	st := serveState{Addr: "http://" + dialable(ln.Addr()), PID: os.Getpid()}
	if o.natsListen != "" {
		st.NATS = log.ClientURL()
	}
	statePath := filepath.Join(dir, stateFile)
	if err := writeFileAtomic(statePath, st); err != nil {
		return errors.Join(err, shutdownHTTP(), closeAll())
	}
	fmt.Fprintf(a.stdout, "fazt serving on %s\n", st.Addr)
	if st.NATS != "" {
		fmt.Fprintf(a.stdout, "NATS listening on %s\n", st.NATS)
	}
	logger.Info("serving", "addr", st.Addr, "data", dir, "durability", durability.String())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
		serveErr = fmt.Errorf("http server: %w", serveErr)
	}
	logger.Info("shutting down")
	_ = os.Remove(statePath)
	httpErr := shutdownHTTP()
	// The projections read the log: close them first.
	return errors.Join(serveErr, httpErr, closeAll())
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

// loadOrCreateToken returns the API token in dir, creating it on first
// start. created tells the caller to show it (the only time it is shown).
func loadOrCreateToken(dir string, logger *slog.Logger) (token string, created bool, err error) {
	path := filepath.Join(dir, tokenFile)
	b, err := os.ReadFile(path)
	if err == nil {
		token = strings.TrimSpace(string(b))
		if token == "" {
			return "", false, fmt.Errorf("token file %s is empty: delete it to make a new token", path)
		}
		if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 && runtime.GOOS != "windows" {
			logger.Warn("the token file is readable by other users; chmod 600 it", "path", path, "mode", st.Mode().Perm().String())
		}
		return token, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("read token: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", false, err
	}
	token = hex.EncodeToString(raw[:])
	// O_EXCL: never overwrite a token that appeared in the meantime.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", false, fmt.Errorf("create token: %w", err)
	}
	_, err = f.WriteString(token + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", false, fmt.Errorf("write token: %w", err)
	}
	return token, true, nil
}

// writeFileAtomic writes v as JSON to path with mode 0600, so that a
// reader never sees half a file.
func writeFileAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*") // mode 0600
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
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
	if err := json.Unmarshal(b, &st); err != nil || st.Addr == "" {
		return st, fmt.Errorf("%s is damaged; delete it: %v", filepath.Join(dir, stateFile), err)
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

// isLoopback reports whether a host:port listens only on this machine.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// dialable turns a listener's address into one a client can connect to:
// an unspecified address (0.0.0.0, ::) becomes the loopback one.
func dialable(addr net.Addr) string {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	ip := ta.IP
	switch {
	case ip == nil || ip.Equal(net.IPv4zero):
		ip = net.IPv4(127, 0, 0, 1)
	case ip.Equal(net.IPv6unspecified):
		ip = net.IPv6loopback
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(ta.Port))
}
