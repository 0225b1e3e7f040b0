package eventlog_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/eventlog/eventlogtest"
)

// freeAddrs returns n loopback addresses no one listens on (now).
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		addrs = append(addrs, eventlogtest.FreeAddr(t))
	}
	return addrs
}

const testSecret = "a-cluster-secret-for-tests"

// clusterCerts makes a CA and a certificate for each node, as files in
// a directory of their own, and returns each node's TLS.
func clusterCerts(t testing.TB, nodes ...string) []*eventlog.ClusterTLS {
	t.Helper()
	dir := t.TempDir()
	ca, err := eventlog.NewClusterCA("test")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.crt", ca.CertPEM)
	var out []*eventlog.ClusterTLS
	for _, n := range nodes {
		cert, key, err := ca.Issue(n, nil)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &eventlog.ClusterTLS{CertFile: write(n+".crt", cert), KeyFile: write(n+".key", key), CAFile: caFile})
	}
	return out
}

// openCluster opens n logs in one process, each a node of one cluster
// whose routes are mutual TLS, with the stream at n replicas.
func openCluster(t testing.TB, n int, d eventlog.Durability) []*eventlog.Log {
	t.Helper()
	addrs := freeAddrs(t, n)
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("n%d", i))
	}
	certs := clusterCerts(t, names...)
	cs := make([]*eventlog.Cluster, n)
	for i := range n {
		cs[i] = &eventlog.Cluster{Name: "test", Node: names[i], Listen: addrs[i], Peers: addrs, Secret: testSecret, TLS: certs[i]}
	}
	logs, err := openNodes(t, cs, d, n, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return logs
}

// openNodes opens a log for each of cs at once (a cluster's nodes wait
// for each other), each with replicas; the logs that opened are closed
// when the test ends.
func openNodes(t testing.TB, cs []*eventlog.Cluster, d eventlog.Durability, replicas int, wait time.Duration) ([]*eventlog.Log, error) {
	t.Helper()
	logs := make([]*eventlog.Log, len(cs))
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for i, c := range cs {
		l := eventlog.New(t.TempDir())
		l.Durability = d
		l.Replicas = replicas
		l.Cluster = c
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
	return logs, errors.Join(errs...)
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
	mine := clusterCerts(t, "n", "m")
	good, other := mine[0], mine[1]
	foreign := clusterCerts(t, "n")[0] // from another CA
	for _, tc := range []struct {
		c    eventlog.Cluster
		want string
	}{
		{eventlog.Cluster{Name: "a b", Node: "n", Listen: "127.0.0.1:1", Secret: testSecret}, "cluster name"},
		{eventlog.Cluster{Name: "a", Node: "", Listen: "127.0.0.1:1", Secret: testSecret}, "node name"},
		{eventlog.Cluster{Name: "a", Node: "n", Listen: "127.0.0.1:1", Secret: "short"}, "secret"},
		{eventlog.Cluster{Name: "a", Node: "n", Listen: "nowhere", Secret: testSecret, Insecure: true}, "listen"},
		{eventlog.Cluster{Name: "a", Node: "n", Listen: "127.0.0.1:1", Peers: []string{"x"}, Secret: testSecret, Insecure: true}, "peer"},
		{eventlog.Cluster{}, "one embedded server holds one replica"},
		// Routes in clear only when asked for.
		{eventlog.Cluster{Name: "a", Node: "n", Listen: "127.0.0.1:1", Secret: testSecret}, "fazt cluster certs"},
		{eventlog.Cluster{Name: "a", Node: "n", Listen: "127.0.0.1:1", Secret: testSecret, TLS: good, Insecure: true}, "exclude each other"},
		// TLS files that cannot work, each named.
		{eventlog.Cluster{Name: "a", Node: "n", Listen: "127.0.0.1:1", Secret: testSecret,
			TLS: &eventlog.ClusterTLS{CertFile: good.CertFile, CAFile: good.CAFile}}, "no key file"},
		{eventlog.Cluster{Name: "a", Node: "n", Listen: "127.0.0.1:1", Secret: testSecret,
			TLS: &eventlog.ClusterTLS{CertFile: good.CertFile, KeyFile: good.KeyFile}}, "no CA file"},
		{eventlog.Cluster{Name: "a", Node: "n", Listen: "127.0.0.1:1", Secret: testSecret,
			TLS: &eventlog.ClusterTLS{CertFile: good.CertFile + ".gone", KeyFile: good.KeyFile, CAFile: good.CAFile}}, "no such file"},
		{eventlog.Cluster{Name: "a", Node: "n", Listen: "127.0.0.1:1", Secret: testSecret,
			TLS: &eventlog.ClusterTLS{CertFile: good.CertFile, KeyFile: other.KeyFile, CAFile: good.CAFile}}, "the key must be the one made with this certificate"},
		{eventlog.Cluster{Name: "a", Node: "n", Listen: "127.0.0.1:1", Secret: testSecret,
			TLS: &eventlog.ClusterTLS{CertFile: foreign.CertFile, KeyFile: foreign.KeyFile, CAFile: good.CAFile}}, "was not issued by the CA"},
		{eventlog.Cluster{Name: "a", Node: "n", Listen: "127.0.0.1:1", Secret: testSecret,
			TLS: &eventlog.ClusterTLS{CertFile: good.CertFile, KeyFile: good.KeyFile, CAFile: good.KeyFile}}, "holds no PEM certificate"},
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
	if strings.Contains(strict, "tls") {
		t.Errorf("TLS without ClusterTLS:\n%s", strict)
	}
	// With TLS: the cluster block's tls, verifying the peers (mutual).
	c.TLS = &eventlog.ClusterTLS{CertFile: "/c/n1.crt", KeyFile: "/c/n1.key", CAFile: "/c/ca.crt"}
	conf := eventlog.RenderClusterForTest(c, eventlog.Strict)
	if !strings.Contains(conf, "  tls {\n    cert_file: \"/c/n1.crt\"\n    key_file: \"/c/n1.key\"\n    ca_file: \"/c/ca.crt\"\n    verify: true\n") {
		t.Errorf("TLS configuration:\n%s", conf)
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

// A cluster whose routes are mutual TLS: the nodes replicate; the route
// port answers a plain TCP client with tls_required and gives it no
// route in clear; a node whose certificate comes from another CA (but
// knows the secret) is refused, and the others go on without it.
func TestClusterTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a cluster")
	}
	logs := openCluster(t, 3, eventlog.Strict)
	ctx := context.Background()
	appendOn := func(l *eventlog.Log) uint64 {
		t.Helper()
		res, err := l.Append(ctx, []eventlog.Event{{ID: l.NewID(), Stream: "acct.tls", Type: "acct.moved", Data: json.RawMessage(`{}`)}})
		if err != nil {
			t.Fatal(err)
		}
		return res.LastSeq
	}
	var last uint64
	for _, l := range logs {
		last = appendOn(l)
	}
	for _, l := range logs {
		waitReadable(t, l, last)
	}

	route := logs[0].Cluster.Listen
	// A plain TCP client: the route port speaks TLS first, so nothing
	// comes in clear, not even the INFO line, and a CONNECT with the
	// right credentials sent in clear gets no PONG.
	conn, err := net.Dial("tcp", route)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "CONNECT {\"user\":%q,\"pass\":%q,\"name\":\"plain\",\"cluster\":\"test\"}\r\nPING\r\n", "fazt-route", testSecret)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // the server gives up on a handshake after 2s
	got, err := io.ReadAll(conn)
	conn.Close()
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the route port kept a clear connection open (read %q)", got)
	}
	if strings.Contains(string(got), "INFO") || strings.Contains(string(got), "PONG") {
		t.Fatalf("the route port answered in clear: %q", got)
	}

	// TLS handshakes on the route port: a node's own certificate is
	// taken and the INFO line comes, saying TLS is required and verified
	// (the control); a certificate from another CA is refused both ways.
	own := logs[0].Cluster.TLS
	foreign := clusterCerts(t, "intruder")[0]
	handshake := func(cert *eventlog.ClusterTLS, rootsFrom string, checkServer bool) (string, error) {
		t.Helper()
		pair, err := tls.LoadX509KeyPair(cert.CertFile, cert.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		pem, err := os.ReadFile(rootsFrom)
		if err != nil {
			t.Fatal(err)
		}
		roots.AppendCertsFromPEM(pem)
		raw, err := net.Dial("tcp", route)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Client(raw, &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, ServerName: "127.0.0.1", InsecureSkipVerify: !checkServer})
		if err := tc.Handshake(); err != nil {
			return "", err
		}
		// TLS 1.3: the server's verdict on our certificate comes after
		// the client's handshake, with the first read.
		return bufio.NewReader(tc).ReadString('\n')
	}
	line, err := handshake(own, own.CAFile, true)
	if err != nil || !strings.HasPrefix(line, "INFO ") {
		t.Fatalf("a node's own certificate: %q %v", line, err)
	}
	var info server.Info
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "INFO ")), &info); err != nil || !info.TLSRequired || !info.TLSVerify {
		t.Fatalf("route INFO %s: %v, want tls_required and tls_verify", line, err)
	}
	if _, err := handshake(foreign, foreign.CAFile, true); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("the intruder accepted the node's certificate: %v", err)
	}
	if line, err := handshake(foreign, foreign.CAFile, false); err == nil {
		t.Fatalf("the node accepted a certificate from another CA: %q", line)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the node neither took nor refused a certificate from another CA: %v", err)
	}

	// A node with the secret but a certificate from another CA: it never
	// joins, and the three go on.
	intruder := &eventlog.Cluster{Name: "test", Node: "intruder", Listen: freeAddrs(t, 1)[0], Secret: testSecret, TLS: foreign}
	for _, l := range logs {
		intruder.Peers = append(intruder.Peers, l.Cluster.Listen)
	}
	_, err = openNodes(t, []*eventlog.Cluster{intruder}, eventlog.Strict, 3, 6*time.Second)
	if err == nil {
		t.Fatal("a node with a certificate from another CA joined the cluster")
	}
	t.Logf("the intruder: %v", err)
	// It says why: its routes' TLS, peer by peer.
	if !strings.Contains(err.Error(), "route to "+route+": ") || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("the intruder's error does not say its routes' TLS failed: %v", err)
	}
	for i, l := range logs {
		last = appendOn(l)
		cs, err := l.ClusterStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs.Peers) != 2 || len(cs.Replicas) != 3 || cs.Routes != "tls" ||
			cs.CertExpires.Before(time.Now().Add(eventlog.ClusterCertValidity-24*time.Hour)) || cs.CertExpires.After(time.Now().Add(eventlog.ClusterCertValidity)) {
			t.Fatalf("node %d after the intruder: %+v", i, cs)
		}
		for _, p := range cs.Peers {
			if p.Node == "intruder" {
				t.Fatalf("node %d has a route to the intruder", i)
			}
		}
	}
	for _, l := range logs {
		waitReadable(t, l, last)
	}
}

// A cluster run without TLS on purpose (Insecure): its route port speaks
// in clear, and Open says so in the log.
func TestClusterInsecureWarns(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a cluster")
	}
	addrs := freeAddrs(t, 3)
	logs := make([]*eventlog.Log, 3)
	bufs := make([]syncWriter, 3)
	errs := make([]error, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for i := range logs {
		l := eventlog.New(t.TempDir())
		l.Logger = slog.New(slog.NewTextHandler(&bufs[i], nil))
		l.Replicas = 3
		l.Cluster = &eventlog.Cluster{Name: "test", Node: fmt.Sprintf("n%d", i), Listen: addrs[i], Peers: addrs, Secret: testSecret, Insecure: true}
		logs[i] = l
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = l.Open(ctx) }()
	}
	wg.Wait()
	for i, l := range logs {
		if errs[i] == nil {
			defer l.Close(context.Background())
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if got := bufs[0].String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, "cluster routes run in clear") {
		t.Fatalf("no warning in the log:\n%s", got)
	}
	l := logs[0]
	if cs, err := l.ClusterStatus(ctx); err != nil || cs.Routes != "clear" {
		t.Errorf("cluster status: %+v %v, want routes in clear", cs, err)
	}
	conn, err := net.Dial("tcp", l.Cluster.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "INFO ") || strings.Contains(line, "tls_required") {
		t.Fatalf("an insecure route port: %q %v, want an INFO line in clear", line, err)
	}
}

type syncWriter struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// A node whose certificate ends within a month says so at every start,
// with what to do; one with years left says nothing.
func TestClusterCertExpiryWarns(t *testing.T) {
	dir := t.TempDir()
	ca, err := eventlog.NewClusterCA("test")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		validity time.Duration
		warns    bool
	}{{10 * 24 * time.Hour, true}, {eventlog.ClusterCertValidity, false}} {
		cert, key, err := eventlog.IssueForTest(ca, "n1", tc.validity)
		if err != nil {
			t.Fatal(err)
		}
		tl := &eventlog.ClusterTLS{CertFile: filepath.Join(dir, "n1.crt"), KeyFile: filepath.Join(dir, "n1.key"), CAFile: caFile}
		if err := errors.Join(os.WriteFile(tl.CertFile, cert, 0o600), os.WriteFile(tl.KeyFile, key, 0o600), tl.Check()); err != nil {
			t.Fatal(err)
		}
		var buf syncWriter
		eventlog.WarnClusterForTest(&eventlog.Cluster{Name: "c", Node: "n1", TLS: tl}, slog.New(slog.NewTextHandler(&buf, nil)))
		if got := strings.Contains(buf.String(), "certificate expires soon"); got != tc.warns {
			t.Errorf("valid for %v: warned %v, want %v:\n%s", tc.validity, got, tc.warns, buf.String())
		}
	}
}

// A node whose route port another process holds fails at once, naming
// the address, instead of waiting for a server that never turns ready.
func TestClusterListenInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	l := eventlog.New(t.TempDir())
	l.Replicas = 3
	l.Cluster = &eventlog.Cluster{Name: "test", Node: "n0", Listen: addr, Peers: []string{addr, freeAddrs(t, 1)[0]}, Secret: testSecret, Insecure: true}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = l.Open(ctx)
	if err == nil {
		l.Close(context.Background())
		t.Fatal("a node opened on a route port another process holds")
	}
	if !errors.Is(err, eventlog.ErrUnavailable) || !strings.Contains(err.Error(), "cluster listen address "+addr) {
		t.Fatalf("err = %v, want ErrUnavailable naming the cluster listen address", err)
	}
}
