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
	"math/rand/v2"
	"net"
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
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/reactor"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
)

// The cluster tests run three `fazt serve --cluster` processes on
// loopback: children of the test binary (TestClusterChild), with the
// test's verticals plus clusterVertical.

const (
	envClusterChild = "FAZT_CLUSTER_CHILD" // the child's arguments, as JSON
	envEffects      = "FAZT_CLUSTER_EFFECTS"
	envBuild        = "FAZT_BUILD" // "2": the newer release of clusterVertical
	clusterSecret   = "the-secret-of-the-test-cluster"
)

// clusterVertical folds every "acct" event into the ledger read model,
// whose table the nodes must agree on, and runs the "fx" reactor, whose
// side effect (a line in a file all nodes share) must happen once per
// cluster.
//
// FAZT_BUILD=2 makes a node the newer release of the vertical: a second
// version of acct.moved (an optional "memo") and version 2 of the
// ledger with a memo column, filled from the events that carry one.
func clusterVertical(k *kernel.Kernel) error {
	for _, typ := range []string{"acct.moved", "fx.asked"} {
		if err := k.RegisterEvent(typ, 1, []byte(anyObject)); err != nil {
			return err
		}
	}
	newer := os.Getenv(envBuild) == "2"
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
	if newer {
		if err := k.RegisterEvent("acct.moved", 2, []byte(`{"type":"object","properties":{"memo":{"type":"string"}}}`)); err != nil {
			return err
		}
		ledger.Version = 2
		ledger.Tables = []schemas.Table{{Name: "entries", Columns: append(cols, schemas.Column{Name: "memo", Type: "TEXT"})}}
		ledger.Apply = func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
			var d struct {
				Memo *string `json:"memo"`
			}
			_ = json.Unmarshal(e.Data, &d) // data is any object
			_, err := tx.ExecContext(ctx, `INSERT INTO entries (seq, id, stream, version, data, memo) VALUES (?, ?, ?, ?, ?, ?)`,
				e.Seq, e.ID, e.Stream, e.Version, string(e.Data), d.Memo)
			return err
		}
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
	build             string // FAZT_BUILD
	cmd               *exec.Cmd
	exited            chan struct{} // closed once cmd has ended
	stderr            *syncBuffer

	mu          sync.Mutex // the load's writers read addr and token
	addr, token string
}

// endpoint returns the node's HTTP address and token ("" while it starts).
func (n *node) endpoint() (string, string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.addr, n.token
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startCluster starts three nodes and waits until each is ready.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{t: t, effects: filepath.Join(t.TempDir(), "effects"), hc: &http.Client{Timeout: 20 * time.Second}}
	var peers []string
	for i := range 3 {
		n := &node{name: fmt.Sprintf("n%d", i), dir: t.TempDir(), listen: freeListen(t)}
		peers = append(peers, n.listen)
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		n.args = []string{"serve", "--data", n.dir, "--addr", "127.0.0.1:0", "--cluster", "test", "--node", n.name,
			"--cluster-listen", n.listen, "--peers", strings.Join(peers, ",")}
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
	b, _ := json.Marshal(n.args)
	cmd := exec.Command(os.Args[0], "-test.run=^TestClusterChild$", "-test.count=1", "-test.timeout=20m")
	cmd.Env = append(os.Environ(), envClusterChild+"="+string(b), "FAZT_CLUSTER_SECRET="+clusterSecret,
		"FAZT_NODE="+n.name, envEffects+"="+c.effects, envBuild+"="+n.build)
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
}

func (c *cluster) newLoad() *load {
	return &load{c: c, acked: map[string]eventlog.Position{}, tried: map[string]bool{}, stop: make(chan struct{}), paused: map[*node]bool{}}
}

func (l *load) run(writers int) {
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
		for k := range n {
			id := newULID()
			req.Events = append(req.Events, map[string]any{"id": id, "stream": fmt.Sprintf("acct.%d", rng.IntN(20)), "type": "acct.moved",
				"data": map[string]any{"from": first.name, "w": w, "j": j, "k": k}})
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
			if addr, _ := nd.endpoint(); addr == "" || paused {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			var res eventlog.Result
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			_, err := l.c.call(ctx, nd, "POST", "/v1/events", req, &res)
			cancel()
			if err != nil {
				l.errs.Add(1)
				time.Sleep(time.Duration(try) * 20 * time.Millisecond)
				continue
			}
			l.record(res)
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

func (l *load) halt() {
	close(l.stop)
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
// acknowledged position, and nothing is there that was never sent.
func (c *cluster) checkLog(n *node, l *load, last uint64) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	versions := map[string]uint64{}
	ids := map[string]uint64{}
	var seq uint64
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
			if e.Type == "acct.moved" && !l.tried[e.ID] {
				c.t.Fatalf("%s: event %s at %d was never sent", n.name, e.ID, e.Seq)
			}
		}
	}
	for id, p := range l.acked {
		if got, ok := ids[id]; !ok || got != p.Seq {
			c.t.Fatalf("%s: acknowledged event %s (seq %d) found at %d (present %v): an acknowledged write was lost", n.name, id, p.Seq, got, ok)
		}
	}
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
		strings.Count(text, "\nnode ") != 3 || !strings.Contains(text, "ledger ") || strings.Contains(text, "leader    none") {
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

// A rolling upgrade on one log: the nodes are upgraded one at a time to
// a release with a second version of an event type and a new column in
// a read model. Old and new nodes serve side by side: each appends what
// it knows (an old node refuses the version it does not know, and reads
// it, with the fields it knows), the new nodes' read model has the
// column filled, and every node ends with the same rows.
func TestClusterRollingUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-node cluster")
	}
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ld := c.newLoad()
	appendOn := func(n *node, schema int, memo string) error {
		e := map[string]any{"id": newULID(), "stream": "acct.up", "type": "acct.moved", "data": map[string]any{"by": n.name}}
		if schema > 1 {
			e["schema"] = schema
			e["data"] = map[string]any{"by": n.name, "memo": memo}
		}
		ld.mu.Lock()
		ld.tried[e["id"].(string)] = true
		ld.mu.Unlock()
		var res eventlog.Result
		_, err := c.call(ctx, n, "POST", "/v1/events", appendReq{Events: []map[string]any{e}}, &res)
		if err == nil {
			ld.record(res)
		}
		return err
	}
	for _, n := range c.nodes {
		if err := appendOn(n, 1, ""); err != nil {
			t.Fatal(err)
		}
	}
	for i, n := range c.nodes {
		// Upgrade n: stop it gracefully, start the newer release.
		n.cmd.Process.Signal(syscall.SIGTERM)
		<-n.exited
		n.build = "2"
		c.start(n)
		c.waitReady(n)
		if err := appendOn(n, 2, fmt.Sprintf("from %s", n.name)); err != nil {
			t.Fatalf("the upgraded %s: %v", n.name, err)
		}
		for _, m := range c.nodes[i+1:] {
			// An old node: appends what it knows, refuses what it does not.
			if err := appendOn(m, 1, ""); err != nil {
				t.Fatalf("old %s next to an upgraded node: %v", m.name, err)
			}
			if err := appendOn(m, 2, "x"); err == nil || !strings.Contains(err.Error(), "400") {
				t.Fatalf("old %s took a version it does not know: %v", m.name, err)
			}
			// It reads the newer events, with the fields it knows.
			var page struct {
				Events []eventlog.Event `json:"events"`
			}
			if _, err := c.call(ctx, m, "GET", "/v1/streams/acct.up?from=1&limit=100", nil, &page); err != nil {
				t.Fatalf("old %s reading: %v", m.name, err)
			}
			v2 := 0
			for _, e := range page.Events {
				if e.Schema == 2 {
					v2++
				}
			}
			if v2 != i+1 {
				t.Fatalf("old %s sees %d events of version 2, want %d", m.name, v2, i+1)
			}
		}
		// Mixed: the two releases' read models hold the same rows.
		c.checkConverged(ld)
	}
	// Every node now has the memo column, filled where the event had one.
	for _, n := range c.nodes {
		var res struct {
			Rows [][]any `json:"rows"`
		}
		q := map[string]any{"projection": "ledger", "sql": "SELECT count(memo) FROM entries", "timeout_ms": 30000}
		if _, err := c.call(ctx, n, "POST", "/v1/query", q, &res); err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
		if len(res.Rows) != 1 || fmt.Sprint(res.Rows[0][0]) != "3" {
			t.Fatalf("%s: memos %v, want 3", n.name, res.Rows)
		}
	}
}
