package eventlog_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/fazt-sh/fazt/eventlog"
)

// freeAddrs returns n loopback addresses no one listens on (now).
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		ln.Close()
	}
	return addrs
}

const testSecret = "a-cluster-secret-for-tests"

// openCluster opens n logs in one process, each a node of one cluster,
// with the stream at n replicas.
func openCluster(t testing.TB, n int, d eventlog.Durability) []*eventlog.Log {
	t.Helper()
	addrs := freeAddrs(t, n)
	logs := make([]*eventlog.Log, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range n {
		l := eventlog.New(t.TempDir())
		l.Durability = d
		l.Replicas = n
		l.Cluster = &eventlog.Cluster{Name: "test", Node: fmt.Sprintf("n%d", i), Listen: addrs[i], Peers: addrs, Secret: testSecret}
		logs[i] = l
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = l.Open(ctx) }()
	}
	wg.Wait()
	for i, l := range logs {
		if errs[i] == nil {
			t.Cleanup(func() { l.Close(context.Background()) })
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return logs
}

// Three logs in one cluster: every node appends, every node reads the
// same log, a retried append is answered with its original positions on
// another node, and the stream and its buckets have three replicas.
func TestClusterAppendEveryNode(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a cluster")
	}
	logs := openCluster(t, 3, eventlog.Strict)
	ctx := context.Background()
	info, err := logs[0].StreamInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || !info.Config.DenyDelete || !info.Config.DenyPurge || !info.Config.AllowAtomicPublish {
		t.Fatalf("stream config: %+v", info.Config)
	}
	for i, l := range logs {
		if !l.Server().JetStreamConfig().SyncAlways {
			t.Fatalf("node %d of a strict cluster does not fsync every write", i)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]eventlog.Position{}
	for i, l := range logs {
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range 10 {
					evs := []eventlog.Event{{ID: l.NewID(), Stream: fmt.Sprintf("acct.%d", (w+j)%5), Type: "acct.moved", Data: json.RawMessage(fmt.Sprintf(`{"n":%d,"node":%d}`, j, i))}}
					if j%3 == 0 { // an atomic batch across two streams
						evs = append(evs, eventlog.Event{ID: l.NewID(), Stream: fmt.Sprintf("other.%d", w), Type: "other.moved", Data: json.RawMessage(`{}`)})
					}
					res, err := l.Append(ctx, evs)
					if err != nil {
						t.Errorf("node %d: %v", i, err)
						return
					}
					mu.Lock()
					for _, p := range res.Events {
						acked[p.ID] = p
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	last, err := logs[0].LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if int(last) != len(acked) {
		t.Fatalf("last seq %d, %d events acknowledged", last, len(acked))
	}
	for i, l := range logs {
		waitReadable(t, l, last)
		checkLog(t, l, acked, fmt.Sprintf("node %d", i))
	}

	// A retry of an append on another node: the original positions.
	first, err := logs[0].Append(ctx, []eventlog.Event{{ID: logs[0].NewID(), Stream: "acct.retry", Type: "acct.moved", Data: json.RawMessage(`{}`)}})
	if err != nil {
		t.Fatal(err)
	}
	again, err := logs[2].Append(ctx, []eventlog.Event{{ID: first.Events[0].ID, Stream: "acct.retry", Type: "acct.moved", Data: json.RawMessage(`{}`)}})
	if err != nil || !again.Duplicate || again.LastSeq != first.LastSeq {
		t.Fatalf("retry on another node: %+v %v, want the original %+v", again, err, first)
	}
	// Expectations hold across nodes.
	_, err = logs[1].Append(ctx, []eventlog.Event{{Stream: "acct.retry", Type: "acct.moved", Data: json.RawMessage(`{}`)}}, eventlog.ExpectNew("acct.retry"))
	if !errors.Is(err, eventlog.ErrConflict) {
		t.Fatalf("expect-new on a stream another node wrote: %v", err)
	}

	obj, err := logs[1].ObjectStore(ctx, "cluster_test")
	if err != nil {
		t.Fatal(err)
	}
	st, err := obj.Status(ctx)
	if err != nil || st.Replicas() != 3 {
		t.Fatalf("object store replicas: %v %v", st, err)
	}

	cs, err := logs[2].ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cs.Name != "test" || cs.Node != "n2" || len(cs.Replicas) != 3 || cs.Leader == "" || len(cs.Peers) != 2 || cs.LastSeq != first.LastSeq {
		t.Fatalf("cluster status: %+v", cs)
	}
}

// waitReadable waits until l reads the log up to seq.
func waitReadable(t *testing.T, l *eventlog.Log, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		evs, err := l.Read(ctx, seq-1, 1, eventlog.Filter{})
		if err == nil && len(evs.Events) == 1 {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("seq %d never readable: %v", seq, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkLog reads the whole log from l: sequences 1..n without gaps,
// every stream's versions 1, 2, 3..., and exactly the acknowledged
// events, each at its acknowledged position.
func checkLog(t *testing.T, l *eventlog.Log, acked map[string]eventlog.Position, who string) {
	t.Helper()
	ctx := context.Background()
	versions := map[string]uint64{}
	var seq uint64
	seen := 0
	for {
		evs, err := l.Read(ctx, seq, 500, eventlog.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs.Events) == 0 {
			break
		}
		for _, e := range evs.Events {
			if e.Malformed != nil {
				t.Fatalf("%s: malformed at %d: %+v", who, e.Seq, e.Malformed)
			}
			if e.Seq != seq+1 {
				t.Fatalf("%s: seq %d after %d", who, e.Seq, seq)
			}
			seq = e.Seq
			if e.Version != versions[e.Stream]+1 {
				all, _ := l.Read(ctx, 0, 1000, eventlog.Filter{Categories: []string{strings.Split(e.Stream, ".")[0]}})
				for _, x := range all.Events {
					if x.Stream != e.Stream {
						continue
					}
					t.Logf("%s seq %d v %d id %s data %s", x.Stream, x.Seq, x.Version, x.ID, x.Data)
				}
				t.Fatalf("%s: %s version %d after %d", who, e.Stream, e.Version, versions[e.Stream])
			}
			versions[e.Stream] = e.Version
			p, ok := acked[e.ID]
			if ok {
				seen++
				if p.Seq != e.Seq || p.Stream != e.Stream || p.Version != e.Version {
					t.Fatalf("%s: %s acknowledged at %+v, found at seq %d version %d", who, e.ID, p, e.Seq, e.Version)
				}
			}
		}
	}
	if seen != len(acked) {
		t.Fatalf("%s: %d of %d acknowledged events found", who, seen, len(acked))
	}
}

// The configuration a node renders is NATS's own, with the route
// credentials in it, and the sync policy that durability asks for.
func TestClusterConfigRefusals(t *testing.T) {
	for _, tc := range []struct {
		c    eventlog.Cluster
		want string
	}{
		{eventlog.Cluster{Name: "a b", Node: "n", Listen: "127.0.0.1:1", Secret: testSecret}, "cluster name"},
		{eventlog.Cluster{Name: "a", Node: "", Listen: "127.0.0.1:1", Secret: testSecret}, "node name"},
		{eventlog.Cluster{Name: "a", Node: "n", Listen: "127.0.0.1:1", Secret: "short"}, "secret"},
		{eventlog.Cluster{Name: "a", Node: "n", Listen: "nowhere", Secret: testSecret}, "listen"},
		{eventlog.Cluster{Name: "a", Node: "n", Listen: "127.0.0.1:1", Peers: []string{"x"}, Secret: testSecret}, "peer"},
		{eventlog.Cluster{}, "one embedded server holds one replica"},
	} {
		l := eventlog.New(t.TempDir())
		l.Cluster = &tc.c
		if tc.c.Name == "" {
			l.Cluster, l.Replicas = nil, 3
		}
		err := l.Open(context.Background())
		if err == nil {
			l.Close(context.Background())
		}
		if !errors.Is(err, eventlog.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want ErrInvalid naming %s", tc.c, err, tc.want)
		}
	}
}

// A node's configuration: its routes carry the credentials, and strict
// durability makes every replica fsync every write (relaxed: every
// second).
func TestClusterRender(t *testing.T) {
	c := &eventlog.Cluster{Name: "c", Node: "n1", Listen: "0.0.0.0:6222", Peers: []string{"a:6222", "b:6222"}, Secret: "p@ss/word with spaces"}
	strict := eventlog.RenderClusterForTest(c, eventlog.Strict)
	for _, want := range []string{`server_name: "n1"`, `name: "c"`, `listen: "0.0.0.0:6222"`, `user: "fazt-route"`, `password: "p@ss/word with spaces"`,
		`"nats-route://fazt-route:p%40ss%2Fword%20with%20spaces@a:6222"`, `sync_interval: always`, `ping_interval: "2s"`} {
		if !strings.Contains(strict, want) {
			t.Errorf("strict configuration lacks %s:\n%s", want, strict)
		}
	}
	if relaxed := eventlog.RenderClusterForTest(c, eventlog.Relaxed); !strings.Contains(relaxed, `sync_interval: "1s"`) {
		t.Errorf("relaxed configuration:\n%s", relaxed)
	}
}

// rawCluster starts n plain NATS servers (no fazt) in one JetStream
// cluster, from a rendered configuration as NATS's tests do, and returns
// their client URLs.
func rawCluster(t *testing.T, n int) ([]*server.Server, []string) {
	t.Helper()
	routes := freeAddrs(t, n)
	var rs []string
	for _, r := range routes {
		rs = append(rs, `"nats-route://`+r+`"`)
	}
	srvs := make([]*server.Server, n)
	var urls []string
	for i := range n {
		conf := fmt.Sprintf(`server_name: "s%d"
listen: "127.0.0.1:-1"
jetstream { store_dir: %q, sync_interval: always }
cluster { name: "raw", listen: %q, routes: [%s] }
`, i, t.TempDir(), routes[i], strings.Join(rs, ", "))
		var opts server.Options
		if err := opts.ProcessConfigString(conf); err != nil {
			t.Fatal(err)
		}
		opts.NoLog, opts.NoSigs = true, true
		s, err := server.NewServer(&opts)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		srvs[i] = s
	}
	for _, s := range srvs {
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatal("raw server not ready")
		}
		urls = append(urls, s.ClientURL())
	}
	return srvs, urls
}

// URL with several servers uses an existing cluster: the stream is made
// with the replicas asked, and appends go on, from the same Log, when the
// server it was connected to is shut down.
func TestClusterExistingByURL(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a cluster")
	}
	srvs, urls := rawCluster(t, 3)
	l := eventlog.New(t.TempDir())
	l.URL = strings.Join(urls, ",")
	l.Replicas = 3
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.Open(ctx); err != nil { // waits for the servers' meta leader
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	info, err := l.StreamInfo(ctx)
	if err != nil || info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream: %+v %v", info, err)
	}
	acked := map[string]eventlog.Position{}
	appendSome := func(k int) {
		for i := range k {
			ev := eventlog.Event{ID: l.NewID(), Stream: fmt.Sprintf("acct.%d", i%3), Type: "acct.moved", Data: json.RawMessage(`{}`)}
			var res eventlog.Result
			var err error
			for try := 0; try < 20; try++ { // retried with the same ID while the cluster fails over
				if res, err = l.Append(ctx, []eventlog.Event{ev}); err == nil {
					break
				}
				time.Sleep(250 * time.Millisecond)
			}
			if err != nil {
				t.Fatal(err)
			}
			acked[res.Events[0].ID] = res.Events[0]
		}
	}
	appendSome(20)
	// Shut down the server the log is connected to.
	connected := l.Conn().ConnectedUrl()
	for i, s := range srvs {
		if urls[i] == connected {
			s.Shutdown()
		}
	}
	appendSome(20)
	if got := l.Conn().ConnectedUrl(); got == connected {
		t.Fatalf("still connected to %s", got)
	}
	checkLog(t, l, acked, "by URL")
}
