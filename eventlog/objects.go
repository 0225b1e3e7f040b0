package eventlog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// objectStores are the JetStream object store buckets opened on the log
// (see ObjectStore).
type objectStores struct {
	mu      sync.Mutex
	pass    string // the log's writer password, for the buckets' own connection
	nc      *nats.Conn
	js      jetstream.JetStream
	syncers map[string]*dirSyncer // by bucket, under strict durability
	// kvSyncers are syncers of the key-value buckets (kv.go), by bucket.
	kvSyncers map[string]*dirSyncer
}

// connectBuckets opens the buckets' connection if it is not open yet;
// o.mu is held.
func (l *Log) connectBuckets() error {
	o := &l.objects
	if o.js != nil {
		return nil
	}
	nc := l.nc
	if l.srv != nil {
		var err error
		nc, err = nats.Connect("", nats.InProcessServer(l.srv), nats.Name("fazt-objects"), nats.MaxReconnects(-1), nats.UserInfo(writerUser, o.pass))
		if err != nil {
			return fmt.Errorf("connect to nats for object stores and key-value buckets: %w", err)
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		if nc != l.nc {
			nc.Close()
		}
		return err
	}
	o.nc, o.js = nc, js
	return nil
}

// lockBuckets returns the buckets' JetStream handle, connecting first,
// with l.objects.mu held: the caller unlocks it. Errors: ErrClosed.
func (l *Log) lockBuckets() (jetstream.JetStream, error) {
	l.mu.Lock()
	closed := l.closed || l.nc == nil
	l.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	o := &l.objects
	o.mu.Lock()
	if err := l.connectBuckets(); err != nil {
		o.mu.Unlock()
		return nil, err
	}
	return o.js, nil
}

// ObjectStore opens the JetStream object store bucket on the log's NATS
// server, creating it when it does not exist: file storage, the log's
// Replicas, no limits. Services keep large immutable contents there (the
// vfs service's file blobs) beside the events that name them.
//
// With the embedded server the buckets have a connection of their own,
// as the log's writer (so uploads do not queue ahead of the log's
// acknowledgements); NATS listener clients can neither write nor read
// them (their account reaches only the event stream). With URL, the
// log's connection is used.
//
// Writes to a bucket are as durable as the server's settings make them:
// under Strict durability with the embedded server, call SyncObjectStore
// after writing and before appending an event that names what was
// written. Errors: ErrClosed before Open or after Close.
func (l *Log) ObjectStore(ctx context.Context, bucket string) (jetstream.ObjectStore, error) {
	js, err := l.lockBuckets()
	if err != nil {
		return nil, err
	}
	o := &l.objects
	defer o.mu.Unlock()
	store, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      bucket,
		Description: "Fazt object store: immutable contents named by the events of the log",
		Storage:     jetstream.FileStorage,
		Replicas:    l.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", bucket, err)
	}
	l.registerSyncer(&o.syncers, bucket, "OBJ_"+bucket)
	return store, nil
}

// SyncObjectStore makes everything written to the bucket so far durable
// before it returns. Under Strict durability with the embedded server it
// fsyncs the bucket's stream's message blocks written since the last
// call (the first call: all of them), and their folder when a block
// appeared, the way the log fsyncs
// each group of appends: the server writes every acknowledged message
// to its block file at once, so after the acknowledgement an fsync
// makes it durable. Concurrent calls share fsyncs (a call is covered
// by an fsync that began after it). Under Relaxed durability the server fsyncs every
// SyncInterval; with URL durability is that server's business: both
// return nil at once. The bucket must have been opened with ObjectStore.
func (l *Log) SyncObjectStore(bucket string) error {
	return l.syncBucket(&l.objects.syncers, bucket)
}

// registerSyncer keeps the fsyncer of a bucket's stream, under Strict
// durability with the embedded server on one node (clustered, every
// server fsyncs each write itself: sync_interval always). Call it with
// l.objects.mu held. The first sync covers every block, also those an
// earlier process wrote and may not have fsynced before it ended
// (fsyncing a block with nothing unwritten is cheap).
func (l *Log) registerSyncer(m *map[string]*dirSyncer, bucket, stream string) {
	if l.srv == nil || l.Durability != Strict || l.Cluster != nil {
		return
	}
	if *m == nil {
		*m = map[string]*dirSyncer{}
	}
	if (*m)[bucket] == nil {
		dir := filepath.Join(l.srv.JetStreamConfig().StoreDir, l.accountName(), "streams", stream, "msgs")
		(*m)[bucket] = &dirSyncer{dir: dir, from: 1}
	}
}

// syncBucket runs the fsyncer of bucket in *m, if there is one.
func (l *Log) syncBucket(m *map[string]*dirSyncer, bucket string) error {
	o := &l.objects
	o.mu.Lock()
	s := (*m)[bucket]
	o.mu.Unlock()
	if s == nil {
		return nil
	}
	return s.sync()
}

// closeObjects closes the buckets' own connection.
func (l *Log) closeObjects() {
	o := &l.objects
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.nc != nil && o.nc != l.nc {
		o.nc.Close()
	}
	o.nc, o.js = nil, nil
}

// dirSyncer fsyncs the message blocks of one stream from a block on.
// Concurrent callers share fsyncs: a call returns without one when an
// fsync that began after the call did has completed.
type dirSyncer struct {
	calls   atomic.Uint64 // calls so far
	mu      sync.Mutex
	covered uint64 // the calls whose writes an fsync covered
	dir     string
	from    int // the oldest block that may hold writes not yet fsynced
}

func (s *dirSyncer) sync() error {
	mine := s.calls.Add(1) // the caller's writes came before this
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.covered >= mine {
		return nil
	}
	upTo := s.calls.Load()
	newest, err := newestBlock(s.dir)
	if err != nil {
		return fmt.Errorf("sync object store blocks in %s: %w", s.dir, err)
	}
	from := max(s.from, 1)
	for i := from; i <= newest; i++ {
		f, err := os.Open(filepath.Join(s.dir, fmt.Sprintf("%d.blk", i)))
		if os.IsNotExist(err) {
			continue // compacted away
		}
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("fsync %s: %w", f.Name(), err)
		}
	}
	if newest != s.from {
		if err := syncDir(s.dir); err != nil {
			return err
		}
	}
	s.from = newest
	s.covered = upTo
	return nil
}

// newestBlock is the index of the newest block in dir (0: none).
func newestBlock(dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		var i int
		if _, err := fmt.Sscanf(e.Name(), "%d.blk", &i); err == nil && i > n {
			n = i
		}
	}
	return n, nil
}
