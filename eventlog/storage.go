package eventlog

import (
	"cmp"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/nats-io/nats-server/v2/server"
)

// Storage limits of the embedded server. JetStream on its own caps its
// storage at 75% of the space that was free when it started and never
// looks again, and when the disk really fills it disables itself until a
// restart. The log instead keeps a reserve of free space that appends
// never eat into, refuses appends below it with ErrInsufficientStorage
// (nothing written), and takes them again as soon as space returns.
const (
	// DefaultDiskReserve is the free space appends leave on the log's file
	// system: room for the read models to catch up, for SQLite's WAL and
	// for JetStream's own bookkeeping.
	DefaultDiskReserve = 64 << 20
	// noStoreLimit is the limit JetStream is given: in effect none. The
	// log enforces MaxStore and the reserve itself (see checkSpace).
	noStoreLimit = 1 << 60
	// spaceCheckEvery bounds how stale the free space an append is checked
	// against may be. At the log's top speed (about 30 MB/s) that is a few
	// megabytes, well inside the reserve.
	spaceCheckEvery = 100 * time.Millisecond
	// storedOverhead is about what JetStream stores per event besides its
	// data (subject, envelope headers, record framing), so that the bytes
	// counted between two measures are not under the truth.
	storedOverhead = 256
)

// StorageStatus is what the log knows of its storage, for doctor,
// metrics and readiness.
type StorageStatus struct {
	// Dir is the directory whose file system holds the log.
	Dir string `json:"dir,omitempty"`
	// Checked is false when the log cannot see its storage (an external
	// NATS server, or a platform without statfs).
	Checked bool `json:"checked"`
	// Free is the space available on the file system, as last measured.
	Free uint64 `json:"free_bytes"`
	// Reserve is the free space appends leave alone (DiskReserve).
	Reserve uint64 `json:"reserve_bytes"`
	// Used is what the event stream occupies; Limit is the JetStream
	// storage limit (0: none but the disk).
	Used  uint64 `json:"used_bytes"`
	Limit uint64 `json:"limit_bytes,omitempty"`
	// Refusing is set while appends are refused for lack of storage;
	// Reason says why and what to do.
	Refusing bool   `json:"refusing"`
	Reason   string `json:"reason,omitempty"`
	// Refusals counts appends refused for lack of storage since Open.
	Refusals uint64 `json:"refusals"`
	// JetStreamStopped is set when the embedded server stopped writing
	// after a write failed for lack of space; the log restarts JetStream
	// once space returns.
	JetStreamStopped bool `json:"jetstream_stopped,omitempty"`
}

// space tracks the free space of the log's file system.
type space struct {
	mu          sync.Mutex
	at          time.Time
	free        uint64
	ok          bool   // free was measured
	refusing    string // why appends are refused; "" when they are not
	refusals    uint64
	refused     string // the last refusal, until an append passes or would
	refusedSize uint64
	used        uint64    // the stream's bytes, when MaxStore is set
	since       uint64    // bytes of data appended since the last measure
	reenable    time.Time // last attempt to restart JetStream
	broken      string    // JetStream is off or the stream stopped writing
}

// storeDir is the directory the embedded server keeps its files in
// (also once it is shut down).
func (l *Log) storeDir() string {
	if l.srv == nil {
		return ""
	}
	if cfg := l.srv.JetStreamConfig(); cfg != nil {
		return cfg.StoreDir
	}
	return filepath.Join(l.Dir, server.JetStreamStoreDir)
}

// checkSpace refuses an append of size bytes when the free space is
// below the reserve or the log would grow past MaxStore. It measures at
// most every spaceCheckEvery and counts what was appended in between.
//
// The log enforces MaxStore itself, before anything is sent, instead of
// giving JetStream the limit: JetStream checks its limit message by
// message, and an atomic batch that reaches it is stored in part.
func (l *Log) checkSpace(now time.Time, size int) error {
	if l.srv == nil {
		return nil // an external server guards its own storage
	}
	s := &l.space
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.at) >= spaceCheckEvery {
		l.measureLocked(now)
	}
	if s.refusing == "" && l.MaxStore > 0 && s.used+s.since+uint64(size) > uint64(l.MaxStore) {
		return s.refuse(size, fmt.Sprintf("the event log holds %s and this append would take it past its storage limit of %s (--store-limit); raise the limit",
			humanize.IBytes(s.used+s.since), humanize.IBytes(uint64(l.MaxStore))))
	}
	if s.refusing != "" {
		return s.refuse(size, s.refusing)
	}
	// What was appended since the measure is not in it yet.
	if s.ok && l.DiskReserve >= 0 && s.free < s.since+uint64(size)+uint64(l.DiskReserve) {
		l.measureLocked(now)
		if s.refusing != "" || s.free < uint64(size)+uint64(l.DiskReserve) {
			return s.refuse(size, l.reserveMessage(s.free))
		}
	}
	s.since += uint64(size)
	s.refused = ""
	return nil
}

// refuse counts a refusal and remembers it until an append passes.
func (s *space) refuse(size int, msg string) error {
	s.refusals++
	s.refused, s.refusedSize = msg, uint64(size)
	return &StorageError{msg: msg}
}

// measureLocked reads the free space and the stream's size and decides
// whether appends are refused. s.mu is held.
func (l *Log) measureLocked(now time.Time) {
	s := &l.space
	s.at, s.since = now, 0
	if l.MaxStore > 0 {
		if used, ok := l.streamBytes(); ok {
			s.used = used
		}
	}
	free, ok := freeBytes(l.storeDir())
	s.free, s.ok = free, ok
	switch {
	case ok && l.DiskReserve >= 0 && free < uint64(l.DiskReserve):
		s.refusing = l.reserveMessage(free)
	default:
		s.refusing = ""
	}
	// The last refused append would fit now: appends are no longer refused.
	if s.refused != "" && s.refusing == "" && (!ok || l.DiskReserve < 0 || free >= s.refusedSize+uint64(l.DiskReserve)) &&
		(l.MaxStore <= 0 || s.used+s.refusedSize <= uint64(l.MaxStore)) {
		s.refused = ""
	}
}

func (l *Log) reserveMessage(free uint64) string {
	return fmt.Sprintf("the disk holding %s has %s free, and the log keeps a reserve of %s; free some space (appends resume by themselves) or lower --disk-reserve",
		l.Dir, humanize.IBytes(free), humanize.IBytes(uint64(l.DiskReserve)))
}

// streamBytes is what the log's account occupies in JetStream file
// storage (the event stream, and whatever else services keep there),
// from the embedded server directly (no round trip).
func (l *Log) streamBytes() (uint64, bool) {
	acc, err := l.srv.LookupAccount(l.accountName())
	if err != nil || !acc.JetStreamEnabled() {
		return 0, false
	}
	return acc.JetStreamUsage().Store, true
}

// watchStorage measures the free space every second, so that status and
// readiness are current while nobody appends, and turns JetStream back on
// when the embedded server disabled it after running out of space.
func (l *Log) watchStorage() {
	defer l.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case now := <-t.C:
			l.space.mu.Lock()
			l.measureLocked(now)
			l.space.mu.Unlock()
			l.reenableJetStream(now)
		}
	}
}

// reenableJetStream restarts JetStream in the embedded server when a
// write failed for lack of space and there is room again above the
// reserve. Such a failure is sticky in JetStream: the stream (or the
// whole of JetStream) refuses every later write, unanswered, until it is
// restarted, which recovers the stream from its files like a restart of
// the process would.
func (l *Log) reenableJetStream(now time.Time) {
	if l.srv == nil {
		return
	}
	broken := ""
	if !l.srv.JetStreamEnabled() {
		broken = "JetStream is off"
	} else if h := l.srv.Healthz(&server.HealthzOptions{Account: l.accountName(), Stream: l.StreamName}); h != nil && strings.Contains(h.Error, "write error") {
		broken = h.Error
	}
	l.space.mu.Lock()
	l.space.broken = broken
	room := l.space.ok && l.space.refusing == ""
	due := now.Sub(l.space.reenable) >= 5*time.Second
	if broken != "" && room && due {
		l.space.reenable = now
	}
	l.space.mu.Unlock()
	if broken == "" || !room || !due {
		return
	}
	l.Logger.Warn("the event stream stopped writing after a write failed (the disk was full); restarting JetStream now that there is room", "dir", l.Dir, "reason", broken)
	if l.srv.JetStreamEnabled() {
		if err := l.srv.ShutdownJetStream(); err != nil {
			l.Logger.Error("JetStream could not be stopped for a restart", "err", err)
			return
		}
	}
	cfg := &server.JetStreamConfig{StoreDir: l.Dir, MaxStore: noStoreLimit, SyncInterval: l.syncInterval(), Strict: true}
	err := l.srv.EnableJetStream(cfg)
	// With a listener's account configured, the server does not turn
	// JetStream on in the kernel's (global) account by itself.
	if acc := l.srv.GlobalAccount(); err == nil && !acc.JetStreamEnabled() {
		err = acc.EnableJetStream(nil, nil)
	}
	if err != nil {
		l.Logger.Error("JetStream could not be restarted; appends keep failing until it is (or fazt is restarted)", "err", err)
		return
	}
	l.stale.Store(true) // the view may predate what the failure lost
	l.Logger.Info("JetStream restarted: the event log takes appends again")
}

// syncInterval is the server's sync interval: strict logs fsync each
// group themselves, so the server's periodic sync is left at its default.
func (l *Log) syncInterval() time.Duration {
	if l.Durability == Relaxed {
		return l.SyncInterval
	}
	return 0
}

// Storage reports the log's storage: free space, reserve, use, limit, and
// whether appends are being refused for lack of it.
func (l *Log) Storage() StorageStatus {
	st := StorageStatus{Dir: l.Dir, Reserve: uint64(max(l.DiskReserve, 0))}
	if l.MaxStore > 0 {
		st.Limit = uint64(l.MaxStore)
	}
	if l.srv == nil {
		return st
	}
	l.space.mu.Lock()
	if !l.space.ok || time.Since(l.space.at) > 2*time.Second {
		l.measureLocked(time.Now())
	}
	st.Checked, st.Free = l.space.ok, l.space.free
	st.Refusals = l.space.refusals
	st.Reason = cmp.Or(l.space.refusing, l.space.refused)
	broken := l.space.broken
	l.space.mu.Unlock()
	if st.Reason == "" && broken != "" {
		st.Reason = "the event stream stopped writing after the disk filled up (" + broken + "); the log restarts it once there is room above the reserve"
		st.JetStreamStopped = true
	}
	st.Refusing = st.Reason != ""
	if used, ok := l.streamBytes(); ok {
		st.Used = used
	}
	return st
}

// StorageError is an append refused for lack of storage
// (ErrInsufficientStorage): nothing of it was written.
type StorageError struct{ msg string }

func (e *StorageError) Error() string { return e.msg }

// Is makes errors.Is(err, ErrInsufficientStorage) true.
func (e *StorageError) Is(target error) bool { return target == ErrInsufficientStorage }

// accountName is the embedded server's account that holds the stream.
func (l *Log) accountName() string { return l.srv.GlobalAccount().Name }
