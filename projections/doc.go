// Package projections builds Fazt's read side: SQLite read models that
// are an exactly-once fold of the event log, rebuildable from it at any
// time.
//
// # Overview
//
// A [Projection] is a name, a version, table declarations, an event
// filter and an Apply function that folds one event into the tables
// inside a transaction. A [Runner] keeps every registered projection in
// its own SQLite file (see [sqlitedb]) and folds the log into it on a
// goroutine of its own: it reads the events after the file's checkpoint,
// applies them, and writes the new checkpoint in the same transaction,
// up to BatchSize events (10,000) per transaction while catching up,
// whatever has arrived while live; a batch also ends once its events'
// data reach BatchBytes (8 MiB), so large events are held a few at a
// time. A crash loses nothing and repeats nothing: the
// rows and the checkpoint commit together or not at all.
//
// The checkpoint (table fazt_checkpoint, one row) holds the last log
// sequence examined, which includes events the filter left out, so a
// projection with a rare filter neither scans the log again after a
// restart nor makes [Runner.WaitFor] wait for events it will never see;
// and the sequence and ID of the last event applied. At Open the runner
// checks that against the log: a checkpoint ahead of the log, or one
// naming an event the log holds under another ID (a log restored from
// an older backup, or another log altogether), makes the projection
// rebuild from scratch, with a warning in the log that says why.
//
// # Reading
//
// [Runner.Read] is the way to read a read model. It waits, at most
// ReadOptions.MaxWait and while the caller's context lasts, until the
// projection has folded the log up to ReadOptions.MinSeq (an append's
// LastSeq, to read your own writes; the log's LastSeq, to read everything
// it held), runs the caller's function in one read-only transaction on
// the serving file, and returns the sequence those reads saw: the
// checkpoint, read in the same transaction, so rows and sequence agree
// while the fold commits beside them. A projection that does not get
// there in time, or is halted at or before MinSeq, is an error wrapping
// eventlog.ErrUnavailable (HTTP 503) that says how far it is; a halted
// one still serves what it has. ReadOptions.CurrentVersion also waits,
// during a version bump, for the registered version's file. Verticals
// and services read through Read: the checkpoint table is the runner's,
// and no one else reads or names it.
//
// [Runner.Query] runs a caller's SQL through Read, within bounds: one
// read-only statement, a time limit, a row limit, and a byte limit on
// the answer (16 MiB by default), checked as rows are read; SQLite's own
// length limit refuses to make a bigger value in the first place.
// [Runner.WaitFor] and [Runner.Acquire] are the parts Read is made of,
// for code that needs the file itself rather than a transaction on it.
//
// # Usage
//
//	var counts = schemas.Table{Name: "counts", Columns: []schemas.Column{
//		{Name: "path", Type: "TEXT", PrimaryKey: true},
//		{Name: "n", Type: "INTEGER", NotNull: true},
//	}}
//
//	r := projections.New(filepath.Join(dataDir, "projections"), log)
//	err := r.Register(projections.Projection{
//		Name:    "pageviews",
//		Version: 1,
//		Tables:  []schemas.Table{counts},
//		Filter:  eventlog.Filter{Types: []string{"analytics.pageview_recorded"}},
//		Apply: func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
//			var d struct{ Path string `json:"path"` }
//			if err := json.Unmarshal(e.Data, &d); err != nil {
//				return err // halts the projection at e
//			}
//			_, err := projections.Exec(ctx, tx, `INSERT INTO counts (path, n) VALUES (?, 1)
//				ON CONFLICT (path) DO UPDATE SET n = n + 1`, d.Path)
//			return err
//		},
//	})
//	err = r.Open(ctx)
//	defer r.Close(ctx)
//
//	res, _ := log.Append(ctx, events)
//	var n int
//	seq, err := r.Read(ctx, "pageviews", projections.ReadOptions{MinSeq: res.LastSeq}, // read your writes
//		func(ctx context.Context, tx *sql.Tx) error {
//			return tx.QueryRowContext(ctx, `SELECT n FROM counts WHERE path = ?`, "/").Scan(&n)
//		})
//
// The rules for writing a projection:
//
//   - Apply is deterministic: it depends only on the event and the
//     tables. No clock (use e.Time), no randomness (use e.ID), no map
//     iteration order, no reading other projections or the network. A
//     rebuild must give the same rows, and the runner may apply an event
//     again after a failed batch.
//   - Write with [Exec] (and read with [QueryRow]) rather than
//     tx.ExecContext: they prepare each query once per batch, which
//     makes catching up and rebuilding several times faster.
//   - When many events update the same rows (counts per key, daily
//     totals), accumulate them in the transaction's [Batch] state and
//     write each row once, in its Flush, which the runner calls after
//     the transaction's last Apply and before its checkpoint. Flush
//     writes in sorted key order (never map order); Apply checks each
//     event, so that a bad one still halts the projection at that event,
//     and falls back to writing at once when Batch is nil (Apply called
//     outside a fold). A batch folded again starts from a new state.
//   - Apply writes only through tx and only its own tables; the
//     authorizer refuses DDL outside [sqlitedb.Migrate], so tables are
//     only ever declared in Tables (names starting with fazt_ are the
//     runner's).
//   - Tables evolve by EDD rules: add nullable or defaulted columns,
//     tables and indexes; they are migrated at Open. A new column is
//     back-filled by replay: bump Version, and the projection is rebuilt
//     from the log, blue/green. Bump Version whenever Apply changes what
//     it writes.
//   - A new projection is back-filled from the log at its first Open,
//     without touching the others.
//
// # Files
//
// Each projection has a directory Dir/<name> holding generations, one
// SQLite file each, numbered 000001.db, 000002.db, ..., and a pointer
// file "current" that names them:
//
//	{"current":"000002.db","previous":"000001.db","next":"000003.db"}
//
// current serves reads; next is a rebuild under way (resumed from its own
// checkpoint after a restart); previous is the file current replaced,
// kept for a rollback. The pointer is replaced atomically (write a
// temporary file, fsync, rename, fsync the directory), and only after the
// file it names has been made durable (WAL checkpointed and fsynced), so
// it never names a missing or partial file. Files it does not name are
// leftovers of an interrupted step and are removed at Open. Storage per
// projection is therefore at most three files: older generations are
// removed when a swap makes them older than previous.
//
// # Rebuilds
//
// [Runner.Rebuild], a version bump, and a checkpoint the log does not
// back all build a new generation from seq 0. Rebuild and version bumps
// are blue/green: the new file is built beside the serving one, which
// keeps following the log (for a version bump it is frozen instead: the
// new Apply cannot continue an old version's rows), and once the new file
// has caught up with the log and with the serving file, it replaces it
// under a lock. Readers that acquired the old file finish on it; it is
// closed when the last of them releases it. A checkpoint the log does not
// back is not worth serving, so that rebuild serves the new file at once
// (State rebuilding, Status.Rebuild showing progress). When the version
// goes back to the one the previous file was built with (a rollback),
// that file serves again at once and catches up from its checkpoint.
//
// [Runner.BuildAsOf] and [Runner.BuildAsOfTime] build a projection as it
// was at a sequence or a time into a separate file: time travel. The file
// is created exclusively with mode 0600, never over an existing file or
// through a symlink, and not beside a leftover -wal, -shm or -journal; a
// failed build removes only the files it made.
//
// # Halts and skips
//
// When Apply fails on an event (or panics), nothing of its batch is kept:
// the events before it are committed on their own, the failing one is
// tried alone, and if it fails again the projection halts there, its
// checkpoint just before the event. [Runner.Status] shows the sequence,
// type, ID and error; other projections keep running. A message in the
// log that is not a valid event (one published into NATS around the
// kernel) halts the same way at its sequence, except in a projection
// filtered by categories that do not include the message's subject,
// which could never match it. [Runner.Retry] tries the event again
// (after a fix, or for a transient cause).
//
// Nothing is ever skipped silently. [Runner.Skip] skips exactly the event
// a projection is halted at, and records the decision in the log first:
// an event of type [TypeEventSkipped] on stream "projections.<name>",
// with the projection, sequence, event ID, type, error and projection
// version. The projection moves past the event only after finding that
// record in the log, so a crash in between halts again, finds the record
// and skips; and the file lists what it lacks in its fazt_skipped table.
// A rebuild of the same version skips the same events; a new version
// tries them again (it may have fixed the cause), except malformed
// messages, which no version can apply. When the log validates events,
// register [TypeEventSkipped] with [EventSkippedSchema] (the kernel
// does).
//
// The decisions live in the category [Category] ("projections"), which
// the kernel reserves ([eventlog.Log.Reserve]): an ordinary append there
// is refused, so no one can make a projection pass over an event by
// writing a decision of their own. Give the reservation's writer to
// [Runner.Writer]. Records in this category that cannot be read
// (published around the kernel) are passed over and logged, never an
// obstacle to a start.
//
// Side effects are not a read model's business: a consumer that acts on
// the world (sends a mail, issues a certificate) is a reactor, in package
// kernel/reactor, and a rebuild never runs it again.
//
// # Shutdown
//
// [Runner.Close] stops every projection's loop: a transaction in flight
// is rolled back and its events are folded again at the next Open, so
// nothing is lost or folded twice. Close waits for the loops until its
// context ends. If a projection is still folding then (behind the log's
// tail or rebuilding; an Apply that ignores its context, say), Close
// stops waiting, logs a warning and returns an [eventlog.CloseError] that
// wraps the context's error (errors.Is(err, context.DeadlineExceeded))
// and names the projection, as the log's Close does for the appends it
// cuts short. Idle projections stop at once and are not named. The
// runner is closed either way: reads fail with ErrClosed, and each file
// closes as soon as its loop and its readers let go. Close the runner
// before the log it reads.
//
// # Critical projections
//
// [Projection.Critical] says the node is useless without the read model:
// the kernel's readiness (/readyz) waits for it to catch up at start and
// fails while it is halted. A projection that is not critical (the
// default; analytics, say) halts alone: its halt shows in Status, doctor
// and metrics, and the node stays in its load balancer.
//
// Transient errors (the log unavailable, a full disk) do not halt: the
// projection retries every RetryInterval, and Status.Error says what is
// wrong meanwhile.
package projections
