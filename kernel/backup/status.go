package backup

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
)

// Status is what the service reports: GET /v1/backup, fazt backup
// status, /metrics.
type Status struct {
	Enabled     bool            `json:"enabled"`
	Archive     string          `json:"archive,omitempty"`
	LogSeq      uint64          `json:"log_seq"`
	ArchivedSeq uint64          `json:"archived_seq"`
	LagEvents   uint64          `json:"lag_events"`
	LagSeconds  float64         `json:"lag_seconds"`
	LastError   string          `json:"last_error,omitempty"`
	LastErrorAt *time.Time      `json:"last_error_at,omitempty"`
	Replicas    []ReplicaStatus `json:"replicas"`
}

// ReplicaStatus is one replica's progress. CopiedSeq is the last event
// the replica holds; the lag is counted from the log's tail.
type ReplicaStatus struct {
	URL         string     `json:"url"`
	CopiedSeq   uint64     `json:"copied_seq"`
	LagEvents   uint64     `json:"lag_events"`
	LagSeconds  float64    `json:"lag_seconds"`
	LastSync    *time.Time `json:"last_sync,omitempty"`
	Syncs       uint64     `json:"syncs"`
	Errors      uint64     `json:"errors"`
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
}

// Status reports the archive's and each replica's progress. The lag in
// seconds is the age of the oldest event not copied yet (0 when none).
func (s *Service) Status(ctx context.Context) (Status, error) {
	st := Status{Enabled: s.Enabled(), Replicas: []ReplicaStatus{}}
	if !st.Enabled {
		return st, nil
	}
	st.Archive = s.cfg.Path
	tail, err := s.k.Log().LastSeq(ctx)
	if err != nil {
		return st, err
	}
	st.LogSeq = tail
	st.ArchivedSeq = s.archived.Load()
	st.LagEvents, st.LagSeconds = s.lag(ctx, st.ArchivedSeq, tail)
	s.mu.Lock()
	st.LastError = s.lastErr
	if s.lastErr != "" {
		at := s.errAt
		st.LastErrorAt = &at
	} else if s.stageErr != "" {
		st.LastError = s.stageErr
	}
	reps := s.replicas
	s.mu.Unlock()
	if reps == nil {
		for _, u := range s.cfg.Replicas {
			st.Replicas = append(st.Replicas, ReplicaStatus{URL: Redact(u), LagEvents: tail, LastError: "not started"})
		}
		return st, nil
	}
	for _, r := range reps {
		r.mu.Lock()
		rs := ReplicaStatus{URL: Redact(r.url), CopiedSeq: r.copied, Syncs: r.syncs, Errors: r.errs, LastError: r.lastErr}
		if !r.copiedAt.IsZero() {
			at := r.copiedAt
			rs.LastSync = &at
		}
		if r.lastErr != "" {
			at := r.lastErrAt
			rs.LastErrorAt = &at
		}
		r.mu.Unlock()
		rs.LagEvents, rs.LagSeconds = s.lag(ctx, rs.CopiedSeq, tail)
		st.Replicas = append(st.Replicas, rs)
	}
	return st, nil
}

// lag is how far seq is behind tail: in events, and the age of the
// first event after seq.
func (s *Service) lag(ctx context.Context, seq, tail uint64) (uint64, float64) {
	if seq >= tail {
		return 0, 0
	}
	p, err := s.k.Log().Read(ctx, seq, 1, eventlog.Filter{})
	if err != nil || len(p.Events) == 0 {
		return tail - seq, 0
	}
	return tail - seq, max(0, time.Since(p.Events[0].Time).Seconds())
}

func (s *Service) handleStatus(w http.ResponseWriter, r *http.Request) {
	if _, err := kernel.CheckQuery(r); err != nil {
		s.k.WriteError(w, r, err)
		return
	}
	st, err := s.Status(r.Context())
	if err != nil {
		s.k.WriteError(w, r, err)
		return
	}
	kernel.WriteJSON(w, http.StatusOK, st)
}

// VerifyResult is a restore drill's outcome: the replica's copy
// restored and compared with the live log over the events it holds.
type VerifyResult struct {
	Replica  string  `json:"replica"`
	OK       bool    `json:"ok"`
	Events   uint64  `json:"events"`
	LastSeq  uint64  `json:"last_seq"`
	Blobs    uint64  `json:"blobs"`
	Hash     string  `json:"hash"`
	LiveHash string  `json:"live_hash"`
	LogSeq   uint64  `json:"log_seq"`
	Problem  string  `json:"problem,omitempty"`
	Seconds  float64 `json:"seconds"`
}

// Verify restores the latest copy of a replica (the first when replica
// is "") into a temporary file, checks it (SQLite integrity, events
// gap-free from 1) and compares it with the live log: the count, the
// last sequence and a hash over the events (Hasher). OK says they
// match. Errors: ErrInvalid for a replica not configured,
// ErrUnavailable when the replica cannot be read.
func (s *Service) Verify(ctx context.Context, replica string) (VerifyResult, error) {
	start := time.Now()
	s.mu.Lock()
	urls := slices.Clone(s.cfg.Replicas)
	if s.started {
		urls = urls[:0]
		for _, r := range s.replicas {
			urls = append(urls, r.url)
		}
	}
	s.mu.Unlock()
	if len(urls) == 0 {
		return VerifyResult{}, fmt.Errorf("%w: backup is off: start the server with --backup URL, or add one with fazt backup add URL", eventlog.ErrInvalid)
	}
	u := urls[0]
	if replica != "" {
		u = ""
		for _, c := range urls {
			if c == replica || Redact(c) == replica {
				u = c
			}
		}
		if u == "" {
			return VerifyResult{}, fmt.Errorf("%w: no replica %s: fazt backup status lists them", eventlog.ErrInvalid, replica)
		}
	}
	res := VerifyResult{Replica: Redact(u)}
	tmp, err := os.MkdirTemp(filepath.Dir(s.cfg.Path), "verify-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)
	path := filepath.Join(tmp, ArchiveFile)
	if err := fetchArchive(ctx, u, path, time.Time{}, s.logger()); err != nil {
		return res, fmt.Errorf("%w: restore from %s: %w", eventlog.ErrUnavailable, Redact(u), err)
	}
	sum, err := Summarize(ctx, path, 0)
	if err != nil {
		res.Problem = err.Error()
		res.Seconds = time.Since(start).Seconds()
		return res, nil
	}
	res.Events, res.LastSeq, res.Hash, res.Blobs = sum.Events, sum.LastSeq, sum.Hash, sum.Blobs
	res.LogSeq, err = s.k.Log().LastSeq(ctx)
	if err != nil {
		return res, err
	}
	if res.LastSeq > res.LogSeq {
		res.Problem = fmt.Sprintf("the copy holds %d events, the log only %d: it is another log's", res.LastSeq, res.LogSeq)
	} else {
		live, err := HashLog(ctx, s.k.Log(), res.LastSeq)
		if err != nil {
			return res, err
		}
		res.LiveHash = live
		if live != res.Hash {
			res.Problem = "the copy's events differ from the log's"
		}
	}
	res.OK = res.Problem == ""
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// HashLog hashes the log's messages 1..upTo with Hasher.
func HashLog(ctx context.Context, l *eventlog.Log, upTo uint64) (string, error) {
	h := NewHasher()
	if upTo == 0 {
		return h.Sum(), nil
	}
	c, err := l.OpenCursor(ctx, 0, eventlog.Filter{})
	if err != nil {
		return "", err
	}
	defer c.Close()
	for h.Count() < upTo {
		ms, err := c.NextRaw(ctx, int(min(1000, upTo-h.Count())), 0)
		if err != nil {
			return "", err
		}
		if len(ms) == 0 {
			return "", fmt.Errorf("%w: the log ended at %d before %d", eventlog.ErrNotFound, h.Count(), upTo)
		}
		for _, m := range ms {
			h.AddRaw(m)
		}
	}
	return h.Sum(), nil
}

func (s *Service) handleVerify(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Replica string `json:"replica"`
	}
	if r.ContentLength != 0 {
		if err := kernel.DecodeJSON(w, r, &req); err != nil {
			s.k.WriteError(w, r, err)
			return
		}
	}
	res, err := s.Verify(r.Context(), req.Replica)
	if err != nil {
		s.k.WriteError(w, r, err)
		return
	}
	kernel.WriteJSON(w, http.StatusOK, res)
}

// doctor is the service's part of fazt doctor: the archive and each
// replica, with their lag and last error.
func (s *Service) doctor(ctx context.Context) []kernel.Check {
	if !s.Enabled() {
		return nil // off by choice: nothing to check
	}
	st, err := s.Status(ctx)
	if err != nil {
		return []kernel.Check{{Name: "backup", Status: kernel.CheckFail, Detail: err.Error(), Fix: "check that the log is open"}}
	}
	out := []kernel.Check{{Name: "backup archive", Status: kernel.CheckOK,
		Detail: fmt.Sprintf("%s: seq %d of %d, lag %d events, %.1fs", st.Archive, st.ArchivedSeq, st.LogSeq, st.LagEvents, st.LagSeconds)}}
	if st.LastError != "" {
		out[0].Status, out[0].Detail = kernel.CheckFail, out[0].Detail+"; "+st.LastError
		out[0].Fix = "copying stopped at the error above; it is retried by itself: fix its cause (see the server's log)"
	}
	for _, r := range st.Replicas {
		c := kernel.Check{Name: "backup replica " + r.URL, Status: kernel.CheckOK,
			Detail: fmt.Sprintf("seq %d, lag %d events, %.1fs", r.CopiedSeq, r.LagEvents, r.LagSeconds)}
		switch {
		case r.LastError != "":
			c.Status, c.Detail = kernel.CheckFail, c.Detail+"; last error: "+r.LastError
			c.Fix = "make the replica reachable and writable (folder permissions, S3 endpoint and credentials); it catches up by itself"
		case r.LagSeconds > 60:
			c.Status, c.Fix = kernel.CheckWarn, "the replica is more than a minute behind: check the server's log and the target's speed"
		}
		out = append(out, c)
	}
	return out
}

// collector exports Status to /metrics.
type collector struct{ s *Service }

var (
	descArchived    = prometheus.NewDesc("fazt_backup_archived_seq", "The last event sequence the backup archive holds.", nil, nil)
	descArchiveLag  = prometheus.NewDesc("fazt_backup_archive_lag_events", "Events in the log not in the backup archive yet.", nil, nil)
	descCopied      = prometheus.NewDesc("fazt_backup_replica_copied_seq", "The last event sequence a backup replica holds.", []string{"replica"}, nil)
	descLagEvents   = prometheus.NewDesc("fazt_backup_replica_lag_events", "Events in the log not copied to a backup replica yet.", []string{"replica"}, nil)
	descLagSeconds  = prometheus.NewDesc("fazt_backup_replica_lag_seconds", "Age of the oldest event not copied to a backup replica (0 when none).", []string{"replica"}, nil)
	descErrors      = prometheus.NewDesc("fazt_backup_replica_errors_total", "Failed syncs of a backup replica.", []string{"replica"}, nil)
	descReplicaDown = prometheus.NewDesc("fazt_backup_replica_failing", "1 while a backup replica's last sync failed.", []string{"replica"}, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descArchived, descArchiveLag, descCopied, descLagEvents, descLagSeconds, descErrors, descReplicaDown} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	if !c.s.Enabled() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.s.Status(ctx)
	if err != nil && !errors.Is(err, eventlog.ErrClosed) {
		return
	}
	ch <- prometheus.MustNewConstMetric(descArchived, prometheus.GaugeValue, float64(st.ArchivedSeq))
	ch <- prometheus.MustNewConstMetric(descArchiveLag, prometheus.GaugeValue, float64(st.LagEvents))
	for _, r := range st.Replicas {
		ch <- prometheus.MustNewConstMetric(descCopied, prometheus.GaugeValue, float64(r.CopiedSeq), r.URL)
		ch <- prometheus.MustNewConstMetric(descLagEvents, prometheus.GaugeValue, float64(r.LagEvents), r.URL)
		ch <- prometheus.MustNewConstMetric(descLagSeconds, prometheus.GaugeValue, r.LagSeconds, r.URL)
		ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(r.Errors), r.URL)
		failing := 0.0
		if r.LastError != "" {
			failing = 1
		}
		ch <- prometheus.MustNewConstMetric(descReplicaDown, prometheus.GaugeValue, failing, r.URL)
	}
}
