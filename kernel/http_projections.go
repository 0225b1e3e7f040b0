package kernel

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
)

// Limits of POST /v1/query.
const maxQueryTimeout = time.Minute

// QueryRequest is the body of POST /v1/query.
type QueryRequest struct {
	Projection string            `json:"projection"`
	SQL        string            `json:"sql"`
	Args       []json.RawMessage `json:"args"`
	MinSeq     uint64            `json:"min_seq"`
	TimeoutMS  int64             `json:"timeout_ms"`
	MaxRows    int               `json:"max_rows"`
	// MaxBytes bounds the answer's JSON (default and at most
	// projections.DefaultQueryMaxBytes); a larger answer is 413 too_large.
	MaxBytes int64 `json:"max_bytes"`
}

// QueryResponse is the answer of POST /v1/query.
type QueryResponse struct {
	Columns   []string `json:"columns"`
	Rows      [][]any  `json:"rows"`
	Truncated bool     `json:"truncated"`
	Seq       uint64   `json:"seq"`
}

func (a *api) registerProjectionRoutes() {
	a.handle("POST /v1/query", a.query)
	a.handle("GET /v1/projections", a.listProjections)
	a.handle("GET /v1/projections/{name}", a.showProjection)
	a.handle("POST /v1/projections/{name}/rebuild", a.rebuildProjection)
	a.handle("POST /v1/projections/{name}/retry", a.retryProjection)
	a.handle("POST /v1/projections/{name}/skip", a.skipProjection)
	a.handle("POST /v1/projections/{name}/build", a.buildProjection)
}

// runner returns the projections runner.
func (a *api) runner() (*projections.Runner, error) { return a.k.runner, nil }

func (a *api) query(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	var req QueryRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.Projection == "" {
		return invalidf("request body: field \"projection\" is required")
	}
	if req.SQL == "" {
		return invalidf("request body: field \"sql\" is required")
	}
	if req.TimeoutMS < 0 || time.Duration(req.TimeoutMS)*time.Millisecond > maxQueryTimeout {
		return invalidf("request body: timeout_ms=%d is out of range: want 0 (the default) to %d", req.TimeoutMS, maxQueryTimeout.Milliseconds())
	}
	if req.MaxRows < 0 || req.MaxRows > projections.MaxQueryRows {
		return invalidf("request body: max_rows=%d is out of range: want 0 (the default) to %d", req.MaxRows, projections.MaxQueryRows)
	}
	if req.MaxBytes < 0 || req.MaxBytes > projections.DefaultQueryMaxBytes {
		return invalidf("request body: max_bytes=%d is out of range: want 0 (the default) to %d", req.MaxBytes, projections.DefaultQueryMaxBytes)
	}
	args := make([]any, len(req.Args))
	for i, raw := range req.Args {
		v, err := queryArg(raw)
		if err != nil {
			return invalidf("request body: args[%d]: %v", i, err)
		}
		args[i] = v
	}
	runner, err := a.runner()
	if err != nil {
		return err
	}
	res, err := runner.Query(r.Context(), req.Projection, req.SQL, args, projections.QueryOptions{
		MinSeq:   req.MinSeq,
		Timeout:  time.Duration(req.TimeoutMS) * time.Millisecond,
		MaxRows:  req.MaxRows,
		MaxBytes: req.MaxBytes,
	})
	if err != nil {
		return err
	}
	if res.Columns == nil {
		res.Columns = []string{}
	}
	if res.Rows == nil {
		res.Rows = [][]any{}
	}
	writeJSON(w, http.StatusOK, QueryResponse{Columns: res.Columns, Rows: res.Rows, Truncated: res.Truncated, Seq: res.Seq})
	return nil
}

// queryArg turns a JSON scalar into an SQL argument: null, a boolean
// (1 or 0, as SQLite stores them), an integer, a float or a string.
func queryArg(raw json.RawMessage) (any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, fmt.Errorf("empty value")
	}
	switch raw[0] {
	case 'n':
		return nil, nil
	case 't':
		return int64(1), nil
	case 'f':
		return int64(0), nil
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		return s, nil
	case '{', '[':
		return nil, fmt.Errorf("want a string, number, boolean or null, not %s", map[byte]string{'{': "an object", '[': "an array"}[raw[0]])
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return nil, err
	}
	if i, err := n.Int64(); err == nil {
		return i, nil
	}
	f, err := n.Float64()
	if err != nil {
		return nil, fmt.Errorf("number %s is out of range", n)
	}
	return f, nil
}

func (a *api) listProjections(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	runner, err := a.runner()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		Projections []projections.Status `json:"projections"`
	}{runner.Statuses()})
	return nil
}

// projectionStatus returns the status of the projection named in the
// path, or ErrNotFound.
func (a *api) projectionStatus(r *http.Request) (*projections.Runner, projections.Status, error) {
	runner, err := a.runner()
	if err != nil {
		return nil, projections.Status{}, err
	}
	name := r.PathValue("name")
	st := runner.Status(name)
	if st.State == projections.StateUnknown {
		return nil, st, &apiError{kind: eventlog.ErrNotFound, msg: fmt.Sprintf("no projection %q", name)}
	}
	return runner, st, nil
}

func (a *api) showProjection(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	_, st, err := a.projectionStatus(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (a *api) rebuildProjection(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	runner, _, err := a.projectionStatus(r)
	if err != nil {
		return err
	}
	if err := runner.Rebuild(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "rebuilding"})
	return nil
}

func (a *api) retryProjection(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	runner, _, err := a.projectionStatus(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if err := runner.Retry(name); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, runner.Status(name))
	return nil
}

func (a *api) skipProjection(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	seq, err := seqBody(w, r, "the sequence the projection is halted at")
	if err != nil {
		return err
	}
	runner, _, err := a.projectionStatus(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if err := runner.Skip(r.Context(), name, seq); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, runner.Status(name))
	return nil
}

// BuildsDir is the folder of the data directory, DIR/builds, that
// POST /v1/projections/{name}/build writes its files into.
const BuildsDir = "builds"

// BuildRequest is the body of POST /v1/projections/{name}/build.
type BuildRequest struct {
	AsOfSeq  uint64 `json:"as_of_seq"`
	AsOfTime string `json:"as_of_time"` // RFC 3339
	// Out is the new file's name in DIR/builds, such as "orders-1500.db":
	// letters, digits, '.', '_' and '-', starting with a letter or digit.
	// It must not exist yet.
	Out string `json:"out"`
}

// buildNameRE is what a build's file name may be: no path, no hidden
// file, nothing a shell or a terminal would read differently.
var buildNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// checkBuildName refuses a build file name that is not a plain name, or
// that names one of the files SQLite keeps beside a database.
func checkBuildName(name string) error {
	bad := !buildNameRE.MatchString(name) || strings.Contains(name, "..")
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		bad = bad || strings.HasSuffix(name, suffix)
	}
	if bad {
		return invalidf("request body: out=%.120q must be a plain file name such as \"orders-1500.db\" (letters, digits, '.', '_', '-'; at most 100; no path, no '..', not ending in -wal, -shm or -journal): the file is written in the data directory's %s folder", name, BuildsDir)
	}
	return nil
}

// buildsDir creates DIR/builds (mode 0700) if needed and returns it. It
// must be a directory of its own, not a symlink to one elsewhere.
func (a *api) buildsDir() (string, error) {
	dir := a.k.Dir(BuildsDir)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return "", err
	}
	if !st.IsDir() {
		return "", fmt.Errorf("%s is not a directory (a symlink?): builds are written only into a directory of the data directory; remove it", dir)
	}
	return dir, nil
}

// buildProjection builds the projection as of a past point of the log
// into a new file in DIR/builds (time travel), answering when it is done.
func (a *api) buildProjection(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	var req BuildRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if (req.AsOfSeq == 0) == (req.AsOfTime == "") {
		return invalidf("request body: give exactly one of as_of_seq (a sequence, from 1) and as_of_time (RFC 3339)")
	}
	if err := checkBuildName(req.Out); err != nil {
		return err
	}
	runner, _, err := a.projectionStatus(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	seq := req.AsOfSeq
	if req.AsOfTime != "" {
		t, err := time.Parse(time.RFC3339Nano, req.AsOfTime)
		if err != nil {
			return invalidf("request body: as_of_time=%q is not an RFC 3339 time like 2026-11-26T10:00:00Z", req.AsOfTime)
		}
		if seq, err = runner.SeqAt(r.Context(), t); err != nil {
			return err
		}
	}
	dir, err := a.buildsDir()
	if err != nil {
		return err
	}
	out := filepath.Join(dir, req.Out)
	// A build folds the log up to the point: it may take longer than
	// the server's write timeout allows other routes.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	start := time.Now()
	// seq 0 (a time before the first event) builds the empty tables.
	if err := runner.BuildAsOf(r.Context(), name, seq, out); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		Projection string  `json:"projection"`
		Seq        uint64  `json:"seq"`
		File       string  `json:"file"`
		Seconds    float64 `json:"seconds"`
	}{name, seq, out, time.Since(start).Seconds()})
	return nil
}

// seqBody reads a body of the form {"seq": N}, N from 1; what says which
// sequence the route wants, for the error.
func seqBody(w http.ResponseWriter, r *http.Request, what string) (uint64, error) {
	var req struct {
		Seq *uint64 `json:"seq"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		return 0, err
	}
	if req.Seq == nil || *req.Seq == 0 {
		return 0, invalidf("request body: field \"seq\" is required: %s", what)
	}
	return *req.Seq, nil
}
