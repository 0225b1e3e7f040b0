// Package eventlog is Fazt's append-only event log: every write in Fazt is
// an immutable event in one NATS JetStream stream, embedded in the process
// by default.
//
// # Overview
//
// A Log appends events atomically (all of an append, across any number of
// streams, or none), checks per-stream expectations for optimistic
// concurrency, deduplicates retries by event ID for ever, and reads events
// back by stream, by global position, or as a live subscription.
//
// An event belongs to a stream, an entity key such as "orders.42": two or
// more dot-separated tokens, the first of which is the category
// ("orders"). The log gives every event a global sequence (1, 2, 3, ...
// with no gaps) and a version within its stream (1, 2, 3, ...).
//
// # Usage
//
//	l := eventlog.New("./data")           // tunables are exported fields
//	if err := l.Open(ctx); err != nil { ... }
//	defer l.Close(ctx)
//
//	res, err := l.Append(ctx, []eventlog.Event{
//		{Stream: "orders.42", Type: "orders.placed", Data: json.RawMessage(`{"total":12}`)},
//		{Stream: "stock.apples", Type: "stock.reserved", Data: json.RawMessage(`{"n":3}`)},
//	}, eventlog.ExpectNew("orders.42"))
//	// errors.Is(err, eventlog.ErrConflict): someone wrote orders.42 first.
//
//	evs, err := l.ReadStream(ctx, "orders.42", 1, 100)      // from version 1
//	page, err := l.Read(ctx, 0, 100, eventlog.Filter{Categories: []string{"orders"}})
//	err = l.Subscribe(ctx, 0, eventlog.Filter{}, func(e eventlog.Event) error { ... })
//	// Entries read from the log may be malformed (written around the
//	// kernel): check e.Malformed, or e.Err(), before using one.
//
// # Durability
//
// Strict (the default): an append is acknowledged only after it is fsynced.
// Concurrent appends are gathered into one group: their messages are
// pipelined to JetStream on one connection, and the group is made durable
// with a single fsync of the stream's newest message block, so 64 callers
// pay for about one disk flush, not 64. (JetStream's own per-message fsync
// costs one flush per event, and its atomic batch stages every batch in a
// new store, which costs many flushes per batch; see BenchmarkAppendStrict.)
// An append of several events needs that atomic batch all the same, so it
// costs several milliseconds (about 4.5 ms against 0.4 ms for one event on
// a disk with 0.3 ms fsyncs, in either durability). Concurrent appends
// share one batch, and while a batch is in flight the next group waits
// for it to grow (see BenchmarkAppendAtomic).
// Relaxed: an append is acknowledged once written to the operating system
// and fsynced every SyncInterval (default 1s); a crash of the process loses
// nothing, a power loss or a kernel crash can lose the appends of the last
// SyncInterval. When connected to an external server (URL), durability is
// that server's sync_interval setting.
//
// In a cluster (Cluster, or URL with replicas) the meaning of both
// stays true, with the replicas in place of the disk: Strict sets the
// servers' sync_interval to always (each replica fsyncs every write,
// and its RAFT log, before it counts towards the quorum), so an
// acknowledged append is on the disks of a majority of the replicas
// and survives the loss of any minority, power losses included; the
// log's own group fsync is not used there. Relaxed keeps the one-second
// sync interval: an acknowledged append is in the memory of a majority
// and survives the loss of any minority of nodes (killed, crashed,
// rebooted), but a power loss that takes a majority within the interval
// can lose the last second. (NATS's default interval, two minutes, is
// what Jepsen found losing acknowledged writes in NATS 2.12.)
//
// Reads see an event as soon as JetStream has stored it, which under
// strict durability is while its fsync runs, just before the append is
// acknowledged: so a projection can fold it in parallel with the disk
// flush. A power loss in that moment loses an event nobody was told was
// written; projections that folded it notice at start (their checkpoint
// is ahead of the log) and rebuild.
//
// # Clusters
//
// Past one machine the log runs on a NATS cluster of the same binary:
// set Cluster (a name shared by the nodes, this node's stable name, the
// address it takes routes on, the other nodes' addresses and a secret
// they all know) and Replicas (3). Open renders the node's part of the
// server configuration in NATS's own configuration language (server
// name, a cluster block with the route credentials and the routes, the
// JetStream sync policy) and loads it with the server's parser, as
// NATS's tests build clusters. Nodes authenticate their routes with the
// secret and refuse others. The routes carry every event, so Cluster.TLS
// makes them mutual TLS (the cluster block's tls, with verify): each
// node presents its certificate and verifies the other side's against
// the cluster's CA, and the route port speaks TLS before anything else,
// so a plain TCP client gets nothing in clear. Open checks the files
// first (readable, the key the certificate's, issued by the CA, valid
// now, for server and client authentication) and refuses a cluster
// without TLS unless Cluster.Insecure, which it logs as a warning.
// ClusterCA makes a private CA and the nodes' certificates. The client
// port listens on loopback only, and every user of it has a password
// made at start. Open waits (until
// its context ends) for the cluster to create the event stream with
// Replicas replicas and elect its leader, so nodes may start in any
// order. The object store buckets are made with Replicas too. A log
// that uses an existing NATS cluster instead (URL listing several
// servers, Replicas 3) waits for it the same way; durability is then the
// servers' sync_interval (set it to always). Replicas above 1 without
// either are refused: one embedded server holds one replica.
//
// Any node appends. The stream's leader orders every write; a node's
// appends are guarded per stream with Nats-Expected-Last-Subject-Sequence
// (see Concurrency), one group in flight, the group written as one atomic
// batch, and idempotency holds across nodes: a retry on another node of
// an append that landed is answered with the original positions, through
// JetStream's dedupe and the lookup. Each node reads its own replica
// (direct gets), which may be a moment behind the leader: reading a
// stream's end, or the original of a duplicate, the log reads again when
// a replica answered behind another. A node whose replica is behind still
// never writes a wrong version: the leader refuses a guard that no
// longer holds, and the append is retried on a fresh view.
//
// When the leader is lost (killed, frozen, cut off) the others elect
// one within seconds (JetStream's followers wait four or more seconds
// for a leader before they elect one). An append in flight to the lost
// leader gets no answer: the log sends it again every ResendInterval
// (1 s), the same messages with the same IDs, until FailoverTimeout
// (30 s), so it lands once a new leader is elected, exactly once. Every
// event a node writes in a cluster carries Nats-Msg-Id (JetStream then
// stores a copy of a stored message never), and the per-stream guards
// refuse a second copy in any case; whichever answer comes first is
// the append's, and a copy found stored (a duplicate, or refused by its
// own guard) is answered with the original positions as the append's
// own write (Result.Duplicate false), never as a conflict. Reads that
// fail while the cluster elects (checking expectations, looking up a
// copy) put the append back for a moment, within the same deadline.
// Past FailoverTimeout the append fails with ErrUnavailable (retry it
// with the same IDs, on any node). Stats.Resent counts the appends sent
// again. Routes ping every two seconds, so a node that stops answering
// without closing its connections is dropped within seconds. A node
// that returns catches up from the others.
// ClusterStatus reports the routes, the leader and each replica's lag.
// The NATS listener (Listen) is not available on a cluster node yet.
//
// # Object stores
//
// ObjectStore opens a JetStream object store bucket on the log's server
// (file storage, the log's Replicas), for large immutable contents that
// events name, such as the vfs service's file blobs. The group commit
// fsyncs only the event stream: under Strict durability, call
// SyncObjectStore after writing to a bucket and before appending an event
// that names what was written, so that no crash keeps the event and
// loses the content. NATS listener clients reach neither the buckets nor
// their streams.
//
// KeyValue opens a JetStream key-value bucket the same way, on the same
// connection, for small mutable state that is not an event (the edge's
// certificates and its cluster-wide locks); SyncKeyValue is its
// SyncObjectStore.
//
// # Backups
//
// Cursor.NextRaw reads the log as stored: every message, malformed or
// not, with its sequence, subject, headers, data and JetStream's time
// (RawMessage), which is everything needed to store it again;
// ObjectStream gives the stream of an object store bucket, so a reader
// can follow what is put into it in order. Import writes raw messages
// into a new log (in a directory without one) with their own sequences
// and times, through JetStream's store rather than its publish path,
// which would give them new times: a restored log reads back exactly
// as the original, and appends continue after it. EncodeHeader gives a
// RawMessage's headers one byte form whatever their map order.
//
// # Concurrency
//
// One commit loop publishes; it keeps a view of every stream's last
// position, checks expectations against it and assigns versions. With the
// embedded server only the log's own connection may publish events (Conn
// and the listener are read-only unless ListenWritable), so the log is the
// sole writer and knows every sequence in advance: it pipelines several
// groups, and every unit (an event, or an atomic batch) carries
// Nats-Expected-Last-Sequence. If any write fails, every later one in
// flight is refused by JetStream too, the view is rebuilt from the log and
// the refused appends are retried, in the order they were made: no
// version is ever skipped or reused. The chain also means that JetStream
// acknowledges only the last unit of a group: if it landed where
// predicted, so did every unit before it; if not, the log's last sequence
// says which did.
// When other writers may exist (URL, a writable listener, replicas), the
// log keeps one group in flight, written as one unit guarded per stream
// with Nats-Expected-Last-Subject-Sequence against the positions the log
// confirmed; an overtaken append is retried on a fresh view, and an
// expectation that no longer holds returns ErrConflict. An expectation
// that fails against the view is checked against the stream's end in
// the log first (another writer may have moved it since the view read
// it; a replica found short of the expected version is read again for
// a moment), so only a real conflict is refused.
//
// # Idempotency
//
// An event's ID (a ULID) is its dedupe key, and names one event. Retrying
// an append with the same events (same IDs, streams, types and data, byte
// for byte) returns the original positions (Result.Duplicate is true) and
// writes nothing, however late the retry. The same ID with another
// stream, type or data is not a retry: the append is refused with an
// *IDConflictError (ErrConflict) that names the original's sequence and
// stream. The rule is the same on every path: the IDs the log remembers,
// a copy sent while its original is in flight, JetStream's own dedupe
// answer, and the lookup after a restart or past the window. Past the
// window the lookup reads only the event's own stream, so an ID reused in
// another stream that long after is not found. IDs the caller chose carry
// Nats-Msg-Id, so JetStream deduplicates them within DuplicateWindow
// (default 2 minutes; JetStream rebuilds that table when it starts), and
// the log remembers them for as long, to answer a retry without writing.
// For an ID the log cannot know (older than the window, or made before
// this Log opened, a retry across a restart) it scans the event's stream
// from a minute before the time in the ULID, before sending anything; a
// retry JetStream reports as a duplicate all the same is answered with
// the original positions too. IDs may not carry a time more than a
// minute in the future, which is what makes that scan complete. IDs the
// log makes itself cannot be retried (the caller never saw them), so they
// skip all of this, except in a cluster (other writers), where they
// carry Nats-Msg-Id too, so that the log can send an unanswered append
// again (see Clusters). The log makes them as it writes, so they follow
// the log's order.
//
// # Shutdown
//
// Close never leaves an append without an answer, and never answers one
// with an error that hides a write. Appends made once Close has begun
// fail with ErrClosed. Appends already accepted (Append waiting, a
// Pending from AppendAsync) are finished: Close waits until they are
// committed, or answered as they would be anyway. If Close's context
// ends first, Close stops waiting for JetStream: an append already sent
// fails with ErrUnavailable (it may have landed: read the log, or retry
// it with the same IDs), one not sent yet fails with ErrClosed (nothing
// of it was written), and Close logs a warning and returns a
// *CloseError that wraps the context's error (errors.Is(err,
// context.DeadlineExceeded)) and counts both. The projections runner's
// Close reports a missed deadline the same way. When nothing was cut
// short Close returns nil, whatever its context. Either way the log is
// closed when Close returns: its goroutines have stopped and the
// embedded server is shut down.
//
// # Reserved categories
//
// A program can reserve categories for its own records ([Log.Reserve]):
// ordinary appends may then neither write a stream of such a category
// nor use an event type whose first token is one (ErrInvalid, naming the
// category), and only the [Writer] that Reserve returned appends there,
// through the same commit path. The kernel reserves "schemas",
// "projections" and "reactors", whose records decide what a start does.
// Messages published around the log (a writable listener, another client
// of an external server) are not covered: readers of these categories
// must still check what they read.
//
// # Live subscriptions
//
// Subscribe reads with batched direct gets from its own position, so it
// never misses or repeats an event and costs JetStream nothing while idle:
// it is woken by this process's appends, and polls every PollInterval when
// other writers may exist.
//
// # Storage
//
// The log only grows, so it must meet a full disk gracefully. With the
// embedded server, an append is refused before anything is sent, with
// ErrInsufficientStorage (a *StorageError that names the disk or the
// limit), when the free space of Dir's file system is below DiskReserve
// (DefaultDiskReserve, 64 MiB: room for the read models to catch up) or
// when the log would grow past MaxStore (0: no limit). Free space is
// measured at most every 100 ms and what was appended since is counted,
// so the reserve holds at full speed. Appends are taken again as soon as
// space returns; nothing needs a restart. Storage reports the figures.
//
// The log enforces both limits itself and gives JetStream none: JetStream
// checks its own limit message by message and was seen storing one event
// of a three-event atomic batch that reached it. Should the disk fill
// all the same (another process writing to it), JetStream stops writing
// the stream, for good in its own eyes; appends are then answered
// ErrUnavailable (they may or may not have landed), and once there is
// room above the reserve again the log restarts JetStream, which
// recovers the stream from its files. An external server (URL) enforces
// its own limits; its refusals are ErrInsufficientStorage too.
//
// # Messages written around the kernel
//
// With other writers (a writable listener, URL) anything can land on
// "fazt.ev.>". Nothing read from the log blocks a reader: Read, Cursor and
// Subscribe return a message that is not a valid event as an entry with
// Event.Malformed set (its sequence, stream, JetStream's time, the reason,
// and its raw headers and data, bounded), and go on past it; Event.Err
// turns it into a *DecodeError (ErrMalformed) for consumers that must stop
// there (projections halt at it until it is skipped). ReadStream returns
// a stream's history, its events only; ReadStreamEntries shows the
// malformed entries among them. Stats.Malformed and LastMalformed count
// and show what readers came across.
//
// # Wire form
//
// This is the stored form of an event. It is permanent: every version of
// Fazt must read it.
//
//   - JetStream stream: FAZT_EVENTS (StreamName), file storage, subjects
//     "fazt.ev.>", DenyDelete, DenyPurge, no age, size or count limits,
//     direct gets and atomic batches allowed.
//   - Subject: "fazt.ev." followed by the stream name, e.g.
//     "fazt.ev.orders.42". The category filter for "orders" is
//     "fazt.ev.orders.>".
//   - Body: the event's data, a JSON value, as is.
//   - Headers:
//     Fazt-Id: the event ID (ULID, 26 characters, upper case);
//     Fazt-Type: the event type, e.g. "orders.placed";
//     Fazt-Version: the event's version in its stream (decimal, from 1);
//     Fazt-Schema: the schema version of the data (decimal; absent means 1);
//     Fazt-Correlation-Id, Fazt-Causation-Id, Fazt-Actor: metadata, each
//     absent when empty;
//     Nats-Msg-Id: the event ID again, only when the caller chose it;
//     Nats-Expected-Last-Sequence, Nats-Expected-Last-Subject-Sequence:
//     guards some writes carry (see Concurrency); readers ignore them.
//   - Time: JetStream's own timestamp of the message (Nats-Time-Stamp in
//     direct gets).
//   - Global sequence: JetStream's stream sequence.
//
// The subjects belong to this package: code that filters or publishes on
// them uses SubjectOf (a stream's subject), StreamOf (the stream a subject
// names), CategorySubject (a category's filter) and AllSubjects (the
// whole log's), never the literal prefix.
//
// Sequence, subject and time always come from JetStream: in a direct get
// the last value of Nats-Sequence, Nats-Subject and Nats-Time-Stamp (the
// server appends its own after any stored in the message), in a consumer
// the delivery metadata. Headers of those names stored inside a message
// (a republished copy, say) are data, never metadata.
//
// A message is a valid event when its subject names a valid stream,
// Fazt-Id, Fazt-Type and Fazt-Version appear exactly once and are well
// formed, Fazt-Schema and the metadata headers at most once, and its body
// is JSON. Its version must follow the stream's: one more than the last
// valid event's before it (1 for the first). Only valid events count: the
// next version the log gives a stream is one more than its last valid
// event's, whatever malformed messages or out-of-sequence versions were
// written after it. ReadStream checks versions over the stream it reads;
// the commit loop reads back from the end of a stream until two events in
// a row have consecutive versions and checks forward from there (at most
// 1000 messages back). The check is local: a run of forged versions that
// are consecutive among themselves is taken for the stream's next events
// by the commit loop, which is one more reason the listener is read-only
// unless ListenWritable. Read, Cursor and Subscribe check each envelope
// on its own, not versions (that needs the stream's history).
//
// An append of several events, alone or grouped with others, is written as
// one JetStream atomic batch (Nats-Batch-Id, Nats-Batch-Sequence,
// Nats-Batch-Commit), so a reader never sees part of one. A message on
// "fazt.ev.>" that is not a valid event (one published around the kernel)
// is reported by readers as a malformed entry at its sequence, never
// skipped silently and never the end of the log.
//
// Appends refuse data that is not valid UTF-8 (with the offset of the
// first bad byte), and metadata that a NATS header would not give back
// byte for byte: control characters (line breaks included), a leading or
// trailing space, invalid UTF-8, more than MaxMetaLen bytes.
//
// # The NATS listener
//
// The standard nats CLI can inspect the log when the embedded server
// listens (Listen, or fazt serve --nats-listen 127.0.0.1:4222):
//
//	nats stream info FAZT_EVENTS
//	nats stream ls
//	nats stream get FAZT_EVENTS 1
//	nats stream view FAZT_EVENTS --id 1
//
// The listener has no authentication, so it gives its clients reading and
// nothing else. They live in a NATS account of their own, without
// JetStream, which reaches the kernel's account (where the stream and the
// log's own connections are) only through imports of chosen subjects:
// direct gets of the event stream, and the JetStream API requests a
// reading tool makes, which an in-process guard answers. It passes on
// stream info, stream names and lists and message gets of the event
// stream, and lets a client create consumers on it within bounds: pull
// consumers only (a push consumer could deliver into fazt.ev.>), kept in
// memory, acknowledging nothing, removed by JetStream after at most an
// hour idle, at most 64 open at a time, under a name no consumer has and
// not beginning with reactor_ (the kernel's reactors). Clients may pull,
// inspect and delete only consumers made through the listener.
// Everything else is refused, most with a 403 that says why, the rest
// with no responders: creating, editing, sealing, purging, deleting or
// restoring streams (and so key-value and object stores), deleting
// messages, consumers that never go idle, push consumers, the kernel's
// consumers, acknowledgements ($JS.ACK), listing consumers,
// account requests, and publishing to fazt.ev.>. What a client can
// spend is bounded: each consumer name keeps a small import (about a
// kilobyte) until the process stops, so after 20,000 names (made at most
// 20 a second) the listener refuses new consumers until fazt restarts;
// and NATS keeps a route back for each request crossing accounts until
// it is answered, or for at most 70 seconds after the last message of
// a pull or batched get, so a client flooding requests costs memory in
// proportion to its rate, as with any NATS service import.
//
// ListenWritable (--nats-writable) adds one right: publishing to
// fazt.ev.>, which the stream stores and acknowledges. The log then
// guards every append against such writes (see Concurrency), and
// readers report a message without the envelope's headers as malformed.
// A writable listener still refuses every administrative verb. Another
// fazt process can use the log through it (URL): it finds the stream as
// it is, since the listener does not let it update the configuration.
//
// # Testing
//
// Tests of any package open a real log with package eventlogtest:
// eventlogtest.Open(t) starts one in t.TempDir() and closes it when the
// test ends.
package eventlog
