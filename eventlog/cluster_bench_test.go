package eventlog_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fazt-sh/fazt/eventlog"
)

// BenchmarkClusterAppendStrict: strict appends (one 256 B event each)
// from 64 concurrent callers on one node of a three-node cluster (three
// embedded servers in this process, stream R3, every replica fsyncing
// each write), against raw JetStream publish to an R3 stream of the same
// cluster, with as many callers, each waiting for its acknowledgement.
// Both sides go through the same node. Run with -benchtime=1x: each
// round appends at least 3000 events.
func BenchmarkClusterAppendStrict(b *testing.B) {
	const callers = 64
	n := max(b.N, 3000)
	logs := openCluster(b, 3, eventlog.Strict)
	ctx := context.Background()
	js, err := jetstream.New(logs[0].Conn()) // the in-process reader may publish outside the log
	if err != nil {
		b.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"}, Storage: jetstream.FileStorage, Replicas: 3, DenyDelete: true, DenyPurge: true}); err != nil {
		b.Fatal(err)
	}
	l := logs[0]
	b.ResetTimer()
	rounds(b, n, func() (float64, error) {
		return timeIt(n, callers, func(i int) error {
			_, err := js.Publish(ctx, fmt.Sprintf("raw.s%d", i%100), payload256)
			return err
		})
	}, func() (float64, error) {
		return timeIt(n, callers, func(i int) error {
			_, err := l.Append(ctx, []eventlog.Event{{Stream: fmt.Sprintf("bench.s%d", i%100), Type: "bench.tick", Data: payload256}})
			return err
		})
	})
}
