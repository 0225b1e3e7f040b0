package backup

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"time"

	"github.com/benbjohnson/litestream"

	"github.com/fazt-sh/fazt/eventlog"
)

// ProjectionRestore says how Restore dealt with one projection the
// archive lists as replicated (table projection_files): installed from
// its replica, or left to be rebuilt from the log, and why.
type ProjectionRestore struct {
	Name       string `json:"name"`
	Generation string `json:"generation,omitempty"`
	// FromFile: the generation's file was restored from its replica and
	// installed as the projection's current file; the kernel catches up
	// from Checkpoint when it opens the directory.
	FromFile   bool   `json:"from_file"`
	Checkpoint uint64 `json:"checkpoint,omitempty"`
	// Reason says why the projection is rebuilt from the log instead.
	Reason string `json:"reason,omitempty"`
}

// projectionFile is a row of the archive's projection_files index.
type projectionFile struct {
	name, gen string
	started   int64
}

var (
	genID    = regexp.MustCompile(`^[0-9]{6,}$`)
	projName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
)

// projectionFiles reads the index of replicated projection generations,
// newest first per projection (none when the archive has no index).
func projectionFiles(ctx context.Context, db *sql.DB) ([]projectionFile, error) {
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'projection_files'`).Scan(&n); err != nil || n == 0 {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, `SELECT name, generation, started_ns FROM projection_files ORDER BY name, started_ns DESC, generation DESC`)
	if err != nil {
		return nil, fmt.Errorf("read the archive's projection_files: %w", err)
	}
	defer rows.Close()
	var out []projectionFile
	for rows.Next() {
		var f projectionFile
		if err := rows.Scan(&f.name, &f.gen, &f.started); err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// projectionReplicaURL is where a generation is replicated: the replica
// URL with /projections/<name>/<gen> added to its path.
func projectionReplicaURL(from, name, gen string) (string, error) {
	full, err := replicaURL(from)
	if err != nil {
		return "", err
	}
	u, err := url.Parse(full)
	if err != nil {
		return "", fmt.Errorf("%w: replica %s: %v", eventlog.ErrInvalid, Redact(from), err)
	}
	u.Path = path.Join("/", u.Path, "projections", name, gen)
	if u.Host == "" && u.Scheme == "file" {
		return "file://" + u.Path, nil
	}
	return u.String(), nil
}

// restoreProjections installs the projections the archive lists as
// replicated, each from its newest generation, when the file restored
// from its replica is sound and its checkpoint is not past upTo; the
// others are left to be rebuilt from the log.
func restoreProjections(ctx context.Context, db *sql.DB, opt RestoreOptions, upTo uint64, tmp string, progress func(string, uint64, uint64)) ([]ProjectionRestore, error) {
	files, err := projectionFiles(ctx, db)
	if err != nil || len(files) == 0 {
		return nil, err
	}
	logger := opt.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// The newest generation of each, started by the as-of time.
	type todo struct {
		ProjectionRestore
		file projectionFile
	}
	var picks []todo
	for i, f := range files {
		if i > 0 && files[i-1].name == f.name {
			continue
		}
		p := todo{ProjectionRestore: ProjectionRestore{Name: f.name}}
		found := false
		for j := i; j < len(files) && files[j].name == f.name; j++ {
			if opt.AsOfTime.IsZero() || files[j].started <= opt.AsOfTime.UnixNano() {
				p.file, p.Generation, found = files[j], files[j].gen, true
				break
			}
		}
		_, isFile := archiveFile(opt.From)
		switch {
		case opt.RebuildProjections:
			p.Reason = "rebuild asked (--rebuild-projections)"
		case !found:
			p.Reason = "no generation of it was replicated by the as-of time"
		case !projName.MatchString(f.name) || !genID.MatchString(p.file.gen):
			p.Reason = fmt.Sprintf("the index names it %q generation %q, not a projection file", f.name, p.file.gen)
		case isFile:
			p.Reason = "the backup is an archive file, without the projection replicas beside it"
		}
		picks = append(picks, p)
	}
	// The time of the last event restored: a copy that is ahead of it may
	// have one as of then.
	var upToTime time.Time
	var ns int64
	if err := db.QueryRowContext(ctx, `SELECT time_ns FROM events WHERE seq = ?`, int64(upTo)).Scan(&ns); err == nil {
		upToTime = time.Unix(0, ns)
	}
	out := make([]ProjectionRestore, len(picks))
	for i := range picks {
		progress("projections", uint64(i), uint64(len(picks)))
		p := &picks[i]
		if p.Reason == "" {
			p.Checkpoint, p.Reason = fetchProjection(ctx, db, opt, p.file, upTo, upToTime, tmp, logger)
			p.FromFile = p.Reason == ""
		}
		out[i] = p.ProjectionRestore
	}
	progress("projections", uint64(len(out)), uint64(len(out)))
	for _, pr := range out {
		switch {
		case pr.FromFile:
			logger.Info("projection restored from its replica: the kernel catches up from its checkpoint", "projection", pr.Name, "generation", pr.Generation, "checkpoint", pr.Checkpoint)
		case opt.RebuildProjections:
			logger.Info("projection rebuilt from the log", "projection", pr.Name, "reason", pr.Reason)
		default:
			logger.Warn("projection rebuilt from the log", "projection", pr.Name, "reason", pr.Reason)
		}
	}
	return out, nil
}

// fetchProjection restores one generation from its replica and installs
// it, returning its checkpoint, or why it was not used.
func fetchProjection(ctx context.Context, db *sql.DB, opt RestoreOptions, f projectionFile, upTo uint64, upToTime time.Time, tmp string, logger *slog.Logger) (uint64, string) {
	dest := filepath.Join(opt.Data, "projections", f.name)
	if _, err := os.Stat(dest); err == nil {
		return 0, fmt.Sprintf("%s exists already", dest)
	}
	u, err := projectionReplicaURL(opt.From, f.name, f.gen)
	if err != nil {
		return 0, err.Error()
	}
	out := filepath.Join(tmp, "projection-"+f.name+".db")
	defer removeSQLite(out)
	cp, reason := fetchGeneration(ctx, db, u, out, opt.AsOfTime, upTo, logger)
	if reason != "" && cp > upTo && opt.AsOfTime.IsZero() && !upToTime.IsZero() {
		// Its latest copy is ahead of the log restored: one as of the
		// last event's time may not be.
		removeSQLite(out)
		if cp2, r2 := fetchGeneration(ctx, db, u, out, upToTime, upTo, logger); r2 == "" {
			cp, reason = cp2, ""
		} else {
			reason += "; as of the last event restored: " + r2
		}
	}
	if reason != "" {
		return 0, reason
	}
	if err := installProjection(dest, out, f.gen+".db"); err != nil {
		return 0, fmt.Sprintf("install it: %v", err)
	}
	return cp, ""
}

// fetchGeneration restores a projection file from its replica as of at
// (zero: latest) into out and checks it: integrity_check ok, a
// checkpoint not past upTo, naming the event the archive holds there.
// cp is the file's checkpoint when it was read.
func fetchGeneration(ctx context.Context, db *sql.DB, u, out string, at time.Time, upTo uint64, logger *slog.Logger) (cp uint64, reason string) {
	when, asOf := "its latest copy", ""
	if !at.IsZero() {
		asOf = " as of " + at.UTC().Format(time.RFC3339Nano)
		when = "its copy" + asOf
	}
	if err := restoreReplica(ctx, u, out, at, logger); err != nil {
		if errors.Is(err, eventlog.ErrNotFound) {
			return 0, fmt.Sprintf("its replica %s holds no copy%s", Redact(u), asOf)
		}
		return 0, fmt.Sprintf("restoring %s from %s failed: %v", when, Redact(u), err)
	}
	pdb, err := sql.Open("sqlite", archiveDSN(out, true))
	if err != nil {
		return 0, err.Error()
	}
	defer pdb.Close()
	var check string
	if err := pdb.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		return 0, fmt.Sprintf("%s is damaged: integrity_check %q %v", when, check, err)
	}
	var eventSeq uint64
	var eventID sql.NullString
	if err := pdb.QueryRowContext(ctx, `SELECT seq, event_seq, event_id FROM fazt_checkpoint WHERE id = 1`).Scan(&cp, &eventSeq, &eventID); err != nil {
		return 0, fmt.Sprintf("%s has no checkpoint: %v", when, err)
	}
	if cp > upTo {
		return cp, fmt.Sprintf("the checkpoint of %s is %d, beyond the restored log's %d", when, cp, upTo)
	}
	if eventSeq > 0 {
		var id sql.NullString
		err := db.QueryRowContext(ctx, `SELECT id FROM events WHERE seq = ?`, int64(eventSeq)).Scan(&id)
		if err != nil || id.String != eventID.String {
			return 0, fmt.Sprintf("%s names event %d as %q, which the archive does not hold", when, eventSeq, eventID.String)
		}
	}
	return cp, ""
}

// restoreReplica restores a Litestream replica at u into out, as of at
// (zero: latest). ErrNotFound: the replica holds nothing for that time.
func restoreReplica(ctx context.Context, u, out string, at time.Time, logger *slog.Logger) error {
	client, err := newReplicaClient(u)
	if err != nil {
		return err
	}
	if err := client.Init(ctx); err != nil {
		return explainCA(err)
	}
	ldb := litestream.NewDB(out)
	ldb.SetLogger(slog.New(warnOnly{logger.Handler()}))
	defer ldb.Close(context.WithoutCancel(ctx))
	r := litestream.NewReplicaWithClient(ldb, client)
	opt := litestream.NewRestoreOptions()
	opt.OutputPath = out
	opt.Timestamp = at
	if err := r.Restore(ctx, opt); err != nil {
		if errors.Is(err, litestream.ErrTxNotAvailable) || errors.Is(err, litestream.ErrNoSnapshots) {
			return fmt.Errorf("%w: %v", eventlog.ErrNotFound, err)
		}
		return err
	}
	return nil
}

// installProjection moves a restored file into the projection's new
// directory as generation file and points the projection at it (the
// projections package's pointer file, {"current": file}), each step
// durable before the next.
func installProjection(dir, src, file string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := syncFile(src); err != nil {
		return err
	}
	if err := os.Rename(src, filepath.Join(dir, file)); err != nil {
		return err
	}
	b, _ := json.Marshal(map[string]string{"current": file})
	tmp := filepath.Join(dir, "current.tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := syncFile(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "current")); err != nil {
		return err
	}
	return syncFile(dir)
}

func syncFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func removeSQLite(p string) {
	for _, s := range []string{"", "-wal", "-shm", "-journal"} {
		os.Remove(p + s)
	}
}
