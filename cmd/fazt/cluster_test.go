package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/eventlog/eventlogtest"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/kerneltest"
	"github.com/fazt-sh/fazt/kernel/reactor"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
)

// The cluster tests run three `fazt serve --cluster` processes on
// loopback: children of the test binary (TestClusterChild), with the
// test's verticals plus clusterVertical; or, for the rolling upgrade,
// real builds of the binary (the upgrade tests' kit).

const (
	envClusterChild = "FAZT_CLUSTER_CHILD" // the child's arguments, as JSON
	envEffects      = "FAZT_CLUSTER_EFFECTS"
	clusterSecret   = "the-secret-of-the-test-cluster"
)

// clusterVertical folds every "acct" event into the ledger read model,
// whose table the nodes must agree on, and runs the "fx" reactor, whose
// side effect (a line in a file all nodes share) must happen once per
// cluster.
func clusterVertical(k *kernel.Kernel) error {
	for _, typ := range []string{"acct.moved", "fx.asked"} {
		if err := k.RegisterEvent(typ, 1, []byte(anyObject)); err != nil {
			return err
		}
	}
	cols := []schemas.Column{
		{Name: "seq", Type: "INTEGER", PrimaryKey: true},
		{Name: "id", Type: "TEXT", NotNull: true, Default: "''"},
		{Name: "stream", Type: "TEXT", NotNull: true, Default: "''"},
		{Name: "version", Type: "INTEGER", NotNull: true, Default: "0"},
		{Name: "data", Type: "TEXT", NotNull: true, Default: "''"},
	}
	ledger := projections.Projection{
		Name:    "ledger",
		Version: 1,
		Tables:  []schemas.Table{{Name: "entries", Columns: cols}},
		Filter:  eventlog.Filter{Categories: []string{"acct"}},
		Apply: func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO entries (seq, id, stream, version, data) VALUES (?, ?, ?, ?, ?)`,
				e.Seq, e.ID, e.Stream, e.Version, string(e.Data))
			return err
		},
	}
	if err := k.RegisterProjection(ledger); err != nil {
		return err
	}
	effects := os.Getenv(envEffects)
	if effects == "" {
		return nil
	}
	node := os.Getenv("FAZT_NODE")
	return k.RegisterReactor(reactor.Reactor{
		Name:          "fx",
		Filter:        eventlog.Filter{Categories: []string{"fx"}},
		FromBeginning: true,
		Handle: func(ctx context.Context, e eventlog.Event, key string) error {
			f, err := os.OpenFile(effects, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(f, "%d %s %s\n", e.Seq, key, node)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			return err
		},
	})
}

// TestClusterChild is one node of the cluster tests; on its own it skips.
func TestClusterChild(t *testing.T) {
	raw := os.Getenv(envClusterChild)
	if raw == "" {
		t.Skip("a node of the cluster tests")
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	verticals := append(append([]vertical{}, testVerticals...), clusterVertical)
	if err := run(ctx, verticals, args, os.Getenv, strings.NewReader(""), io.Discard, os.Stderr); err != nil {
		t.Fatal(err)
	}
}

// node is one child process.
type node struct {
	name, dir, listen string
	args              []string
	bin               string // a build of fazt to run; "" runs TestClusterChild
	cmd               *exec.Cmd
	exited            chan struct{} // closed once cmd has ended
	stderr            *syncBuffer

	mu          sync.Mutex // the load's writers read these
	addr, token string
	release     string // the version bin is, for the load; "" for the test binary
}

// endpoint returns the node's HTTP address and token ("" while it starts).
func (n *node) endpoint() (string, string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.addr, n.token
}

func (n *node) running() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.release
}

func (n *node) setRelease(r string) {
	n.mu.Lock()
	n.release = r
	n.mu.Unlock()
}

func (n *node) setEndpoint(addr, token string) {
	n.mu.Lock()
	n.addr, n.token = addr, token
	n.mu.Unlock()
}

type cluster struct {
	t       *testing.T
	nodes   []*node
	effects string
	hc      *http.Client
}

func freeListen(t *testing.T) string {
	t.Helper()
	return eventlogtest.FreeAddr(t)
}

// startCluster starts three nodes of the test binary and waits until
// each is ready.
func startCluster(t *testing.T) *cluster { return startClusterOf(t, "", "") }

// startClusterOf starts three nodes of bin, a build of fazt at release
// ("" for the test binary), and waits until each is ready.
func startClusterOf(t *testing.T, bin, release string) *cluster {
	t.Helper()
	c := &cluster{t: t, effects: filepath.Join(t.TempDir(), "effects"), hc: &http.Client{Timeout: 20 * time.Second}}
	var peers []string
	for i := range 3 {
		n := &node{name: fmt.Sprintf("n%d", i), dir: t.TempDir(), listen: freeListen(t), bin: bin, release: release}
		peers = append(peers, n.listen)
		c.nodes = append(c.nodes, n)
	}
	// Routes over mutual TLS, with the files fazt cluster certs makes.
	certs := t.TempDir()
	if _, _, err := fazt(t, nil, "", "cluster", "certs", "--out", certs, "--node", "n0", "--node", "n1", "--node", "n2"); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		n.args = []string{"serve", "--data", n.dir, "--addr", "127.0.0.1:0", "--cluster", "test", "--node", n.name,
			"--cluster-listen", n.listen, "--peers", strings.Join(peers, ","), "--cluster-tls-cert", filepath.Join(certs, n.name+".crt"),
			"--cluster-tls-key", filepath.Join(certs, n.name+".key"), "--cluster-tls-ca", filepath.Join(certs, "ca.crt")}
		c.start(n)
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			c.kill(n)
		}
		if t.Failed() && os.Getenv("FAZT_CLUSTER_LOGS") != "" {
			for _, n := range c.nodes {
				t.Logf("%s's log:\n%s", n.name, n.stderr)
			}
		}
	})
	for _, n := range c.nodes {
		c.waitReady(n)
	}
	return c
}

func (c *cluster) start(n *node) {
	os.Remove(filepath.Join(n.dir, stateFile)) // a killed node's
	var cmd *exec.Cmd
	if n.bin != "" {
		cmd = exec.Command(n.bin, n.args...)
		cmd.Env = append(os.Environ(), "FAZT_CLUSTER_SECRET="+clusterSecret, "FAZT_DATA=", "FAZT_ADDR=", "FAZT_TOKEN=")
	} else {
		b, _ := json.Marshal(n.args)
		cmd = exec.Command(os.Args[0], "-test.run=^TestClusterChild$", "-test.count=1", "-test.timeout=20m")
		cmd.Env = append(os.Environ(), envClusterChild+"="+string(b), "FAZT_CLUSTER_SECRET="+clusterSecret,
			"FAZT_NODE="+n.name, envEffects+"="+c.effects)
	}
	n.stderr = &syncBuffer{}
	cmd.Stderr = n.stderr
	cmd.Stdout = n.stderr // the child test's own failure goes to stdout
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	n.cmd = cmd
	n.setEndpoint("", "")
	n.exited = make(chan struct{})
	go func() { cmd.Wait(); close(n.exited) }()
}

func (c *cluster) kill(n *node) {
	if n.cmd == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGCONT)
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
}

// stop stops the node as an operator would, with SIGTERM, and checks
// that it ended cleanly.
func (c *cluster) stop(n *node) {
	c.t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		c.t.Fatalf("SIGTERM %s: %v", n.name, err)
	}
	select {
	case <-n.exited:
	case <-time.After(2 * time.Minute): // a stop on a loaded machine; not a timing assertion
		n.cmd.Process.Signal(syscall.SIGQUIT)
		<-n.exited
		c.t.Fatalf("%s did not end in 2 minutes after SIGTERM\n%s", n.name, n.stderr)
	}
	if !n.cmd.ProcessState.Success() {
		c.t.Fatalf("%s ended badly after SIGTERM: %v\n%s", n.name, n.cmd.ProcessState, n.stderr)
	}
	n.setEndpoint("", "")
}

// waitReady waits for the node's serve.json and a 200 from /readyz.
func (c *cluster) waitReady(n *node) {
	c.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-n.exited:
			c.t.Fatalf("%s ended: %v\n%s", n.name, n.cmd.ProcessState, n.stderr)
		default:
		}
		addr, _ := n.endpoint()
		if addr == "" {
			if st, err := readState(n.dir); err == nil {
				tok, _ := os.ReadFile(filepath.Join(n.dir, kernel.TokenFile))
				addr = st.Addr
				n.setEndpoint(addr, strings.TrimSpace(string(tok)))
			}
		}
		if addr != "" {
			if resp, err := c.hc.Get(addr + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.cmd.Process.Signal(syscall.SIGQUIT) // its goroutines, for the report
	<-n.exited
	addr, _ := n.endpoint()
	c.t.Fatalf("%s not ready in 2 minutes (serving at %q)\n%s", n.name, addr, n.stderr)
}

// call sends a request to a node and decodes a 2xx answer into out.
func (c *cluster) call(ctx context.Context, n *node, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	addr, token := n.endpoint()
	if addr == "" {
		return 0, fmt.Errorf("%s is not serving", n.name)
	}
	req, err := http.NewRequestWithContext(ctx, method, addr+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		return resp.StatusCode, json.Unmarshal(b, out)
	}
	return resp.StatusCode, nil
}

func (c *cluster) status(n *node) (ClusterAnswer, error) {
	var st ClusterAnswer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.call(ctx, n, "GET", "/v1/cluster", nil, &st)
	return st, err
}

// leader returns the node leading the event stream, asking a live node.
func (c *cluster) leader(except *node) *node {
	c.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		for _, n := range c.nodes {
			if addr, _ := n.endpoint(); n == except || addr == "" {
				continue
			}
			st, err := c.status(n)
			if err != nil || st.Leader == "" {
				continue
			}
			for _, m := range c.nodes {
				// A node that has dropped a frozen leader's routes but
				// not yet elected another may still name it: ask again.
				if m.name == st.Leader && m != except {
					return m
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if except != nil {
		c.t.Fatalf("no stream leader but %s in a minute", except.name)
	}
	c.t.Fatal("no stream leader in a minute")
	return nil
}

// appendReq is one append the load makes, with its answer.
type appendReq struct {
	Events []map[string]any `json:"events"`
}

// load appends from every node until stopped, retrying an append whose
// answer it did not get on the next node, with the same IDs.
type load struct {
	c      *cluster
	mu     sync.Mutex
	acked  map[string]eventlog.Position // by event ID
	tried  map[string]bool              // IDs sent, answered or not
	errs   atomic.Int64
	stop   chan struct{}
	wg     sync.WaitGroup
	paused map[*node]bool
	byHome map[*node]int // appends acknowledged, by the writer's own node

	// event makes the load's events (acct.moved when nil); an event it
	// makes with a "schema" goes only to nodes running newer.
	event func(home *node, rng *rand.Rand, w, j, k int) map[string]any
	newer string
	types map[string]bool // the types event makes, checked by checkLog
}

func (c *cluster) newLoad() *load {
	l := &load{c: c, acked: map[string]eventlog.Position{}, tried: map[string]bool{}, paused: map[*node]bool{}, byHome: map[*node]int{},
		types: map[string]bool{"acct.moved": true}}
	c.t.Cleanup(l.halt) // no writer outlives a failed test
	return l
}

// run starts writers on every node; halt stops them, and run may
// start them again.
func (l *load) run(writers int) {
	l.stop = make(chan struct{})
	for i, n := range l.c.nodes {
		for w := range writers {
			l.wg.Add(1)
			go l.writer(i, w, n)
		}
	}
}

func (l *load) writer(start, w int, first *node) {
	defer l.wg.Done()
	rng := rand.New(rand.NewPCG(uint64(start), uint64(w)))
	for j := 0; ; j++ {
		select {
		case <-l.stop:
			return
		default:
		}
		n := rng.IntN(2) + 1 // one event or an atomic batch of two
		req := appendReq{}
		newer := false
		for k := range n {
			var e map[string]any
			if l.event != nil {
				e = l.event(first, rng, w, j, k)
			} else {
				e = map[string]any{"stream": fmt.Sprintf("acct.%d", rng.IntN(20)), "type": "acct.moved",
					"data": map[string]any{"from": first.name, "w": w, "j": j, "k": k}}
			}
			if e["id"] == nil {
				e["id"] = newULID()
			}
			newer = newer || e["schema"] != nil
			req.Events = append(req.Events, e)
		}
		l.mu.Lock()
		for _, e := range req.Events {
			l.tried[e["id"].(string)] = true
		}
		l.mu.Unlock()
		// Send to this writer's node, then the next ones, until answered.
		for try := 0; try < 30; try++ {
			nd := l.c.nodes[(start+try)%len(l.c.nodes)]
			l.mu.Lock()
			paused := l.paused[nd]
			l.mu.Unlock()
			if addr, _ := nd.endpoint(); addr == "" || paused || newer && nd.running() != l.newer {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			var res eventlog.Result
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			status, err := l.c.call(ctx, nd, "POST", "/v1/events", req, &res)
			cancel()
			if status == http.StatusBadRequest {
				if newer && nd.running() != l.newer {
					break // sent just as nd went back to an older release
				}
				l.c.t.Errorf("%s refused an append: %v", nd.name, err)
				break
			}
			if err != nil {
				l.errs.Add(1)
				time.Sleep(time.Duration(try) * 20 * time.Millisecond)
				continue
			}
			l.record(res)
			l.mu.Lock()
			l.byHome[first]++
			l.mu.Unlock()
			break
		}
	}
}

func (l *load) record(res eventlog.Result) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range res.Events {
		if old, ok := l.acked[p.ID]; ok && old != p {
			l.c.t.Errorf("event %s acknowledged at %+v and at %+v", p.ID, old, p)
		}
		l.acked[p.ID] = p
	}
}

// halt stops the writers and waits for them; halted, it does nothing.
func (l *load) halt() {
	if l.stop == nil {
		return
	}
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

func newULID() string { return ulid.Make().String() }

// checkConverged reads the whole log from every node and checks it, and
// that every node's ledger read model holds the same rows.
func (c *cluster) checkConverged(l *load) {
	c.t.Helper()
	var last uint64
	for _, n := range c.nodes {
		st, err := c.status(n)
		if err != nil {
			c.t.Fatalf("%s: %v", n.name, err)
		}
		last = max(last, st.LastSeq)
	}
	var hashes []string
	for _, n := range c.nodes {
		c.checkLog(n, l, last)
		hashes = append(hashes, c.ledgerHash(n, last))
	}
	for i, h := range hashes {
		if h != hashes[0] {
			c.t.Fatalf("ledger of %s hashes to %s, of %s to %s", c.nodes[i].name, h, c.nodes[0].name, hashes[0])
		}
	}
	c.t.Logf("log of %d events, %d acknowledged, identical on the three nodes; ledger hash %s", last, len(l.acked), hashes[0][:12])
}

// checkLog: on node n the log is gap-free to last, every stream's
// versions run 1, 2, 3..., every acknowledged event is there once at its
// acknowledged position, and nothing of the load's types is there that
// was never sent. It returns the events of the load's types.
func (c *cluster) checkLog(n *node, l *load, last uint64) []eventlog.Event {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	versions := map[string]uint64{}
	ids := map[string]uint64{}
	var seq uint64
	var loads []eventlog.Event
	for seq < last {
		var page eventlog.Page
		if _, err := c.call(ctx, n, "GET", fmt.Sprintf("/v1/events?after=%d&limit=1000", seq), nil, &page); err != nil {
			c.t.Fatalf("%s: %v", n.name, err)
		}
		if len(page.Events) == 0 {
			time.Sleep(50 * time.Millisecond) // a replica catching up
			continue
		}
		for _, e := range page.Events {
			if e.Malformed != nil {
				c.t.Fatalf("%s: malformed entry at %d: %+v", n.name, e.Seq, e.Malformed)
			}
			if e.Seq != seq+1 {
				c.t.Fatalf("%s: seq %d after %d: a gap", n.name, e.Seq, seq)
			}
			seq = e.Seq
			if e.Version != versions[e.Stream]+1 {
				c.t.Fatalf("%s: %s at version %d after %d", n.name, e.Stream, e.Version, versions[e.Stream])
			}
			versions[e.Stream] = e.Version
			if prev, dup := ids[e.ID]; dup {
				c.t.Fatalf("%s: event %s at %d and %d", n.name, e.ID, prev, e.Seq)
			}
			ids[e.ID] = e.Seq
			if l.types[e.Type] {
				if !l.tried[e.ID] {
					c.t.Fatalf("%s: event %s at %d was never sent", n.name, e.ID, e.Seq)
				}
				loads = append(loads, e)
			}
		}
	}
	for id, p := range l.acked {
		if got, ok := ids[id]; !ok || got != p.Seq {
			c.t.Fatalf("%s: acknowledged event %s (seq %d) found at %d (present %v): an acknowledged write was lost", n.name, id, p.Seq, got, ok)
		}
	}
	return loads
}

// ledgerHash hashes the node's ledger table once it has folded the log
// up to last.
func (c *cluster) ledgerHash(n *node, last uint64) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var res struct {
		Rows [][]any `json:"rows"`
	}
	q := map[string]any{"projection": "ledger", "min_seq": last, "timeout_ms": 30000,
		"sql": "SELECT count(*), group_concat(seq || ' ' || id || ' ' || stream || ' ' || version || ' ' || data, char(10)) FROM (SELECT * FROM entries ORDER BY seq)"}
	for {
		_, err := c.call(ctx, n, "POST", "/v1/query", q, &res)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			c.t.Fatalf("%s: ledger: %v", n.name, err)
		}
		time.Sleep(100 * time.Millisecond) // 503 while it catches up
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 2 {
		c.t.Fatalf("%s: ledger answer %v", n.name, res.Rows)
	}
	s, _ := res.Rows[0][1].(string)
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// clusterRounds is how many times the tests kill the stream's leader.
func clusterRounds() int {
	if os.Getenv("FAZT_SOAK") != "" {
		return 20
	}
	return 2
}

// The cluster's failures, on one three-node cluster:
//
//   - Side effects once per cluster: the fx reactor runs on every node on
//     one shared durable consumer, and each event's side effect happens
//     once.
//   - The stream's leader SIGKILLed under load, round after round (more
//     with FAZT_SOAK=1): every node keeps taking appends (a writer whose
//     node is down retries on the next, with the same IDs), the others
//     elect a leader and go on, and the killed node restarts and catches
//     up.
//   - The leader cut off with SIGSTOP: the appends sent to it wait, the
//     others go on, and whatever it acknowledges once it returns is in
//     the log.
//
// At the end every node holds the same log: gap-free, every stream's
// versions contiguous, every acknowledged event once at its acknowledged
// position, nothing that was never sent; and every node's read model
// hashes the same.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-node cluster")
	}
	c := startCluster(t)
	c.checkOncePerCluster()

	ld := c.newLoad()
	ld.run(2)
	for round := range clusterRounds() {
		ld.waitProgress(10)
		victim := c.leader(nil)
		t.Logf("round %d: SIGKILL %s, the stream's leader (%d acknowledged so far)", round+1, victim.name, ld.count())
		ld.pause(victim, true)
		c.kill(victim)
		c.leader(victim)    // fails unless another node leads within a minute
		ld.waitProgress(10) // the two others take appends
		c.start(victim)
		c.waitReady(victim)
		ld.pause(victim, false)
	}

	ld.waitProgress(10)
	victim := c.leader(nil)
	t.Logf("SIGSTOP %s, the stream's leader (%d acknowledged so far)", victim.name, ld.count())
	ld.pause(victim, true) // as a load balancer would, once /readyz fails
	if err := victim.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Appends sent to the stopped node wait for it.
	type answer struct {
		res eventlog.Result
		err error
	}
	var stopped []chan answer
	for i := range 5 {
		ch := make(chan answer, 1)
		stopped = append(stopped, ch)
		id := newULID()
		ld.mu.Lock()
		ld.tried[id] = true
		ld.mu.Unlock()
		go func() {
			var a answer
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, a.err = c.call(ctx, victim, "POST", "/v1/events", appendReq{Events: []map[string]any{{"id": id, "stream": fmt.Sprintf("acct.%d", i), "type": "acct.moved", "data": map[string]any{"stopped": true}}}}, &a.res)
			ch <- a
		}()
	}
	c.leader(victim)    // fails unless another node leads within a minute
	ld.waitProgress(10) // the others go on
	if err := victim.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	answered := 0
	for _, ch := range stopped {
		if a := <-ch; a.err == nil {
			answered++
			ld.record(a.res)
		}
	}
	t.Logf("%d of the %d appends sent to the stopped node were acknowledged once it returned (the others failed; all are checked)", answered, len(stopped))
	c.waitReady(victim)
	ld.pause(victim, false)
	ld.waitProgress(10)
	ld.halt()
	c.checkConverged(ld)
	c.checkStatus()
	t.Logf("%d leader kills and a SIGSTOP; %d tries failed and were retried on another node", clusterRounds(), ld.errs.Load())
}

// checkOncePerCluster appends fx events on every node and waits until
// each one's side effect has happened, checking none happened twice.
func (c *cluster) checkOncePerCluster() {
	t := c.t
	t.Helper()
	var fx []string
	for i := range 20 {
		id := newULID()
		fx = append(fx, id)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := c.call(ctx, c.nodes[i%3], "POST", "/v1/events", appendReq{Events: []map[string]any{{"id": id, "stream": "fx.1", "type": "fx.asked", "data": map[string]any{}}}}, nil)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		b, _ := os.ReadFile(c.effects)
		seen := map[string]int{}
		nodes := map[string]bool{}
		for _, ln := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if f := strings.Fields(ln); len(f) == 3 {
				seen[f[1]]++
				nodes[f[2]] = true
			}
		}
		done := true
		for _, id := range fx {
			done = done && seen[id] > 0
		}
		if done {
			for id, k := range seen {
				if k > 1 {
					t.Errorf("the side effect of %s happened %d times", id, k)
				}
			}
			t.Logf("%d side effects, once each, by %d node(s)", len(seen), len(nodes))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("side effects after a minute: %v", seen)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

func (l *load) pause(n *node, paused bool) {
	l.mu.Lock()
	l.paused[n] = paused
	l.mu.Unlock()
}

// waitProgress waits until n more appends are acknowledged: the cluster
// takes appends (a minute at most: appends waiting on a lost leader
// time out first).
func (l *load) waitProgress(n int) {
	l.c.t.Helper()
	before := l.count()
	for deadline := time.Now().Add(time.Minute); l.count() < before+n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			l.c.t.Fatalf("%d appends acknowledged in a minute: the cluster does not take appends", l.count()-before)
		}
	}
}

// waitEach waits until the writers of every node have n more appends
// acknowledged: each node's writers, on whatever release their node
// runs now, have written in the cluster's present state (a minute at
// most, as waitProgress).
func (l *load) waitEach(n int) {
	l.c.t.Helper()
	l.mu.Lock()
	before := maps.Clone(l.byHome)
	l.mu.Unlock()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		l.mu.Lock()
		var behind *node
		for _, nd := range l.c.nodes {
			if l.byHome[nd] < before[nd]+n {
				behind = nd
			}
		}
		got := l.byHome[behind] - before[behind]
		l.mu.Unlock()
		if behind == nil {
			return
		}
		if time.Now().After(deadline) {
			l.c.t.Fatalf("the writers of %s had %d appends acknowledged in a minute", behind.name, got)
		}
	}
}

// checkStatus runs `fazt cluster status` against a node, and reads its
// /metrics: three replicas, a leader, routes to the two others, and the
// read models of all three nodes.
func (c *cluster) checkStatus() {
	t := c.t
	t.Helper()
	n := c.nodes[0]
	addr, token := n.endpoint()
	var out, errb strings.Builder
	var err error
	for range 100 { // every node answers, and the stream has a leader
		out.Reset()
		errb.Reset()
		err = run(context.Background(), testVerticals, []string{"cluster", "status", "--addr", addr, "--token", token}, noEnv, strings.NewReader(""), &out, &errb)
		if err == nil && strings.Count(out.String(), "\nnode ") == 3 && !strings.Contains(out.String(), "leader    none") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	text := out.String()
	if err != nil || !strings.Contains(text, "cluster   test") || strings.Count(text, "\nreplica ") != 3 || strings.Count(text, "\nroute ") != 2 ||
		strings.Count(text, "\nnode ") != 3 || !strings.Contains(text, "ledger ") || strings.Contains(text, "leader    none") || !strings.Contains(text, "\nroutes    mutual TLS (this node's certificate expires ") {
		t.Fatalf("fazt cluster status: %v\n%s%s", err, text, errb.String())
	}
	t.Logf("fazt cluster status:\n%s", text)
	req, _ := http.NewRequest("GET", addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"fazt_cluster_peers 2", `fazt_cluster_replica_lag{node="n1"}`, `fazt_cluster_replica_current{node="n2"}`, "fazt_cluster_is_leader "} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// rollingNote is the event type of the upgrade kit's notes vertical.
const rollingNote = "notes.added"

// rollingRounds is how many times the rolling upgrade takes a node back
// to the old release and up again once all run the new one, how many
// appends each node's writers make in each state before it is checked,
// and how many writers append on each node.
func rollingRounds() (rounds, appends, writers int) {
	if os.Getenv("FAZT_SOAK") != "" {
		return 6, 400, 2
	}
	return 1, 15, 1
}

// noteEvent is the rolling upgrade's load: notes on five streams per
// node; once its node runs v0.2.0, two notes in three are version 2,
// with a priority. The note's ID is the event's. Its text starts with
// the version it was written at.
func noteEvent(home *node, rng *rand.Rand, w, j, k int) map[string]any {
	return noteOn(home, fmt.Sprintf("notes.%s-%d", home.name, rng.IntN(5)),
		home.running() == newVersion && j%3 != 0, fmt.Sprintf("w%d j%d k%d", w, j, k), j%5+1)
}

func noteOn(n *node, stream string, v2 bool, text string, priority int) map[string]any {
	id := newULID()
	if !v2 {
		return map[string]any{"id": id, "stream": stream, "type": rollingNote,
			"data": map[string]any{"id": id, "text": "v1 by " + n.name + " " + text}}
	}
	return map[string]any{"id": id, "stream": stream, "type": rollingNote, "schema": 2,
		"data": map[string]any{"id": id, "text": "v2 by " + n.name + " " + text, "priority": priority}}
}

// A rolling upgrade on one log, with two real builds of the binary
// (the upgrade tests' kit): v0.1.0, and v0.2.0, which adds version 2 of
// notes.added (an optional priority) and version 2 of the notes read
// model (a priority column, filled by a rebuild from the log).
//
// Three v0.1.0 nodes take appends on every node; one by one each is
// stopped with SIGTERM and started as v0.2.0 on the same data and
// cluster flags while the writers go on, then (rollingRounds) a node
// goes back to v0.1.0 and up again. After each change the cluster takes
// appends in its mixed state, and then, the writers paused, is checked:
//
//   - every node is ready and serves queries, its notes read model
//     running at the version of its release, at the log's tail;
//   - every node appends a version 1 note; a v0.2.0 node a version 2
//     note; a v0.1.0 node refuses a version 2 note with 400 naming the
//     versions it knows, and it is not in the log;
//   - what an old node does with a version it does not know: its log
//     serves the event as written (schema 2, the priority in its data),
//     and its read model folds it with the fields release 1 knows
//     (schemas.Decode): neither skipped nor halted, the notes table has
//     a row for every note, and no priority: no such column on a node
//     that never ran v0.2.0, the column v0.2.0 added left NULL on one
//     back from it (the older file serves again, caught up);
//   - a v0.2.0 node has a priority for exactly the version 2 notes;
//   - the log is the same on every node: gap-free, versions contiguous,
//     every acknowledged append there once at its position.
//
// At the end, all on v0.2.0 and stopped, the three notes read models
// hash the same (kerneltest.HashTables), the priority column included.
func TestClusterRollingUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-node cluster of two builds")
	}
	kit := sharedUpgradeKit(t)
	c := startClusterOf(t, kit.old, oldVersion)
	ld := c.newLoad()
	ld.event, ld.newer, ld.types = noteEvent, newVersion, map[string]bool{rollingNote: true}
	rounds, appends, writers := rollingRounds()
	upgraded := map[*node]bool{} // nodes that have run v0.2.0
	check := func(state string) {
		t.Helper()
		ld.waitEach(appends) // every node's writers append in this state
		ld.halt()
		notes, v2 := c.checkRolling(ld, upgraded)
		t.Logf("%s: %d notes, %d of version 2, %d acknowledged appends, %d tries retried", state, notes, v2, ld.count(), ld.errs.Load())
	}
	replace := func(n *node, bin, release string) {
		t.Helper()
		n.setRelease(oldVersion) // no version 2 note goes to it while it changes
		c.stop(n)
		n.bin = bin
		c.start(n)
		c.waitReady(n)
		n.setRelease(release)
		upgraded[n] = upgraded[n] || release == newVersion
	}
	ld.run(writers)
	check("all on " + oldVersion)
	for _, n := range c.nodes {
		ld.run(writers)
		replace(n, kit.new, newVersion)
		check(n.name + " on " + newVersion)
	}
	for r := range rounds {
		n := c.nodes[(2+r)%len(c.nodes)]
		ld.run(writers)
		replace(n, kit.old, oldVersion)
		check(n.name + " back on " + oldVersion)
		ld.run(writers)
		replace(n, kit.new, newVersion)
		check(n.name + " on " + newVersion + " again")
	}

	var hashes []string
	for _, n := range c.nodes {
		c.stop(n)
		hashes = append(hashes, notesHash(t, n))
	}
	for i, h := range hashes {
		if h != hashes[0] {
			t.Fatalf("the notes of %s hash to %s, of %s to %s", c.nodes[i].name, h, c.nodes[0].name, hashes[0])
		}
	}
	t.Logf("%d node changes under load (%d rounds back to %s and up), %d acknowledged appends; the three read models hash to %s",
		3+2*rounds, rounds, oldVersion, ld.count(), hashes[0][:12])
}

// checkRolling checks the cluster of the rolling upgrade, its load
// halted (see TestClusterRollingUpgrade), and returns how many notes
// the log holds and how many of them are version 2.
func (c *cluster) checkRolling(l *load, upgraded map[*node]bool) (notes, v2 int) {
	t := c.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	appendNote := func(n *node, e map[string]any) (int, error) {
		var res eventlog.Result
		status, err := c.call(ctx, n, "POST", "/v1/events", appendReq{Events: []map[string]any{e}}, &res)
		if err == nil {
			l.record(res)
		}
		return status, err
	}
	var refused []string
	for _, n := range c.nodes {
		e := noteOn(n, "notes."+n.name+"-own", false, "asked", 0)
		l.mu.Lock()
		l.tried[e["id"].(string)] = true
		l.mu.Unlock()
		if _, err := appendNote(n, e); err != nil {
			t.Fatalf("%s (%s) does not take a version 1 note: %v", n.name, n.running(), err)
		}
		e = noteOn(n, "notes."+n.name+"-own", true, "asked", 9)
		if n.running() == newVersion {
			l.mu.Lock()
			l.tried[e["id"].(string)] = true
			l.mu.Unlock()
			if _, err := appendNote(n, e); err != nil {
				t.Fatalf("%s (%s) does not take a version 2 note: %v", n.name, newVersion, err)
			}
			continue
		}
		status, err := appendNote(n, e)
		if want := `event type \"notes.added\" has no schema version 2 (registered: version 1)`; status != http.StatusBadRequest || err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s (%s) answered a version 2 note with %d %v, want 400 and %s", n.name, n.running(), status, err, want)
		}
		refused = append(refused, e["id"].(string))
	}

	var last uint64
	for _, n := range c.nodes {
		st, err := c.status(n)
		if err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
		last = max(last, st.LastSeq)
	}
	var evs []eventlog.Event
	var sumPriority int
	var sample eventlog.Event // a version 2 note, for the old nodes to read
	for i, n := range c.nodes {
		got := c.checkLog(n, l, last)
		if i > 0 {
			if len(got) != len(evs) {
				t.Fatalf("%s holds %d notes to seq %d, %s %d", n.name, len(got), last, c.nodes[0].name, len(evs))
			}
			for j := range got {
				if got[j].ID != evs[j].ID || got[j].Seq != evs[j].Seq || got[j].Schema != evs[j].Schema || !bytes.Equal(got[j].Data, evs[j].Data) {
					t.Fatalf("%s and %s differ at seq %d", n.name, c.nodes[0].name, got[j].Seq)
				}
			}
			continue
		}
		evs = got
		for _, e := range evs {
			if e.Schema != 2 {
				continue
			}
			v2++
			var d struct{ Priority int }
			if err := json.Unmarshal(e.Data, &d); err != nil || d.Priority == 0 {
				t.Fatalf("version 2 note %s has no priority: %s", e.ID, e.Data)
			}
			sumPriority += d.Priority
			sample = e
		}
	}
	for _, id := range refused {
		for _, e := range evs {
			if e.ID == id {
				t.Fatalf("the version 2 note %s an old node refused is in the log at %d", id, e.Seq)
			}
		}
	}

	query := func(n *node, sql string) ([][]any, int, error) {
		var res struct {
			Rows [][]any `json:"rows"`
		}
		// A read model still folding answers 503 after the query API's
		// 5 s wait for min_seq: on a loaded machine ask again, for up to
		// two minutes.
		deadline := time.Now().Add(2 * time.Minute)
		for {
			status, err := c.call(ctx, n, "POST", "/v1/query", map[string]any{"projection": "notes", "sql": sql, "min_seq": last, "timeout_ms": 60000}, &res)
			if status != http.StatusServiceUnavailable || time.Now().After(deadline) {
				return res.Rows, status, err
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	want := func(n *node, sql string, values ...int) {
		t.Helper()
		rows, _, err := query(n, sql)
		if err != nil {
			t.Fatalf("%s (%s): %v", n.name, n.running(), err)
		}
		if len(rows) != 1 || fmt.Sprint(rows[0]) != fmt.Sprint(values) {
			t.Fatalf("%s (%s): %s answered %v, want %v", n.name, n.running(), sql, rows, values)
		}
	}
	for _, n := range c.nodes {
		addr, _ := n.endpoint()
		resp, err := c.hc.Get(addr + "/readyz")
		if err != nil {
			t.Fatalf("%s (%s): %v", n.name, n.running(), err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s (%s): /readyz answered %d", n.name, n.running(), resp.StatusCode)
		}
		release := 1
		if n.running() == newVersion {
			release = 2
		}
		// Every note has a row: the fold neither skipped nor halted.
		want(n, "SELECT count(*), count(CASE WHEN text LIKE 'v2 %' THEN 1 END) FROM notes", len(evs), v2)
		var st projections.Status
		if _, err := c.call(ctx, n, "GET", "/v1/projections/notes", nil, &st); err != nil {
			t.Fatal(err)
		}
		if st.State != projections.StateRunning || st.Halted != nil || st.Version != release || st.ServingVersion != release || st.Seq < last {
			t.Fatalf("%s (%s): notes read model %+v, want running at version %d, at seq %d or later", n.name, n.running(), st, release, last)
		}
		if release == 2 {
			want(n, "SELECT count(priority), coalesce(sum(priority), 0) FROM notes", v2, sumPriority)
			continue
		}
		// Release 1 knows no priority. Its file has no such column, unless
		// the node ran v0.2.0 before: that added the column to it at
		// start (tables only grow), and release 1 leaves it NULL.
		rows, status, err := query(n, "SELECT count(priority) FROM notes")
		switch {
		case !upgraded[n]:
			if status != http.StatusBadRequest || err == nil || !strings.Contains(err.Error(), "no such column: priority") {
				t.Fatalf("%s (%s, never upgraded) answered a query of priority with %d %v %v, want 400 and no such column", n.name, n.running(), status, rows, err)
			}
		case err != nil || fmt.Sprint(rows) != "[[0]]":
			t.Fatalf("%s (%s, back from %s) has priorities: %v %v", n.name, n.running(), newVersion, rows, err)
		}
		if sample.ID == "" {
			continue
		}
		var page struct {
			Events []eventlog.Event `json:"events"`
		}
		if _, err := c.call(ctx, n, "GET", fmt.Sprintf("/v1/streams/%s?from=%d&limit=1", sample.Stream, sample.Version), nil, &page); err != nil {
			t.Fatalf("%s (%s) reading %s: %v", n.name, n.running(), sample.Stream, err)
		}
		if len(page.Events) != 1 || page.Events[0].ID != sample.ID || page.Events[0].Schema != 2 || !bytes.Equal(page.Events[0].Data, sample.Data) {
			t.Fatalf("%s (%s) reads the version 2 note %s as %+v, want it as written: %s", n.name, n.running(), sample.ID, page.Events, sample.Data)
		}
	}
	return len(evs), v2
}

// notesHash hashes the tables of a stopped node's notes read model; the
// notes table must have its priority column.
func notesHash(t *testing.T, n *node) string {
	t.Helper()
	dir := filepath.Join(n.dir, "projections", "notes")
	b, err := os.ReadFile(filepath.Join(dir, "current"))
	if err != nil {
		t.Fatal(err)
	}
	var cur struct{ Current string }
	if err := json.Unmarshal(b, &cur); err != nil || cur.Current == "" {
		t.Fatalf("%s: notes pointer %s: %v", n.name, b, err)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, cur.Current)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var text bytes.Buffer
	h := sha256.New()
	if err := kerneltest.HashTables(ctx, tx, io.MultiWriter(h, &text)); err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
	if !strings.Contains(text.String(), "table notes [id text priority]\n") {
		t.Fatalf("%s: the notes read model has no priority column:\n%.300s", n.name, text.String())
	}
	return hex.EncodeToString(h.Sum(nil))
}
