// Package backup is the kernel's backup service: every event of the
// log, and every blob a deploy stored, is copied into an archive
// SQLite file, which embedded Litestream replicates to one or more
// replicas (a folder, S3-compatible storage, or any Litestream replica
// URL); Restore rebuilds a data directory from a replica, exact to the
// event. It is a service: cmd/fazt registers it on the kernel (the
// kernel package never imports it).
//
// # Usage
//
//	k := kernel.New("./data")
//	svc, err := backup.Register(k, backup.Config{Replicas: []string{"s3://bucket/fazt"}})  // before k.Open
//	err = k.Open(ctx)
//	err = svc.Start(ctx)        // after k.Open: archives and replicates
//	st, err := svc.Status(ctx)  // per replica: copied sequence, lag, last error
//	res, err := svc.Verify(ctx, "")  // a restore drill: restore the copy, compare with the log
//	err = svc.Close(ctx)        // before k.Close: a last sync, bounded
//
//	// On a new machine:
//	res, err := backup.Restore(ctx, backup.RestoreOptions{From: "s3://bucket/fazt", Data: "./new", AsOfTime: t})
//
// fazt serve --backup URL (repeatable) turns it on; fazt restore, fazt
// backup status, verify, add and remove are the commands.
//
// # Configuration
//
// Replicas come from Config.Replicas and UseReplicas (the --backup
// flags), and from the service's own events: AddReplica (POST
// /v1/backup/replicas, fazt backup add URL) appends
// backup.replica_added on the stream backup.replicas, and RemoveReplica
// (DELETE /v1/backup/replicas?url=, fazt backup remove URL)
// backup.replica_removed. The category "backup" is reserved: only the
// service writes it. A started service follows these events, so a node
// starts (or stops) copying to a replica at once, without a restart,
// and every later start applies them again. URLs with a secret in them
// are refused (events are kept for ever): credentials come from the
// environment, as Litestream reads them (AWS_ACCESS_KEY_ID, ...).
// AWS_CA_BUNDLE is refused for s3:// replicas (ErrInvalid): Litestream's
// S3 client (v0.5.18) gives the AWS SDK an HTTP client of its own, to
// which the SDK cannot add a CA bundle, so every request would fail.
// Trust a private CA through the system instead: on Linux,
// SSL_CERT_FILE=ca.pem (Go still reads /etc/ssl/certs beside it), or the
// system's trust store. A ca_bundle in an AWS profile fails the same way
// when the client starts (a restore, a verify: ErrInvalid with the same
// advice).
// Without any replica the service archives nothing. ServiceOf finds the
// service registered on a kernel, for the program that tunes it.
//
// # The archive
//
// The archive (DIR/backup/archive.db) is a plain SQLite file in WAL
// mode. Its schema is permanent (meta "format" = FormatVersion):
//
//	meta(key TEXT PRIMARY KEY, value TEXT)
//	    format: "1"; stream: the JetStream stream ("FAZT_EVENTS"); created: RFC 3339 time
//	events(seq INTEGER PRIMARY KEY, time_ns INTEGER, subject TEXT, headers BLOB, data BLOB, id TEXT, type TEXT)
//	    one row per message of the log, malformed ones included, gap-free from 1:
//	    seq is JetStream's sequence, time_ns its timestamp (nanoseconds since 1970 UTC),
//	    subject "fazt.ev.<stream>", headers the NATS header block as text
//	    ("NATS/1.0\r\nFazt-Id: …\r\nFazt-Type: …\r\n…\r\n", keys sorted), data the body
//	    (the event's JSON); id and type repeat Fazt-Id and Fazt-Type for queries
//	blobs(bucket TEXT, name TEXT, size INTEGER, data BLOB, seq INTEGER, PRIMARY KEY(bucket, name))
//	    every object of the archived object store buckets (the vfs blobs, named by their
//	    SHA-256), stored once; seq is the log's sequence when it was archived; data is the
//	    object's bytes, or empty (x'') with size > 0 when it is chunked
//	blob_chunks(bucket TEXT, name TEXT, n INTEGER, data BLOB, PRIMARY KEY(bucket, name, n))
//	    the bytes of an object larger than ChunkBytes (1 MiB), ChunkBytes a row, n from 0:
//	    in order of n they are the object (their lengths add up to blobs.size)
//	checkpoints(source TEXT PRIMARY KEY, seq INTEGER, updated_ns INTEGER)
//	    "log": the last event archived; "bucket:<name>": the last message of the bucket's
//	    stream read
//	projection_files(name TEXT, generation TEXT, started_ns INTEGER, PRIMARY KEY(name, generation))
//	    with Config.Projections: each projection generation file replicated, at
//	    <URL>/projections/<name>/<generation>, and when its replication started
//	    (nanoseconds since 1970 UTC); empty otherwise
//
// Litestream adds its own bookkeeping tables (_litestream_seq,
// _litestream_lock). sqlite3 reads the file as it is:
//
//	sqlite3 archive.db "SELECT seq, datetime(time_ns/1e9, 'unixepoch'), type, data FROM events ORDER BY seq DESC LIMIT 5"
//	sqlite3 archive.db "SELECT writefile(name, data) FROM blobs WHERE length(data) = size"
//
// A chunked blob is its chunks joined in order of n; sqlite3 alone
// writes it out (then sha256sum HASH prints its name again):
//
//	sqlite3 archive.db "SELECT writefile('HASH', (SELECT group_concat(data, x'') FROM (SELECT data FROM blob_chunks WHERE name = 'HASH' ORDER BY n)))"
//
// The schema only grows: tables and columns are added, never dropped or
// renamed, so every archive restores with a later binary. Archives made
// before blob_chunks hold every blob whole in blobs.data and restore as
// they are.
//
// # Copying
//
// One loop reads the log in order as stored (eventlog.Cursor.NextRaw),
// first archives the objects put into the buckets since their
// checkpoint (a blob is stored before any event names it, so every blob
// the events read name is there), then writes the events and the log's
// checkpoint in one transaction. An object larger than ChunkBytes is
// read from its bucket's stream one chunk message at a time inside the
// archive transaction and written ChunkBytes a row, checked against its
// size and digest; Restore streams the rows back into the bucket (a
// jetstream.ObjectStore Put from a reader): a 100 MiB blob is never
// held whole in memory. After a crash it resumes from the
// checkpoint: no gap, no event twice. At start it checks that the
// archive is a prefix of the log (the event at its checkpoint has the
// same time and subject): an archive of another log is refused with
// ErrConflict and a message saying to move it away.
//
// # Replicas
//
// The archive has one embedded Litestream (github.com/benbjohnson/litestream,
// the library: a DB, a Replica and a Store, the CLI's compaction levels:
// 30 s, 5 min, 1 h, and its daily snapshot), however many replica URLs
// there are. It replicates into a staging folder on the local disk,
// DIR/backup/staging/archive (a file:// replica), where Litestream
// compacts and enforces retention once. For each replica URL a mirror
// copies that folder's LTX files to the URL through Litestream's
// ReplicaClient: new files first (the snapshot and compacted levels,
// then L0, each in transaction order, so a replica that was far behind
// can restore from them before the newest L0 files land), then it
// deletes the files the staging folder no longer has. Each URL is
// therefore a standard Litestream replica of the archive, which the
// stock CLI restores. One Litestream per file matters: each holds a
// read transaction on the file that it lets go only around its own
// checkpoints, so two on one file would keep each other from ever
// restarting the WAL, and the WAL would grow without bound.
//
// The service drives the syncs: after the archive advances, at most
// every Config.SyncInterval (200 ms), it syncs the archive's WAL into
// the staging folder, notes which archived sequence that transaction
// holds, and wakes the mirrors; a mirror reports the sequence of the
// last transaction it copied. Each mirror has its own loop, position,
// error and backoff: a replica that fails (folder not writable, S3
// endpoint gone) never stops the archive, the log or the other
// replicas; its error and growing lag show in Status, /metrics and
// fazt doctor, its retries back off up to 10 s, and it catches up from
// the staging folder when the target returns. A replica holding files
// past the staging folder's last transaction (an older history: the
// staging folder was started again) has them deleted before the copy.
// Close syncs the last events into the staging folder and makes a last
// copy to every replica at once, waiting at most Config.ShutdownTimeout
// (5 s); what is cut short resumes at the next start.
//
// The staging hop costs local disk and one local write: the staging
// folder holds what a replica holds (the daily snapshot, a full copy of
// the archive, kept a day, so one to two copies of the archive; the
// compacted files; L0 files for 5 minutes), beside Litestream's own
// local L0 files. In exchange, snapshots and compactions are made once
// from local files instead of once per replica, reading back from it.
//
// The replicas are Litestream's own format: the stock CLI restores the
// archive without Fazt, and sqlite3 reads it:
//
//	litestream restore -o archive.db s3://bucket/fazt
//	sqlite3 archive.db 'PRAGMA integrity_check'
//
// # Projection files
//
// Projections are rebuilt from the restored log by default. For read
// models too large to rebuild quickly, Config.Projections (fazt serve
// --backup-projections) also replicates each projection's serving
// generation file, DIR/projections/<name>/<gen>.db, the same way (its
// own Litestream, a staging folder DIR/backup/staging/projections/<name>/<gen>,
// a mirror per URL) to <URL>/projections/<name>/<gen> ("000002" for
// 000002.db): a standard Litestream replica of that file. When a
// rebuild switches a projection to a new generation, the new file's
// replication starts and the old one's stops (its replicas stay). Each
// generation replicated is recorded in the archive's projection_files
// when its replication starts, so a restore of the archive knows which
// generations exist and since when. Litestream adds its bookkeeping
// tables (_litestream_seq, _litestream_lock) to those files too.
//
// # Restore
//
// Restore fetches the archive (Litestream restore from a replica, or a
// copy of an archive file), takes its events up to AsOfSeq or AsOfTime
// (exact to the event: the archive only grows, so its latest state
// holds every earlier point), and writes them into a new log with
// eventlog.Log.Import: every sequence, ID, type, version, time, header
// and payload is the original's. It puts the blobs back into their
// buckets; the read models are rebuilt from the log when the kernel
// opens the directory (fazt restore does that before it returns).
//
// # Projection files
//
// For large read models the backup can replicate projection files too.
// A generation file DIR/projections/<name>/<gen>.db is then a standard
// Litestream replica at <URL>/projections/<name>/<gen> (e.g.
// file:///backups/fazt/projections/orders/000002), and the archive
// indexes them:
//
//	projection_files(name TEXT, generation TEXT, started_ns INTEGER, PRIMARY KEY(name, generation))
//	    one row per replicated generation, written when its replication started
//
// When the restored archive has that table, Restore takes for each
// projection its newest generation (started at or before AsOfTime when
// one is given), restores it with Litestream as of AsOfTime (or its
// latest copy; a copy ahead of the restored log is tried again as of
// the last restored event's time), and accepts it only when
// integrity_check is ok and its checkpoint is at or before the last
// restored event, naming an event the archive holds. An accepted file
// is installed as the projection's current generation (its pointer
// file), so the kernel opens it and catches up from its checkpoint
// instead of folding the whole log. Any other projection (no replica,
// a damaged or ahead copy, RestoreOptions.RebuildProjections, fazt
// restore --rebuild-projections) is rebuilt from the log, as without
// the table. RestoreResult.Projections says which was which and why;
// the Logger gets a line for each, a warning for each rebuilt one.
//
// # Status and checks
//
// Status (GET /v1/backup, fazt backup status) gives the archive's and
// each replica's last sequence, lag in events and seconds (the age of
// the oldest event not copied), syncs, errors and the last error; the
// same are the fazt_backup_* metrics. Verify (POST /v1/backup/verify,
// fazt backup verify) restores a replica's latest copy into a temporary
// file, checks it and compares it with the live log: count, last
// sequence, and a hash over the events (Hasher).
package backup
