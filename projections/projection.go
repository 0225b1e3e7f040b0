package projections

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/schemas"
)

// Projection is a read model: SQLite tables that are a fold of the log.
type Projection struct {
	// Name identifies the projection and names its directory:
	// [a-z][a-z0-9_]*, at most 64 bytes.
	Name string
	// Version of Apply and Tables, from 1. Bump it whenever Apply
	// changes what it writes (including filling a new column): the
	// projection is then rebuilt from the log, blue/green.
	Version int
	// Tables the projection writes. They are created and extended by
	// sqlitedb.Migrate; names starting with fazt_ are reserved.
	Tables []schemas.Table
	// Filter selects the events Apply sees (empty: all of them).
	Filter eventlog.Filter
	// Apply folds one event into the tables, inside tx. It must be
	// deterministic: no clock, no randomness, no map order, nothing but
	// the event and the tables, so a rebuild gives the same rows. An
	// error halts the projection at that event.
	Apply func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error
	// Critical makes a node's readiness depend on the projection: while
	// it catches up at start or is halted, the kernel's /readyz answers
	// 503, which takes the node out of a load balancer. Leave it false
	// for a read model the node can serve without (analytics, say): its
	// halts show in Status, doctor and metrics, and readiness ignores it.
	Critical bool
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// validate checks a projection for Register.
func (p Projection) validate() error {
	if !nameRE.MatchString(p.Name) {
		return invalidf("projection name %q: use [a-z][a-z0-9_]*, at most 64 bytes", p.Name)
	}
	if p.Version < 1 {
		return invalidf("projection %s: version %d: versions start at 1", p.Name, p.Version)
	}
	if p.Apply == nil {
		return invalidf("projection %s: Apply is nil", p.Name)
	}
	seen := map[string]bool{}
	for _, t := range p.Tables {
		if err := t.Validate(); err != nil {
			return invalidf("projection %s: %v", p.Name, err)
		}
		if strings.HasPrefix(t.Name, "fazt_") {
			return invalidf("projection %s: table %s: the fazt_ prefix is reserved for the runner's own tables", p.Name, t.Name)
		}
		if seen[t.Name] {
			return invalidf("projection %s: table %s is declared twice", p.Name, t.Name)
		}
		seen[t.Name] = true
	}
	for _, typ := range p.Filter.Types {
		if err := eventlog.ValidateType(typ); err != nil {
			return invalidf("projection %s: filter: %v", p.Name, err)
		}
	}
	for _, c := range p.Filter.Categories {
		if err := eventlog.ValidateCategory(c); err != nil {
			return invalidf("projection %s: filter: %v", p.Name, err)
		}
	}
	return nil
}

// tables is everything Migrate creates in a projection's file.
func (p Projection) tables() []schemas.Table {
	return append(append([]schemas.Table{}, p.Tables...), checkpointTable, skippedTable)
}

// checkpointTable holds one row (id 1): how far the file has folded the
// log. It is written in the same transaction as the rows Apply writes,
// which is what makes the fold exactly-once.
var checkpointTable = schemas.Table{
	Name: "fazt_checkpoint",
	Columns: []schemas.Column{
		{Name: "id", Type: "INTEGER", PrimaryKey: true},
		{Name: "projection", Type: "TEXT", NotNull: true},
		{Name: "projection_version", Type: "INTEGER", NotNull: true},
		// seq is the last log sequence examined (applied, filtered out
		// or skipped); the fold resumes after it.
		{Name: "seq", Type: "INTEGER", NotNull: true},
		// event_seq and event_id name the last event applied, checked
		// against the log at Open (0 and NULL before the first).
		{Name: "event_seq", Type: "INTEGER", NotNull: true},
		{Name: "event_id", Type: "TEXT"},
	},
}

// skippedTable lists the events this file does not contain because an
// operator skipped them (see Runner.Skip), so the file says what it
// lacks.
var skippedTable = schemas.Table{
	Name: "fazt_skipped",
	Columns: []schemas.Column{
		{Name: "seq", Type: "INTEGER", PrimaryKey: true},
		{Name: "event_id", Type: "TEXT"},
		{Name: "event_type", Type: "TEXT"},
		{Name: "error", Type: "TEXT"},
		// record_seq is the log sequence of the skip decision.
		{Name: "record_seq", Type: "INTEGER", NotNull: true},
	},
}

// checkpoint is the fazt_checkpoint row.
type checkpoint struct {
	Seq      uint64
	EventSeq uint64
	EventID  string
	Version  int
}

// States of a projection in Status.
const (
	StateRunning    = "running"     // caught up with the log, applying new events
	StateCatchingUp = "catching_up" // behind the log, applying in batches
	StateRebuilding = "rebuilding"  // a new generation is being built from seq 0
	StateHalted     = "halted"      // stopped at an event; see Status.Halted
	StateUnknown    = "unknown"     // no projection of that name is registered
	StateClosed     = "closed"      // the runner is not open
)

// Status is what an operator needs to know about one projection.
type Status struct {
	Name string `json:"name"`
	// Version is the registered version; ServingVersion that of the file
	// queries read, which differs while a version bump rebuilds.
	Version        int    `json:"version"`
	ServingVersion int    `json:"serving_version"`
	File           string `json:"file"`
	State          string `json:"state"`
	// Seq is the serving file's checkpoint: the last log sequence it has
	// folded. Tail is the newest sequence the runner has seen in the log.
	Seq  uint64 `json:"seq"`
	Tail uint64 `json:"tail"`
	Lag  uint64 `json:"lag"`
	// Rebuild is set while a new generation is being built.
	Rebuild *Progress `json:"rebuild,omitempty"`
	// Halted is set when the serving file, or else the rebuild, stopped
	// at an event.
	Halted *Halt `json:"halted,omitempty"`
	// Error is the last transient problem (log unavailable, disk), retried
	// every RetryInterval; empty once it works again.
	Error string `json:"error,omitempty"`
	// Critical: the node's readiness depends on it (Projection.Critical).
	Critical bool `json:"critical"`
}

// Progress of a rebuild.
type Progress struct {
	Reason  string        `json:"reason"`
	File    string        `json:"file"`
	Started time.Time     `json:"started"`
	Done    uint64        `json:"done"`  // sequences folded so far
	Total   uint64        `json:"total"` // the log's tail
	Rate    float64       `json:"rate"`  // sequences per second since Started
	ETA     time.Duration `json:"eta"`   // at Rate; 0 when unknown
	Halted  *Halt         `json:"halted,omitempty"`
}

// Halt says where and why a projection stopped.
type Halt struct {
	Seq     uint64    `json:"seq"`
	EventID string    `json:"event_id,omitempty"` // empty for a malformed message
	Type    string    `json:"type,omitempty"`     // empty for a malformed message
	Error   string    `json:"error"`
	Since   time.Time `json:"since"`
}

// ErrHalted: the projection stopped at an event that failed. The error is
// a *HaltedError; fix the cause and Retry, or Skip the event.
var ErrHalted = errors.New("projection halted")

// HaltedError reports a projection halted at an event.
type HaltedError struct {
	Projection string
	Halt       Halt
}

func (e *HaltedError) Error() string {
	what := "malformed message"
	if e.Halt.Type != "" {
		what = "event " + e.Halt.EventID + " (" + e.Halt.Type + ")"
	}
	return fmt.Sprintf("projection %s halted at seq %d, %s: %s; fix the cause and retry, or skip the event",
		e.Projection, e.Halt.Seq, what, e.Halt.Error)
}

// Is makes errors.Is(err, ErrHalted) true.
func (e *HaltedError) Is(target error) bool { return target == ErrHalted }

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{eventlog.ErrInvalid}, args...)...)
}
