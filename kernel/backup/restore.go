package backup

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/benbjohnson/litestream"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fazt-sh/fazt/eventlog"
)

// FetchArchive copies an archive to out, a path that must not exist:
// from an archive file (a consistent copy, also of a live one), or
// restored with Litestream from a replica URL (or folder) at its latest
// state, or as of asOf when it is not zero.
func FetchArchive(ctx context.Context, from, out string, asOf time.Time) error {
	return fetchArchive(ctx, from, out, asOf, nil)
}

// fetchArchive is FetchArchive with Litestream's messages sent to
// logger (its warnings and errors; nil: none).
func fetchArchive(ctx context.Context, from, out string, asOf time.Time, logger *slog.Logger) error {
	if _, err := os.Stat(out); err == nil {
		return fmt.Errorf("%w: %s exists", eventlog.ErrConflict, out)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
		return err
	}
	if path, ok := archiveFile(from); ok {
		db, err := sql.Open("sqlite", archiveDSN(path, true))
		if err != nil {
			return err
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, out); err != nil {
			return fmt.Errorf("copy the archive %s: %w", path, err)
		}
		return nil
	}
	client, err := newReplicaClient(from)
	if err != nil {
		return err
	}
	if err := client.Init(ctx); err != nil {
		return fmt.Errorf("replica %s: %w", Redact(from), explainCA(err))
	}
	// A DB that is never opened carries the logger: a replica without
	// one logs to the process's default logger.
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ldb := litestream.NewDB(out)
	ldb.SetLogger(slog.New(warnOnly{logger.Handler()}))
	defer ldb.Close(context.WithoutCancel(ctx)) // drops its metrics
	r := litestream.NewReplicaWithClient(ldb, client)
	opt := litestream.NewRestoreOptions()
	opt.OutputPath = out
	opt.Timestamp = asOf
	opt.IntegrityCheck = litestream.IntegrityCheckQuick
	if err := r.Restore(ctx, opt); err != nil {
		if errors.Is(err, litestream.ErrTxNotAvailable) || errors.Is(err, litestream.ErrNoSnapshots) {
			return fmt.Errorf("%w: replica %s holds no backup yet (%v)", eventlog.ErrNotFound, Redact(from), err)
		}
		return fmt.Errorf("restore from replica %s: %w", Redact(from), err)
	}
	return nil
}

// archiveFile reports whether from names an archive file rather than a
// replica: a path (or file:// URL) of a regular file.
func archiveFile(from string) (string, bool) {
	path := from
	if strings.HasPrefix(from, "file://") {
		u, err := url.Parse(from)
		if err != nil {
			return "", false
		}
		path = u.Path
	} else if strings.Contains(from, "://") {
		return "", false
	}
	st, err := os.Stat(path)
	return path, err == nil && st.Mode().IsRegular()
}

// Summary describes an archive's events up to a sequence.
type Summary struct {
	Events  uint64 // events (equal to LastSeq: they are gap-free from 1)
	LastSeq uint64
	Blobs   uint64
	Hash    string // Hasher over the events
}

// Summarize checks the archive at path (SQLite quick_check, events
// gap-free from 1) and hashes its events up to upTo (0: all).
func Summarize(ctx context.Context, path string, upTo uint64) (Summary, error) {
	var sum Summary
	db, err := sql.Open("sqlite", archiveDSN(path, true))
	if err != nil {
		return sum, err
	}
	defer db.Close()
	var check string
	if err := db.QueryRowContext(ctx, `PRAGMA quick_check`).Scan(&check); err != nil || check != "ok" {
		return sum, fmt.Errorf("the archive %s is damaged: quick_check %q %v", path, check, err)
	}
	if upTo == 0 {
		upTo = 1<<63 - 1
	}
	h := NewHasher()
	err = eachEvent(ctx, db, upTo, func(m eventlog.RawMessage, hb []byte) error {
		h.Add(m.Seq, m.Time.UnixNano(), m.Subject, hb, m.Data)
		return nil
	})
	if err != nil {
		return sum, err
	}
	sum.Events, sum.LastSeq, sum.Hash = h.Count(), h.Count(), h.Sum()
	err = db.QueryRowContext(ctx, `SELECT COUNT(*) FROM blobs`).Scan(&sum.Blobs)
	return sum, err
}

// eachEvent calls fn for the archive's events up to upTo in order,
// checking that they run 1, 2, 3, ... without a gap.
func eachEvent(ctx context.Context, db *sql.DB, upTo uint64, fn func(m eventlog.RawMessage, headers []byte) error) error {
	rows, err := db.QueryContext(ctx, `SELECT seq, time_ns, subject, headers, data FROM events WHERE seq <= ? ORDER BY seq`, int64(min(upTo, 1<<63-1)))
	if err != nil {
		return fmt.Errorf("read the archive: %w", err)
	}
	defer rows.Close()
	var last uint64
	for rows.Next() {
		var m eventlog.RawMessage
		var ns int64
		var hb []byte
		if err := rows.Scan(&m.Seq, &ns, &m.Subject, &hb, &m.Data); err != nil {
			return err
		}
		if m.Seq != last+1 {
			return fmt.Errorf("%w: the archive jumps from event %d to %d: it is damaged", eventlog.ErrInvalid, last, m.Seq)
		}
		m.Time = time.Unix(0, ns).UTC()
		if m.Header, err = eventlog.DecodeHeader(hb); err != nil {
			return fmt.Errorf("event %d: %w", m.Seq, err)
		}
		if err := fn(m, hb); err != nil {
			return err
		}
		last = m.Seq
	}
	return rows.Err()
}

// RestoreOptions say what Restore restores, and where.
type RestoreOptions struct {
	// From is a replica URL (or folder), or an archive file.
	From string
	// Data is the new data directory: it must hold no event log.
	Data string
	// AsOfSeq restores the events up to this sequence; AsOfTime those
	// stored at or before this time. Zero: all.
	AsOfSeq  uint64
	AsOfTime time.Time
	// Progress, when set, is called as the restore goes: stage "fetch",
	// "events" (done of total), "blobs" and "projections".
	Progress func(stage string, done, total uint64)
	// Logger receives Litestream's warnings and errors (nil: none), and
	// which projections were restored from their files and which are
	// rebuilt, and why.
	Logger *slog.Logger
	// RebuildProjections leaves every projection to be rebuilt from the
	// restored log, even those the backup replicated as files.
	RebuildProjections bool
}

// RestoreResult says what Restore did.
type RestoreResult struct {
	Events  uint64  `json:"events"`
	LastSeq uint64  `json:"last_seq"`
	Blobs   uint64  `json:"blobs"`
	Hash    string  `json:"hash"` // Hasher over the restored events
	Seconds float64 `json:"seconds"`
	// Projections are those the backup replicated as files: installed
	// from their replicas, or rebuilt and why. The others are rebuilt.
	Projections []ProjectionRestore `json:"projections,omitempty"`
}

// Restore rebuilds a data directory from a backup: it fetches the
// archive (FetchArchive), writes its events up to the point asked into
// a new log with their own sequences, IDs, times and data
// (eventlog.Log.Import), and puts the archived blobs back into their
// object store buckets. The read models are built from the log when a
// kernel next opens the directory. Errors: ErrConflict when Data holds
// a log already, ErrNotFound when the point asked is before the first
// event, ErrInvalid for a damaged archive.
func Restore(ctx context.Context, opt RestoreOptions) (RestoreResult, error) {
	start := time.Now()
	var res RestoreResult
	progress := opt.Progress
	if progress == nil {
		progress = func(string, uint64, uint64) {}
	}
	if opt.Data == "" || opt.From == "" {
		return res, fmt.Errorf("%w: a restore needs a source and a new data directory", eventlog.ErrInvalid)
	}
	if _, err := os.Stat(filepath.Join(opt.Data, "jetstream")); err == nil {
		return res, fmt.Errorf("%w: %s already holds an event log: restore into a new, empty directory", eventlog.ErrConflict, opt.Data)
	}
	if err := os.MkdirAll(opt.Data, 0o700); err != nil {
		return res, err
	}
	tmp, err := os.MkdirTemp(opt.Data, ".restore-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)
	path := filepath.Join(tmp, ArchiveFile)
	progress("fetch", 0, 1)
	if err := fetchArchive(ctx, opt.From, path, time.Time{}, opt.Logger); err != nil {
		return res, err
	}
	progress("fetch", 1, 1)
	db, err := sql.Open("sqlite", archiveDSN(path, true))
	if err != nil {
		return res, err
	}
	defer db.Close()
	var last, first sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT MIN(seq), MAX(seq) FROM events`).Scan(&first, &last); err != nil {
		return res, fmt.Errorf("read the archive: %w", err)
	}
	upTo := uint64(last.Int64)
	if opt.AsOfSeq > 0 {
		upTo = min(upTo, opt.AsOfSeq)
	}
	if !opt.AsOfTime.IsZero() {
		var at sql.NullInt64
		if err := db.QueryRowContext(ctx, `SELECT MAX(seq) FROM events WHERE time_ns <= ? AND seq <= ?`, opt.AsOfTime.UnixNano(), int64(upTo)).Scan(&at); err != nil {
			return res, err
		}
		upTo = uint64(at.Int64)
	}
	if upTo == 0 && (opt.AsOfSeq > 0 || !opt.AsOfTime.IsZero()) {
		return res, fmt.Errorf("%w: the backup holds no event at or before that point", eventlog.ErrNotFound)
	}

	// The events, with their own sequences and times.
	rows := make(chan eventlog.RawMessage, 256)
	errc := make(chan error, 1)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h := NewHasher()
	go func() {
		defer close(rows)
		errc <- eachEvent(rctx, db, upTo, func(m eventlog.RawMessage, hb []byte) error {
			h.Add(m.Seq, m.Time.UnixNano(), m.Subject, hb, m.Data)
			select {
			case rows <- m:
				return nil
			case <-rctx.Done():
				return rctx.Err()
			}
		})
	}()
	l := eventlog.New(opt.Data)
	var n uint64
	_, err = l.Import(ctx, func() (eventlog.RawMessage, bool, error) {
		m, ok := <-rows
		if !ok {
			return m, false, <-errc
		}
		n++
		if n%10000 == 0 {
			progress("events", n, upTo)
		}
		return m, true, nil
	})
	cancel()
	if err != nil && !errors.Is(err, eventlog.ErrConflict) {
		return res, fmt.Errorf("%w (the restore stopped half way: delete %s and run it again)", err, opt.Data)
	}
	if err != nil {
		return res, err
	}
	progress("events", n, upTo)
	if n != upTo {
		return res, fmt.Errorf("%w: the archive holds %d of the %d events asked", eventlog.ErrInvalid, n, upTo)
	}
	res.Events, res.LastSeq, res.Hash = n, upTo, h.Sum()

	// The blobs, into their buckets.
	l = eventlog.New(opt.Data)
	if err := l.Open(ctx); err != nil {
		return res, fmt.Errorf("open the restored log: %w", err)
	}
	blobs, err := restoreBlobs(ctx, db, l, progress)
	res.Blobs = blobs
	if cerr := l.Close(context.WithoutCancel(ctx)); err == nil {
		err = cerr
	}
	if err == nil {
		// The projections replicated as files, when the archive lists them.
		res.Projections, err = restoreProjections(ctx, db, opt, upTo, tmp, progress)
	}
	res.Seconds = time.Since(start).Seconds()
	return res, err
}

func restoreBlobs(ctx context.Context, db *sql.DB, l *eventlog.Log, progress func(string, uint64, uint64)) (uint64, error) {
	var total uint64
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM blobs`).Scan(&total); err != nil {
		return 0, err
	}
	rows, err := db.QueryContext(ctx, `SELECT bucket, name FROM blobs ORDER BY bucket, name`)
	if err != nil {
		return 0, err
	}
	type key struct{ bucket, name string }
	var keys []key
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.bucket, &k.name); err != nil {
			rows.Close()
			return 0, err
		}
		keys = append(keys, k)
	}
	rows.Close()
	stores := map[string]jetstream.ObjectStore{}
	var n uint64
	for _, k := range keys {
		st := stores[k.bucket]
		if st == nil {
			if st, err = l.ObjectStore(ctx, k.bucket); err != nil {
				return n, err
			}
			stores[k.bucket] = st
		}
		if _, err := st.GetInfo(ctx, k.name); err == nil {
			n++
			continue
		}
		if err := restoreBlob(ctx, db, st, k.bucket, k.name); err != nil {
			return n, err
		}
		n++
		if n%100 == 0 {
			progress("blobs", n, total)
		}
	}
	for b := range stores {
		if err := l.SyncObjectStore(b); err != nil {
			return n, err
		}
	}
	progress("blobs", n, total)
	return n, nil
}

// restoreBlob puts one archived blob back into its bucket: a small one
// from blobs.data, a chunked one (empty data, size over zero) streamed
// from blob_chunks one row at a time.
func restoreBlob(ctx context.Context, db *sql.DB, st jetstream.ObjectStore, bucket, name string) error {
	var size, inline int64
	if err := db.QueryRowContext(ctx, `SELECT size, length(data) FROM blobs WHERE bucket = ? AND name = ?`, bucket, name).Scan(&size, &inline); err != nil {
		return err
	}
	if inline > 0 || size == 0 {
		var data []byte
		if err := db.QueryRowContext(ctx, `SELECT data FROM blobs WHERE bucket = ? AND name = ?`, bucket, name).Scan(&data); err != nil {
			return err
		}
		if _, err := st.PutBytes(ctx, name, data); err != nil {
			return fmt.Errorf("put blob %s back: %w", name, err)
		}
		return nil
	}
	rows, err := db.QueryContext(ctx, `SELECT n, data FROM blob_chunks WHERE bucket = ? AND name = ? ORDER BY n`, bucket, name)
	if err != nil {
		return fmt.Errorf("read blob %s: %w", name, err)
	}
	defer rows.Close()
	cr := &chunkReader{rows: rows, size: size}
	if _, err := st.Put(ctx, jetstream.ObjectMeta{Name: name}, cr); err != nil {
		if cr.err != nil && cr.err != io.EOF {
			return fmt.Errorf("blob %s of bucket %s: %w", name, bucket, cr.err)
		}
		return fmt.Errorf("put blob %s back: %w", name, err)
	}
	return nil
}

// chunkReader reads a chunked blob's rows in order, checking that they
// run 0, 1, 2, ... and add up to its size.
type chunkReader struct {
	rows *sql.Rows
	size int64
	read int64
	next int64
	cur  []byte
	err  error
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.cur) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		if !c.rows.Next() {
			c.err = c.rows.Err()
			if c.err == nil && c.read != c.size {
				c.err = fmt.Errorf("%w: its chunks hold %d of its %d bytes: the archive is damaged", eventlog.ErrInvalid, c.read, c.size)
			}
			if c.err == nil {
				c.err = io.EOF
			}
			continue
		}
		var n int64
		if c.err = c.rows.Scan(&n, &c.cur); c.err == nil && n != c.next {
			c.err = fmt.Errorf("%w: chunk %d follows chunk %d: the archive is damaged", eventlog.ErrInvalid, n, c.next-1)
		}
		if c.err != nil {
			c.cur = nil
			continue
		}
		c.next++
		c.read += int64(len(c.cur))
		if c.read > c.size {
			// Stop now, not after streaming a forged archive's excess.
			c.err, c.cur = fmt.Errorf("%w: its chunks hold more than its %d bytes: the archive is damaged", eventlog.ErrInvalid, c.size), nil
		}
	}
	k := copy(p, c.cur)
	c.cur = c.cur[k:]
	return k, nil
}
