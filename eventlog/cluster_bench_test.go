package eventlog_test

import (
	"context"
	"flag"
	"fmt"
	"testing"
	"time"

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
	// Both streams led by the node both sides publish through: a leader
	// elsewhere adds a hop to one side only, and the ratio would say
	// where the leaders landed, not what the log costs.
	for _, name := range []string{eventlog.DefaultStreamName, "RAW"} {
		leadOn(b, js, logs[0], name, "n0")
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

var catchUpEvents = flag.Int("cluster.catchup", 20000, "events a node catches up on in BenchmarkClusterCatchUp (1000000 for the README's figure)")

// BenchmarkClusterCatchUp: a node of a three-node cluster is stopped,
// the two others take -cluster.catchup events (256 B each, relaxed,
// 4000 in flight), and the node is started again: the figure is how many
// events a second it catches up on, from its start until its replica of
// the stream is current and it reads the last event from it.
func BenchmarkClusterCatchUp(b *testing.B) {
	n := *catchUpEvents
	logs := openCluster(b, 3, eventlog.Relaxed)
	ctx := context.Background()
	away := logs[2]
	cfg := *away.Cluster
	if err := away.Close(ctx); err != nil {
		b.Fatal(err)
	}
	l := logs[0]
	// If the node was the stream's leader, the others elect one first.
	for {
		st, err := l.ClusterStatus(ctx)
		if err == nil && st.Leader != "" && st.Leader != cfg.Node {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	window := make(chan *eventlog.Pending, 4000)
	errc := make(chan error, 1)
	go func() {
		var first error
		for p := range window {
			if _, err := p.Wait(); err != nil && first == nil {
				first = err
			}
		}
		errc <- first
	}()
	for i := 0; i < n; i++ {
		p, err := l.AppendAsync(ctx, []eventlog.Event{{Stream: fmt.Sprintf("bench.s%d", i%100), Type: "bench.tick", Data: payload256}})
		if err != nil {
			b.Fatal(err)
		}
		window <- p
	}
	close(window)
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	last, err := l.LastSeq(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	back := eventlog.New(away.Dir)
	back.Durability, back.Replicas, back.Cluster = eventlog.Relaxed, 3, &cfg
	if err := back.Open(ctx); err != nil { // returns once its replica is current
		b.Fatal(err)
	}
	defer back.Close(ctx)
	for {
		page, err := back.Read(ctx, last-1, 1, eventlog.Filter{})
		if err == nil && len(page.Events) == 1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(start)
	b.ReportMetric(float64(n)/took.Seconds(), "caught_up_ev/s")
	b.ReportMetric(took.Seconds(), "catch_up_s")
}

// leadOn makes node the leader of stream: its leader steps down in the
// node's favour until it is.
func leadOn(b *testing.B, js jetstream.JetStream, l *eventlog.Log, stream, node string) {
	b.Helper()
	ctx := context.Background()
	req := []byte(`{"placement":{"preferred":"` + node + `"}}`)
	for try := 0; ; try++ {
		st, err := js.Stream(ctx, stream)
		if err == nil {
			var info *jetstream.StreamInfo
			if info, err = st.Info(ctx); err == nil && info.Cluster != nil && info.Cluster.Leader == node {
				return
			}
		}
		if try == 50 {
			b.Fatalf("stream %s: %s never became its leader (%v)", stream, node, err)
		}
		l.Conn().Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, req, 5*time.Second)
		time.Sleep(200 * time.Millisecond)
	}
}
