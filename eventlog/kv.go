package eventlog

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// KeyValue opens the JetStream key-value bucket on the log's NATS
// server, creating it when it does not exist: file storage, the log's
// Replicas, one revision kept per key, no limits. Services keep small
// mutable state there that is not an event (the edge's certificates and
// its cluster-wide locks); every process connected to the same NATS
// sees the same bucket.
//
// It shares the object stores' connection (see ObjectStore): with the
// embedded server that is a connection of its own, as the log's writer,
// and NATS listener clients can neither write nor read the bucket (their
// account reaches only the event stream). With URL, the log's
// connection is used.
//
// Writes to a bucket are as durable as the server's settings make them:
// under Strict durability with the embedded server, call SyncKeyValue
// after a write that must survive a power cut. Errors: ErrClosed before
// Open or after Close.
func (l *Log) KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	js, err := l.lockBuckets()
	if err != nil {
		return nil, err
	}
	o := &l.objects
	defer o.mu.Unlock()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "Fazt key-value bucket: service state beside the log",
		Storage:     jetstream.FileStorage,
		Replicas:    l.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("key-value bucket %s: %w", bucket, err)
	}
	l.registerSyncer(&o.kvSyncers, bucket, "KV_"+bucket)
	return kv, nil
}

// SyncKeyValue makes everything written to the key-value bucket so far
// durable before it returns, as SyncObjectStore does for an object
// store: an fsync of the bucket's stream's blocks under Strict
// durability with the embedded server, nothing otherwise (Relaxed: the
// server fsyncs every SyncInterval; URL: that server's business). The
// bucket must have been opened with KeyValue.
func (l *Log) SyncKeyValue(bucket string) error {
	return l.syncBucket(&l.objects.kvSyncers, bucket)
}
