package backup

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	_ "modernc.org/sqlite" // the pure Go SQLite driver, "sqlite"

	"github.com/fazt-sh/fazt/eventlog"
)

// FormatVersion is the archive's schema version, in meta("format").
const FormatVersion = 1

// schema is the archive's plain SQLite schema (see the package doc).
const schema = `
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
	seq     INTEGER PRIMARY KEY,
	time_ns INTEGER NOT NULL,
	subject TEXT NOT NULL,
	headers BLOB NOT NULL,
	data    BLOB NOT NULL,
	id      TEXT,
	type    TEXT
);
CREATE TABLE IF NOT EXISTS blobs (
	bucket TEXT NOT NULL,
	name   TEXT NOT NULL,
	size   INTEGER NOT NULL,
	data   BLOB NOT NULL,
	seq    INTEGER NOT NULL,
	PRIMARY KEY (bucket, name)
);
CREATE TABLE IF NOT EXISTS blob_chunks (
	bucket TEXT NOT NULL,
	name   TEXT NOT NULL,
	n      INTEGER NOT NULL,
	data   BLOB NOT NULL,
	PRIMARY KEY (bucket, name, n)
);
CREATE TABLE IF NOT EXISTS checkpoints (
	source     TEXT PRIMARY KEY,
	seq        INTEGER NOT NULL,
	updated_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS projection_files (
	name       TEXT NOT NULL,
	generation TEXT NOT NULL,
	started_ns INTEGER NOT NULL,
	PRIMARY KEY (name, generation)
);
`

// addProjectionFile records that a projection generation file is
// replicated from now on (Config.Projections); the first record stays.
func (a *archive) addProjectionFile(ctx context.Context, name, gen string, at time.Time) error {
	_, err := a.db.ExecContext(ctx, `INSERT OR IGNORE INTO projection_files(name, generation, started_ns) VALUES (?, ?, ?)`, name, gen, at.UnixNano())
	if err != nil {
		return fmt.Errorf("backup archive %s: record projection %s generation %s: %w", a.path, name, gen, err)
	}
	return nil
}

// sourceLog is the checkpoint of the event stream; buckets are
// "bucket:<name>".
const sourceLog = "log"

func bucketSource(bucket string) string { return "bucket:" + bucket }

// archive is the archive file, written by one connection.
type archive struct {
	path string
	db   *sql.DB
}

func archiveDSN(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	if readOnly {
		q.Add("mode", "ro")
	} else {
		q.Add("_pragma", "journal_mode(wal)")
		q.Add("_pragma", "synchronous(full)")
		q.Set("_txlock", "immediate")
	}
	return "file:" + filepath.ToSlash(path) + "?" + q.Encode()
}

// openArchive opens (creating) the archive at path for writing.
func openArchive(ctx context.Context, path, stream string) (*archive, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("backup archive folder: %w", err)
	}
	db, err := sql.Open("sqlite", archiveDSN(path, false))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	a := &archive{path: path, db: db}
	if err := a.init(ctx, stream); err != nil {
		db.Close()
		return nil, fmt.Errorf("backup archive %s: %w", path, err)
	}
	return a, nil
}

func (a *archive) init(ctx context.Context, stream string) error {
	if _, err := a.db.ExecContext(ctx, schema); err != nil {
		return err
	}
	var format, have string
	err := a.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'format'`).Scan(&format)
	if errors.Is(err, sql.ErrNoRows) {
		_, err = a.db.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES ('format', ?), ('stream', ?), ('created', ?)`,
			strconv.Itoa(FormatVersion), stream, time.Now().UTC().Format(time.RFC3339Nano))
		return err
	}
	if err != nil {
		return err
	}
	if format != strconv.Itoa(FormatVersion) {
		return fmt.Errorf("%w: archive format %s, this binary writes %d: archive into a new file", eventlog.ErrConflict, format, FormatVersion)
	}
	if err := a.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'stream'`).Scan(&have); err == nil && have != stream {
		return fmt.Errorf("%w: the archive holds stream %s, not %s", eventlog.ErrConflict, have, stream)
	}
	return nil
}

func (a *archive) close() error { return a.db.Close() }

// checkpoint returns the last sequence copied from source (0: none).
func (a *archive) checkpoint(ctx context.Context, source string) (uint64, error) {
	var seq uint64
	err := a.db.QueryRowContext(ctx, `SELECT seq FROM checkpoints WHERE source = ?`, source).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return seq, err
}

func setCheckpoint(ctx context.Context, tx *sql.Tx, source string, seq uint64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO checkpoints(source, seq, updated_ns) VALUES (?, ?, ?)
		ON CONFLICT(source) DO UPDATE SET seq = excluded.seq, updated_ns = excluded.updated_ns`, source, seq, time.Now().UnixNano())
	return err
}

// appendEvents writes msgs, which must follow the log checkpoint without
// a gap, and moves the checkpoint, in one transaction.
func (a *archive) appendEvents(ctx context.Context, msgs []eventlog.RawMessage) error {
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var pos uint64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE((SELECT seq FROM checkpoints WHERE source = ?), 0)`, sourceLog).Scan(&pos); err != nil {
		return err
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO events(seq, time_ns, subject, headers, data, id, type) VALUES (?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, m := range msgs {
		if m.Seq != pos+1 {
			return fmt.Errorf("%w: message %d does not follow the archive's %d", eventlog.ErrConflict, m.Seq, pos)
		}
		hb := m.HeaderBytes()
		if hb == nil {
			hb = []byte{}
		}
		data := m.Data
		if data == nil {
			data = []byte{}
		}
		if _, err := st.ExecContext(ctx, m.Seq, m.Time.UnixNano(), m.Subject, hb, data,
			nullable(m.Header.Get("Fazt-Id")), nullable(m.Header.Get("Fazt-Type"))); err != nil {
			return err
		}
		pos = m.Seq
	}
	if err := setCheckpoint(ctx, tx, sourceLog, pos); err != nil {
		return err
	}
	return tx.Commit()
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// hasBlob reports whether the archive holds a blob.
func (a *archive) hasBlob(ctx context.Context, bucket, name string) (bool, error) {
	var n int
	err := a.db.QueryRowContext(ctx, `SELECT 1 FROM blobs WHERE bucket = ? AND name = ?`, bucket, name).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// ChunkBytes is the size of the blob_chunks rows: a blob larger than
// this is archived and restored ChunkBytes at a time, never held whole
// in memory; smaller ones stay one row of blobs (a site's files
// mostly).
const ChunkBytes = 1 << 20

// blobRow is an object to archive: data for a small one, or the object
// to stream from its bucket's stream in chunks.
type blobRow struct {
	name string
	data []byte
	obj  *jetstream.ObjectInfo
	st   jetstream.Stream
}

// weight is what the row adds to a transaction's bytes.
func (r blobRow) weight() int {
	if r.obj != nil {
		return int(min(r.obj.Size, 1<<40))
	}
	return len(r.data)
}

// putBlob stores a blob (if new; none when data is nil) and moves the
// bucket's checkpoint, at once.
func (a *archive) putBlob(ctx context.Context, bucket, name string, data []byte, bucketSeq, logSeq uint64) error {
	var rows []blobRow
	if data != nil {
		rows = []blobRow{{name: name, data: data}}
	}
	return a.putBlobs(ctx, bucket, rows, bucketSeq, logSeq)
}

// putBlobs stores blobs (those not archived yet) and moves the bucket's
// checkpoint in one transaction.
func (a *archive) putBlobs(ctx context.Context, bucket string, rows []blobRow, bucketSeq, logSeq uint64) error {
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, r := range rows {
		if r.obj != nil {
			if err := putChunked(ctx, tx, bucket, r, logSeq); err != nil {
				return err
			}
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO blobs(bucket, name, size, data, seq) VALUES (?, ?, ?, ?, ?)`,
			bucket, r.name, len(r.data), r.data, logSeq); err != nil {
			return err
		}
	}
	if err := setCheckpoint(ctx, tx, bucketSource(bucket), bucketSeq); err != nil {
		return err
	}
	return tx.Commit()
}

// putChunked archives a large object: a blobs row with empty data and
// its bytes in blob_chunks, ChunkBytes a row, read from the bucket's
// stream one chunk message at a time and checked against the object's
// size and digest. An object deleted since (its chunks gone) is left
// out, as a small one is.
func putChunked(ctx context.Context, tx *sql.Tx, bucket string, r blobRow, logSeq uint64) error {
	res, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO blobs(bucket, name, size, data, seq) VALUES (?, ?, ?, x'', ?)`,
		bucket, r.name, int64(r.obj.Size), logSeq)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return err // archived already
	}
	ins, err := tx.PrepareContext(ctx, `INSERT INTO blob_chunks(bucket, name, n, data) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer ins.Close()
	subject := "$O." + bucket + ".C." + r.obj.NUID
	h := sha256.New()
	buf := make([]byte, 0, ChunkBytes)
	var total uint64
	n := 0
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		_, err := ins.ExecContext(ctx, bucket, r.name, n, buf)
		n, buf = n+1, buf[:0]
		return err
	}
	seq := uint64(1)
	for got := uint32(0); got < r.obj.Chunks; got++ {
		m, err := r.st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			// Deleted since: nothing to keep.
			if _, err := tx.ExecContext(ctx, `DELETE FROM blob_chunks WHERE bucket = ? AND name = ?`, bucket, r.name); err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, `DELETE FROM blobs WHERE bucket = ? AND name = ?`, bucket, r.name)
			return err
		}
		if err != nil {
			return fmt.Errorf("%w: read %s: %w", eventlog.ErrUnavailable, r.name, err)
		}
		seq = m.Sequence + 1
		h.Write(m.Data)
		total += uint64(len(m.Data))
		for d := m.Data; len(d) > 0; {
			k := copy(buf[len(buf):cap(buf)], d)
			buf, d = buf[:len(buf)+k], d[k:]
			if len(buf) == cap(buf) {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if total != r.obj.Size || (r.obj.Digest != "" && jetstream.GetObjectDigestValue(h) != r.obj.Digest) {
		return fmt.Errorf("%w: object %s of bucket %s reads as %d bytes that do not match its size %d and digest", eventlog.ErrInvalid, r.name, bucket, total, r.obj.Size)
	}
	return nil
}

// Hasher hashes messages of the log in order, in a form that does not
// depend on how they are stored: sequence, time (ns), subject, headers
// (EncodeHeader) and data, each length-prefixed. Two logs (or a log and
// an archive) with the same messages have the same hash.
type Hasher struct {
	h hash.Hash
	n uint64
}

// NewHasher returns an empty Hasher.
func NewHasher() *Hasher { return &Hasher{h: sha256.New()} }

// Add hashes one message.
func (x *Hasher) Add(seq uint64, timeNS int64, subject string, headers, data []byte) {
	var b [8]byte
	put := func(p []byte) {
		binary.BigEndian.PutUint64(b[:], uint64(len(p)))
		x.h.Write(b[:])
		x.h.Write(p)
	}
	binary.BigEndian.PutUint64(b[:], seq)
	x.h.Write(b[:])
	binary.BigEndian.PutUint64(b[:], uint64(timeNS))
	x.h.Write(b[:])
	put([]byte(subject))
	put(headers)
	put(data)
	x.n++
}

// AddRaw hashes a message read from the log.
func (x *Hasher) AddRaw(m eventlog.RawMessage) {
	x.Add(m.Seq, m.Time.UnixNano(), m.Subject, m.HeaderBytes(), m.Data)
}

// Count is how many messages were added.
func (x *Hasher) Count() uint64 { return x.n }

// Sum is the hash so far, in hex.
func (x *Hasher) Sum() string { return hex.EncodeToString(x.h.Sum(nil)) }

// readBlob prepares an object to archive: a small one read whole, a
// large one (over ChunkBytes) to stream from st inside the archive
// transaction. ok is false for an object deleted since.
func readBlob(ctx context.Context, st jetstream.Stream, store jetstream.ObjectStore, oi jetstream.ObjectInfo) (blobRow, bool, error) {
	if oi.Size > ChunkBytes && oi.NUID != "" {
		return blobRow{name: oi.Name, obj: &oi, st: st}, true, nil
	}
	data, err := store.GetBytes(ctx, oi.Name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return blobRow{}, false, nil // deleted since: nothing to keep
	}
	if err != nil {
		return blobRow{}, false, fmt.Errorf("%w: get %s: %w", eventlog.ErrUnavailable, oi.Name, err)
	}
	return blobRow{name: oi.Name, data: data}, true, nil
}
