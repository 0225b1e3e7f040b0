package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/oklog/ulid/v2"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/reactor"
)

// ReactorName names the service's reactor (and its durable consumer).
const ReactorName = "provision"

// Config tunes the upgrade side of the service.
type Config struct {
	// Version is the running binary's version, reported by GET
	// /v1/provision/status; the upgrade waits for the new one there.
	Version string
	// Executable and Args are how this process was started (default
	// os.Executable() and os.Args): the reactor runs Executable for a
	// requested upgrade, and a rollback that must start the server
	// afresh starts it with Args.
	Executable string
	Args       []string
	// UpgradeArgs returns the command line (after Executable) that
	// carries out a requested upgrade; nil: DefaultUpgradeArgs.
	UpgradeArgs func(req UpgradeRequested, dataDir string) []string
}

// DefaultUpgradeArgs is `upgrade --detach --request ID --from FROM
// --data DIR`. It passes no --key, whatever the event says: a release
// asked for through the API is checked against the key built into the
// binary, so that the API token is not enough to install a binary
// signed by a key of the caller's choosing.
func DefaultUpgradeArgs(req UpgradeRequested, dataDir string) []string {
	return []string{"upgrade", "--detach", "--request", req.Upgrade, "--from", req.From, "--data", dataDir}
}

// Status is what GET /v1/provision/status answers: what runs, and how
// to start it again.
type Status struct {
	Version    string   `json:"version"`
	Platform   string   `json:"platform"`
	PID        int      `json:"pid"`
	Executable string   `json:"executable"`
	Args       []string `json:"args"`
	// Dir is the working directory the server was started in.
	Dir string `json:"dir"`
	// Data is the data directory, absolute.
	Data string `json:"data"`
	// Unit is the systemd unit the server runs as; empty when it does
	// not run under systemd.
	Unit string `json:"unit,omitempty"`
}

// Service is the upgrade side of the provisioning service on one kernel.
type Service struct {
	k   *kernel.Kernel
	cfg Config
	w   *eventlog.Writer
}

// Register declares the service on k, before k.Open: its event types,
// the reserved category "provision", its routes and its reactor.
func Register(k *kernel.Kernel, cfg Config) (*Service, error) {
	if cfg.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("provision: %w", err)
		}
		cfg.Executable = exe
	}
	if cfg.Args == nil {
		cfg.Args = os.Args
	}
	if cfg.UpgradeArgs == nil {
		cfg.UpgradeArgs = DefaultUpgradeArgs
	}
	s := &Service{k: k, cfg: cfg}
	for _, e := range eventSchemas {
		if err := k.RegisterEvent(e.typ, e.version, []byte(e.schema)); err != nil {
			return nil, fmt.Errorf("provision: %w", err)
		}
	}
	w, err := k.Log().Reserve(Category)
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	s.w = w
	for _, rt := range []struct {
		pattern string
		h       func(http.ResponseWriter, *http.Request) error
	}{
		{"GET /v1/provision/status", s.status},
		{"POST /v1/provision/records", s.record},
		{"POST /v1/provision/upgrades", s.request},
	} {
		h := rt.h
		if err := k.Handle(rt.pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := h(w, r); err != nil {
				k.WriteError(w, r, err)
			}
		})); err != nil {
			return nil, fmt.Errorf("provision: %w", err)
		}
	}
	if err := k.RegisterReactor(reactor.Reactor{
		Name:   ReactorName,
		Filter: eventlog.Filter{Categories: []string{Category}, Types: []string{TypeUpgradeRequested}},
		Handle: s.handle,
	}); err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	return s, nil
}

// Status reports what runs.
func (s *Service) Status() Status {
	wd, _ := os.Getwd()
	data, _ := filepath.Abs(s.k.Dir(""))
	return Status{
		Version: s.cfg.Version, Platform: runtime.GOOS + "/" + runtime.GOARCH, PID: os.Getpid(),
		Executable: s.cfg.Executable, Args: s.cfg.Args, Dir: wd, Data: data, Unit: SystemdUnit(),
	}
}

func (s *Service) status(w http.ResponseWriter, r *http.Request) error {
	if _, err := kernel.CheckQuery(r); err != nil {
		return err
	}
	kernel.WriteJSON(w, http.StatusOK, s.Status())
	return nil
}

// Record is the body of POST /v1/provision/records: one step of an
// upgrade, recorded by the command that carries it out.
type Record struct {
	// ID is the event's ID, a ULID the caller makes: a retry with the
	// same ID is not recorded twice.
	ID   string          `json:"id"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

func (s *Service) record(w http.ResponseWriter, r *http.Request) error {
	var rec Record
	if err := kernel.DecodeJSON(w, r, &rec); err != nil {
		return err
	}
	if !recordTypes[rec.Type] {
		return kernel.Invalidf("type %q: this route records only the provision.upgrade_* events", rec.Type)
	}
	if _, err := ulid.ParseStrict(rec.ID); err != nil || len(rec.ID) != 26 {
		return kernel.Invalidf("id %q: want a ULID made by the caller, so that a retry is recorded once", rec.ID)
	}
	res, err := s.w.Append(r.Context(), []eventlog.Event{{ID: rec.ID, Stream: UpgradeStream, Type: rec.Type, Data: rec.Data}})
	if err != nil {
		return err
	}
	kernel.WriteJSON(w, http.StatusOK, res)
	return nil
}

// UpgradeRequest is the body of POST /v1/provision/upgrades: the
// release's manifest, checked against the built-in release key.
type UpgradeRequest struct {
	From string `json:"from"`
}

func (s *Service) request(w http.ResponseWriter, r *http.Request) error {
	var req UpgradeRequest
	if err := kernel.DecodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.From == "" {
		return kernel.Invalidf("from: want the release manifest's URL or file path")
	}
	id := ulid.Make().String()
	data, err := json.Marshal(UpgradeRequested{Upgrade: id, From: req.From, Running: s.cfg.Version, By: ByService})
	if err != nil {
		return err
	}
	res, err := s.w.Append(r.Context(), []eventlog.Event{{ID: id, Stream: UpgradeStream, Type: TypeUpgradeRequested, Data: data}})
	if err != nil {
		return err
	}
	kernel.WriteJSON(w, http.StatusAccepted, map[string]any{"upgrade": id, "seq": res.LastSeq})
	return nil
}

// handle starts `fazt upgrade` for an upgrade requested of the service.
func (s *Service) handle(ctx context.Context, e eventlog.Event, key string) error {
	var req UpgradeRequested
	if err := json.Unmarshal(e.Data, &req); err != nil {
		return fmt.Errorf("%w: %v", eventlog.ErrInvalid, err)
	}
	if req.By != ByService {
		return nil // the command that recorded it carries it out
	}
	data, err := filepath.Abs(s.k.Dir(""))
	if err != nil {
		return err
	}
	dir := filepath.Join(data, "provision", "requests")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// At most once: a redelivered event finds the marker.
	marker, err := os.OpenFile(filepath.Join(dir, key), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	marker.Close()
	if unit := SystemdUnit(); unit != "" {
		return s.refuse(ctx, req, fmt.Sprintf("the server runs as the systemd unit %s, which cannot replace its own binary: run `sudo fazt upgrade --from %s` on the host", unit, req.From))
	}
	logPath := filepath.Join(data, "provision", "upgrade-"+req.Upgrade+".log")
	out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(s.cfg.Executable, s.cfg.UpgradeArgs(req, data)...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Dir = data
	if err := cmd.Run(); err != nil { // --detach: returns once the upgrade runs on its own
		return s.refuse(ctx, req, fmt.Sprintf("could not start the upgrade: %v (see %s)", err, logPath))
	}
	s.k.Logger.Info("upgrade started", "upgrade", req.Upgrade, "from", req.From, "log", logPath)
	return nil
}

func (s *Service) refuse(ctx context.Context, req UpgradeRequested, reason string) error {
	data, err := json.Marshal(UpgradeRefused{Upgrade: req.Upgrade, Running: s.cfg.Version, Reason: reason})
	if err != nil {
		return err
	}
	// The ID is derived from the request, so a retry records it once.
	_, err = s.w.Append(ctx, []eventlog.Event{{ID: derivedID(req.Upgrade), Stream: UpgradeStream, Type: TypeUpgradeRefused, Data: data}})
	return err
}

// derivedID is a ULID of the same time as id with other random bits
// (the last one flipped): stable for one request.
func derivedID(id string) string {
	u, err := ulid.ParseStrict(id)
	if err != nil {
		return ulid.Make().String()
	}
	u[15] ^= 0x01
	return u.String()
}
