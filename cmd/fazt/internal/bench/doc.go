// Package bench is `fazt bench`: the kernel measured against its raw
// ingredients, in one run, on the machine it runs on.
//
// Absolute figures drift between machines and between runs on a shared
// one; ratios drift much less. So every kernel figure is reported next to
// the raw ingredient it is built from, measured in the same run, with
// raw and kernel rounds alternated and medians taken:
//
//  1. append, relaxed, vs JetStream async publish of the same payload;
//  2. append, strict, at several concurrent callers, vs JetStream
//     publish with an fsync per message (sync_always);
//  3. a projection's catch-up and full rebuild vs the slower of a
//     JetStream ordered-consumer replay and a batched SQLite insert of
//     the same rows; and the same for the analytics vertical's read
//     model, rebuilt from realistic page views (see analyticsbench);
//  4. append to visible in the read model: the highest closed-loop
//     rate, then paced open-loop at 1,000 events/s and at 50% and 80% of
//     that maximum, each latency taken from the event's scheduled send
//     time;
//  5. read-only queries through the runner vs SELECTs on SQLite;
//  6. start-up (exec to log open and projection caught up) with a
//     projected log, and again after SIGKILL in the middle of appends,
//     vs a bare JetStream server recovering the same store. It runs in a
//     child process: the program re-executed, running RunChild;
//  7. static serving: a kernel with the vfs service and the hosting
//     vertical, as the binary registers them, a site deployed through
//     the deploy API, and its 9 KiB and 1 MiB files fetched over 32
//     keep-alive connections from the kernel's listener (Host
//     NAME.localhost), vs http.FileServer and, when nginx is on PATH, an
//     nginx child serving the same files from disk. The bar
//     (wrk and the server on separate cores) is testdata/wrk-serving.sh.
//
// The kernel is an eventlog.Log on its embedded server and a
// projections.Runner folding one counting projection; raw JetStream is a
// second embedded server with a stream configured like the log's; raw
// SQLite is a file opened with sqlitedb, as the runner opens its own.
// Each scenario works in its own directory under a temporary one, removed
// at the end, and reports its peak resident memory.
//
// # Usage
//
//	rep, err := bench.Run(ctx, bench.Config{
//		Duration: 500 * time.Millisecond, Rounds: 3,
//		Sizes: []int{256, 4096}, Callers: []int{1, 16, 64, 256},
//		Events: 200_000, RebuildEvents: 50_000,
//		Child: func(ctx context.Context, args []string) *exec.Cmd {
//			// this program, running bench.RunChild(ctx, cfg, stdin, stdout)
//			return exec.CommandContext(ctx, self, append([]string{"bench", "child"}, args...)...)
//		},
//		Progress: os.Stderr,
//	})
//	rep.WriteTable(os.Stdout) // or rep.WriteJSON
//
// From the command line:
//
//	fazt bench                                  # every scenario, defaults
//	fazt bench --scenarios 1,2 --rounds 5       # some of them, more rounds
//	fazt bench --scenarios 6 --events 1M        # start-up with a million events
//	fazt bench --scenarios 7 --duration 1s      # static serving vs nginx
//	fazt bench --dir . --json                   # the disk of the current directory; JSON out
package bench
