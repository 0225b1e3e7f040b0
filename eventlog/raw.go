package eventlog

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RawMessage is a message of the event stream as JetStream stores it:
// everything needed to store it again, valid event or not. Backups copy
// the log in this form (Cursor.NextRaw) and restores write it back
// (Import).
type RawMessage struct {
	Seq     uint64      // JetStream's stream sequence
	Subject string      // "fazt.ev.<stream>"
	Header  nats.Header // the headers stored in the message
	Data    []byte      // the body
	Time    time.Time   // JetStream's timestamp of the message
}

// HeaderBytes encodes the headers the way NATS carries them
// ("NATS/1.0\r\n", "Key: value\r\n" lines, "\r\n"), keys sorted and each
// key's values in order, so equal headers always encode the same. It is
// nil when there are none.
func (m *RawMessage) HeaderBytes() []byte { return EncodeHeader(m.Header) }

// EncodeHeader encodes h as HeaderBytes does.
func EncodeHeader(h nats.Header) []byte {
	if len(h) == 0 {
		return nil
	}
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b bytes.Buffer
	b.WriteString("NATS/1.0\r\n")
	for _, k := range keys {
		for _, v := range h[k] {
			b.WriteString(k)
			b.WriteString(": ")
			b.WriteString(v)
			b.WriteString("\r\n")
		}
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// DecodeHeader reads what EncodeHeader (or NATS) wrote. Keys keep their
// case. Empty input is no headers.
func DecodeHeader(b []byte) (nats.Header, error) {
	if len(b) == 0 {
		return nil, nil
	}
	rest, ok := bytes.CutPrefix(b, []byte("NATS/1.0"))
	if !ok {
		return nil, invalidf("header block does not start with NATS/1.0")
	}
	lines := strings.Split(string(rest), "\r\n")
	h := nats.Header{}
	for i, line := range lines {
		if i == 0 || line == "" {
			continue // the status line's rest; the blank end
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, invalidf("header line %q: no colon", line)
		}
		h[k] = append(h[k], strings.TrimLeft(v, " \t"))
	}
	return h, nil
}

// NextRaw returns up to limit messages after Pos as stored, malformed
// or not, like NextUpTo but undecoded: the form a backup copies. The
// slice is shorter than limit when the cursor reached the end of the
// log as it was when the last message was delivered; the cursor must
// have no filter.
func (c *Cursor) NextRaw(ctx context.Context, limit, maxBytes int) ([]RawMessage, error) {
	if limit <= 0 {
		return nil, invalidf("limit %d: want a positive number", limit)
	}
	if len(c.f.Categories) > 0 || len(c.f.Types) > 0 {
		return nil, invalidf("NextRaw reads the whole log: open the cursor without a filter")
	}
	var out []RawMessage
	size := 0
	for len(out) < limit && (maxBytes <= 0 || size < maxBytes) {
		m, md, err := c.next(ctx)
		if err != nil || m == nil {
			return out, err
		}
		out = append(out, RawMessage{
			Seq:     md.Sequence.Stream,
			Subject: m.Subject(),
			Header:  m.Headers(),
			Data:    m.Data(),
			Time:    md.Timestamp,
		})
		c.pos = md.Sequence.Stream
		size += len(m.Data())
		if c.ended {
			break
		}
	}
	return out, nil
}

// ObjectStream returns the JetStream stream that holds an object store
// bucket (opening the bucket as ObjectStore does), for readers that
// follow what is put into it in order, such as backups. Errors:
// ErrClosed, ErrUnavailable.
func (l *Log) ObjectStream(ctx context.Context, bucket string) (jetstream.Stream, error) {
	if _, err := l.ObjectStore(ctx, bucket); err != nil {
		return nil, err
	}
	o := &l.objects
	o.mu.Lock()
	js := o.js
	o.mu.Unlock()
	if js == nil {
		return nil, ErrClosed
	}
	s, err := js.Stream(ctx, "OBJ_"+bucket)
	if err != nil {
		return nil, fmt.Errorf("%w: object store %s: %w", ErrUnavailable, bucket, err)
	}
	return s, nil
}

// Import writes messages into the event stream of a log that does not
// exist yet in l.Dir, each with its own sequence, subject, headers, data
// and time, exactly: the restore of a backup. next returns the messages
// in order, then ok false. Sequences must run 1, 2, 3, ... without a
// gap (ErrInvalid otherwise). Call it on a Log made by New and not
// opened; it starts the embedded server alone, stores the messages
// through JetStream's store (JetStream's publish path would give them
// new times), fsyncs them and shuts the server down. Open the log
// afterwards as usual. Only with the embedded server (no URL).
//
// Errors: ErrConflict when l.Dir already holds the event stream (restore
// into a new directory), ErrInvalid for a message out of order.
func (l *Log) Import(ctx context.Context, next func() (RawMessage, bool, error)) (last uint64, err error) {
	if l.URL != "" {
		return 0, invalidf("import needs the embedded server: restore into a data directory, not into %s", l.URL)
	}
	if l.srv != nil || l.nc != nil {
		return 0, invalidf("import into a log that is not open")
	}
	if l.Cluster != nil {
		return 0, invalidf("import into a single node: restore into a new data directory without --cluster")
	}
	srv, err := startEmbedded(l.Dir, "", false, Strict, l.SyncInterval, noStoreLimit, l.StreamName, nil, rand.Text(), rand.Text(), nil)
	if err != nil {
		return 0, err
	}
	acc := srv.GlobalAccount()
	streamDir := filepath.Join(srv.JetStreamConfig().StoreDir, acc.Name, "streams", l.StreamName)
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
		if err == nil {
			err = syncTree(streamDir)
		}
	}()
	if _, err := os.Stat(streamDir); err == nil {
		return 0, fmt.Errorf("%w: %s already holds an event log: restore into a new, empty data directory", ErrConflict, l.Dir)
	}
	// The stream is made by JetStream's own restore, from a snapshot
	// that holds only its configuration: that is the way to a stream
	// whose store takes messages with their sequence and time.
	var cfg server.StreamConfig
	b, _ := json.Marshal(l.streamConfig())
	if err := json.Unmarshal(b, &cfg); err != nil {
		return 0, fmt.Errorf("stream configuration: %w", err)
	}
	meta, _ := json.Marshal(server.FileStreamInfo{Created: time.Now().UTC(), StreamConfig: cfg})
	var snap bytes.Buffer
	zw := s2.NewWriter(&snap)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: server.JetStreamMetaFile, Mode: 0o600, Size: int64(len(meta)), Typeflag: tar.TypeReg}); err != nil {
		return 0, err
	}
	tw.Write(meta)
	tw.Close()
	zw.Close()
	mset, err := acc.RestoreStream(&cfg, &snap)
	if err != nil {
		return 0, fmt.Errorf("create the event stream: %w", err)
	}
	store := mset.Store()
	for {
		if err := ctx.Err(); err != nil {
			return last, err
		}
		m, ok, err := next()
		if err != nil {
			return last, err
		}
		if !ok {
			break
		}
		if m.Seq != last+1 {
			return last, invalidf("message %d follows %d: a restore must be gap-free", m.Seq, last)
		}
		if m.Time.IsZero() {
			return last, invalidf("message %d has no time", m.Seq)
		}
		if err := store.StoreRawMsg(m.Subject, m.HeaderBytes(), m.Data, m.Seq, m.Time.UnixNano(), 0, false); err != nil {
			return last, fmt.Errorf("store message %d: %w", m.Seq, err)
		}
		last = m.Seq
	}
	return last, nil
}

// syncTree fsyncs every file and folder under dir.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
}
