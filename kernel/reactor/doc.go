// Package reactor runs reactors: durable consumers of the event log that
// perform side effects. Every service of the kernel (the edge, the file
// system for sites, backup, provisioning) is a reactor, and so is any
// part of a vertical that acts on the world.
//
// # Overview
//
// A reactor acts on the world when events happen: issue a certificate
// when a route is bound, materialise files, replicate a backup, send a
// mail. Where a projection (package projections) folds events into a
// read model that can be thrown away and rebuilt, a reactor's effects
// cannot be taken back, so it must never act twice by accident and
// never be re-run by a rebuild: reactors have their own JetStream
// consumers, separate from projections, and rebuilding a projection does
// not touch them.
//
// A [Reactor] describes one: a name, a filter, and a Handle function
// called for each matching event with an idempotency key. [Start] runs
// it and returns its [Runner]; [Runner.Status] reports its progress and
// the events it gave up on ([Parked]); [Runner.RetryParked] tries one of
// those again; [Delete] removes its durable consumer so that the next
// start begins afresh.
//
// # Usage
//
// A vertical or a service registers its reactors with the kernel before
// Open; the kernel starts them once the projections are open, stops them
// before the projections at Close, gives each the writer of the reserved
// category [Category], registers the event types they write, and serves
// their status and retries (GET /v1/reactors, POST
// /v1/reactors/{name}/retry, `fazt reactors status|retry`, doctor and
// /metrics):
//
//	err := k.RegisterReactor(reactor.Reactor{
//		Name:   "certs",
//		Filter: eventlog.Filter{Categories: []string{"routes"}, Types: []string{"routes.bound"}},
//		Handle: func(ctx context.Context, e eventlog.Event, key string) error {
//			return issueCertificate(ctx, e, key) // key dedupes the side effect
//		},
//	})
//
// Without a kernel, start one on an open log and stop it when done:
//
//	run, err := reactor.Start(ctx, log, reactor.Reactor{Name: "certs", Filter: f, Handle: issue})
//	defer run.Stop(ctx)
//	st, err := run.Status(ctx) // pending, position, parked events and why
//
// The rules for writing a reactor:
//
//   - Make the side effect idempotent with the key. Handle is called at
//     least once per event: after a crash, a timeout or a failed
//     acknowledgement the same event comes again, with the same key (the
//     event's ID). Pass it on where the world accepts one (an idempotency
//     header, a file named by it), or remember what was done under it.
//   - Return an error to try again later; do not retry inside Handle.
//     The reactor waits Backoff between attempts and parks the event
//     after MaxAttempts, visibly, instead of blocking forever.
//   - Honour ctx: it is cancelled when Stop gives up waiting, and the
//     event then comes again.
//   - Use the same Name on every node and keep it: it names the durable
//     consumer, which remembers where the reactor is.
//   - Read the state a decision needs from the event or from a read
//     model, never from the reactor's memory: another node, or this one
//     after a restart, handles the next event.
//
// # Delivery
//
// Each reactor is a durable JetStream pull consumer named
// "reactor_<name>" ([ConsumerName]) on the event stream, with explicit
// acks, filtered on the subjects of the Filter's categories
// (eventlog.CategorySubject, or the whole log when it names none); types
// are filtered here, and events of other types are acknowledged without
// calling Handle. Handle receives every matching event at least once,
// one at a time, in log order; the key is the event's ID, the same on
// every redelivery. An event is acknowledged only after Handle returns
// nil. The consumer allows one unacknowledged event at a time, so while
// an event is being retried the events after it wait: side effects keep
// their order (a route bound then unbound), at the price of head-of-line
// blocking during the backoff. While Handle runs, the reactor tells
// JetStream every AckWait/3 that it is still working, so a slow handler
// is not redelivered elsewhere.
//
// # Retries and parking
//
// When Handle fails (or panics) the event is redelivered after the next
// Backoff delay; attempts are JetStream's delivery count of the event.
// After MaxAttempts failed attempts the event is parked: a kernel event
// [TypeEventParked] ("reactors.event_parked") with the reason is
// appended to the stream "reactors.<name>" ([Stream]), so it survives
// restarts and is visible on every node, and the message is terminated
// so that JetStream stops redelivering it; the events after it flow
// again. [Runner.Status] lists parked events with the reason, read back
// from that stream. [Runner.RetryParked] calls Handle again for one
// parked event and, when it succeeds, records [TypeEventUnparked]. A
// message in the log that is not a valid event (eventlog.ErrMalformed)
// is parked at once. A reactor never receives the records of its own
// stream (a reactor without a category filter could otherwise loop on
// its own parked records); another reactor may watch them.
//
// The records live in the category [Category] ("reactors"), which the
// kernel reserves (eventlog.Log.Reserve) and whose writer it gives to
// Reactor.Writer: an ordinary append there is refused, so no one can
// park or unpark an event by writing a record of their own. Records in
// a reactor's stream that cannot be read (published around the kernel)
// are logged, listed in Status.Unreadable and passed over, never an
// obstacle to a start. The kernel registers the records' schemas
// ([EventParkedSchema], [EventUnparkedSchema]); the committed schema
// ledger holds them.
//
// # Where a new reactor starts
//
// A reactor started for the first time (no durable consumer of that name
// yet) handles the events appended from then on, not the history: side
// effects must not replay the past by default. Set FromBeginning to
// handle the whole log instead. Either way the choice is made once, when
// the durable is created; later starts resume after the last
// acknowledged event, whatever FromBeginning says. [Delete] removes the
// durable, so that the next start chooses again. Changing the categories
// of an existing reactor changes its filter from about its current
// position on: the history of a category added later is not replayed,
// and whether its events appended between the last handled event and the
// change are delivered depends on how far JetStream had scanned.
//
// # Cluster
//
// Every node starts the same reactor under the same name, so they bind
// the same durable consumer and JetStream gives each event to one of
// them. The one-unacknowledged-event rule holds across nodes too.
//
// # Stopping
//
// [Runner.Stop] stops fetching, lets the handler call in flight finish
// and acknowledges it; an event fetched but not yet started is returned
// to JetStream at once. If Stop's context ends first, the handler's
// context is cancelled and the unfinished event is redelivered later
// (after AckWait), which the key makes harmless.
package reactor
