package eventlog_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/fazt-sh/fazt/eventlog"
)

// nodes is a cluster of three: nodes 0 and 1 are logs in this process,
// node 2 a child process (TestClusterFailoverChild) that can be killed
// with SIGKILL while it leads the event stream, and started again.
type nodes struct {
	t     *testing.T
	dirs  []string
	addrs []string
	logs  []*eventlog.Log // nil for the child
	certs []*eventlog.ClusterTLS
	child *exec.Cmd
}

// envFailoverChild turns TestClusterFailoverChild into node 2: the
// node's configuration, JSON.
const envFailoverChild = "FAZT_FAILOVER_CHILD"

type childConf struct {
	Dir, Node, Listen string
	Peers             []string
	TLS               *eventlog.ClusterTLS
}

// TestClusterFailoverChild is node 2 of TestClusterLeaderLostMidAppend;
// on its own it skips. It opens its log, says so, and waits to be
// killed (it exits by itself after a few minutes).
func TestClusterFailoverChild(t *testing.T) {
	conf := os.Getenv(envFailoverChild)
	if conf == "" {
		t.Skip("the child process of TestClusterLeaderLostMidAppend")
	}
	var c childConf
	if err := json.Unmarshal([]byte(conf), &c); err != nil {
		t.Fatal(err)
	}
	l := eventlog.New(c.Dir)
	l.Replicas = 3
	l.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	l.Cluster = &eventlog.Cluster{Name: "test", Node: c.Node, Listen: c.Listen, Peers: c.Peers, Secret: testSecret, TLS: c.TLS}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := l.Open(ctx); err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	time.Sleep(5 * time.Minute)
	l.Close(context.Background())
}

func newNodes(t *testing.T) *nodes {
	c := &nodes{t: t, addrs: freeAddrs(t, 3), logs: make([]*eventlog.Log, 2), certs: clusterCerts(t, "n0", "n1", "n2")}
	for range 3 {
		c.dirs = append(c.dirs, t.TempDir())
	}
	t.Cleanup(func() {
		c.kill()
		for _, l := range c.logs {
			if l != nil {
				l.Close(context.Background())
			}
		}
	})
	ready := make(chan error, 1)
	go func() { ready <- c.startChild() }()
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = c.open(i) }()
	}
	wg.Wait()
	if err := errors.Join(append(errs, <-ready)...); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *nodes) open(i int) error {
	l := eventlog.New(c.dirs[i])
	l.Replicas = 3
	// An append without an answer fails after 2 s unless it is sent
	// again (an election takes longer: JetStream's followers wait 4 s
	// or more for a lost leader), and is sent again for up to a minute.
	l.RequestTimeout, l.FailoverTimeout = 2*time.Second, time.Minute
	l.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	l.Cluster = &eventlog.Cluster{Name: "test", Node: fmt.Sprintf("n%d", i), Listen: c.addrs[i], Peers: c.addrs, Secret: testSecret, TLS: c.certs[i]}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c.logs[i] = l
	return l.Open(ctx)
}

// startChild starts node 2 and waits until its log is open.
func (c *nodes) startChild() error {
	conf, _ := json.Marshal(childConf{Dir: c.dirs[2], Node: "n2", Listen: c.addrs[2], Peers: c.addrs, TLS: c.certs[2]})
	cmd := exec.Command(os.Args[0], "-test.run=^TestClusterFailoverChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), envFailoverChild+"="+string(conf))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	c.child = cmd
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if sc.Text() == "ready" {
			go io.Copy(io.Discard, out)
			return nil
		}
	}
	cmd.Wait()
	return fmt.Errorf("node 2 (child process) ended before its log opened")
}

// kill ends node 2 with SIGKILL.
func (c *nodes) kill() {
	if c.child != nil {
		c.child.Process.Kill()
		c.child.Wait()
		c.child = nil
	}
}

// leader returns the node that leads the event stream.
func (c *nodes) leader() string {
	c.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := c.logs[0].ClusterStatus(context.Background())
		if err == nil && st.Leader != "" {
			return st.Leader
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no stream leader: %+v %v", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leadChild makes node 2 the stream's leader: JetStream's leader steps
// down in its favour.
func (c *nodes) leadChild() {
	c.t.Helper()
	req := []byte(`{"placement":{"preferred":"n2"}}`)
	for try := 0; c.leader() != "n2"; try++ {
		if try == 50 {
			c.t.Fatalf("node 2 never became the stream's leader (%s leads)", c.leader())
		}
		c.logs[0].PublishConnForTest().Request("$JS.API.STREAM.LEADER.STEPDOWN."+eventlog.DefaultStreamName, req, 5*time.Second)
		time.Sleep(200 * time.Millisecond)
	}
}

// try is one append of the load: when it was made and answered, and how.
type try struct {
	start, end time.Time
	res        eventlog.Result
	err        error
}

func failoverRounds() int {
	if os.Getenv("FAZT_SOAK") != "" {
		return 10
	}
	return 2
}

// The stream leader is killed (SIGKILL) while the other nodes append, with
// expectations, log-made IDs, caller-chosen IDs and atomic batches. Every
// append in flight to it either lands exactly once, answered with its
// own positions (sent again with the same IDs once a new leader is
// elected, never refused by its own guard), or fails with
// ErrUnavailable after RequestTimeout, having landed at most once. The
// node starts again and catches up; the rounds repeat.
func TestClusterLeaderLostMidAppend(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a cluster")
	}
	c := newNodes(t)
	ctx := context.Background()
	acked := map[string]eventlog.Position{}
	var inFlight, recovered, failed int
	var recover []time.Duration // from the kill to the answer, of appends in flight at it
	var firstAfter []time.Duration
	writers := []int{0, 1}
	for round := range failoverRounds() {
		c.leadChild()
		resentAt := map[int]uint64{}
		for _, i := range writers {
			resentAt[i] = c.logs[i].Stats().Resent
		}
		var mu sync.Mutex
		var tries []try
		var after atomic.Int64 // appends made after the shutdown and acknowledged
		var killed atomic.Pointer[time.Time]
		stop := make(chan struct{})
		var done atomic.Int64
		var wg sync.WaitGroup
		for _, i := range writers {
			l := c.logs[i]
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					own := fmt.Sprintf("acct.r%d-n%d-%d", round, i, w)
					var version uint64
					for j := 0; ; j++ {
						select {
						case <-stop:
							return
						default:
						}
						data := json.RawMessage(fmt.Sprintf(`{"token":"r%d-n%d-%d-%d"}`, round, i, w, j))
						evs := []eventlog.Event{{Stream: own, Type: "acct.moved", Data: data}}
						switch j % 3 {
						case 1: // caller-chosen ID
							evs[0].ID = l.NewID()
						case 2: // an atomic batch across two streams
							evs = append(evs, eventlog.Event{Stream: fmt.Sprintf("other.r%d-n%d-%d", round, i, w), Type: "other.moved", Data: data})
						}
						tr := try{start: time.Now()}
						tr.res, tr.err = l.Append(ctx, evs, eventlog.ExpectVersion(own, version))
						tr.end = time.Now()
						mu.Lock()
						tries = append(tries, tr)
						mu.Unlock()
						if tr.err != nil {
							return // the stream's version is unknown now
						}
						version++
						done.Add(1)
						if k := killed.Load(); k != nil && tr.start.After(*k) {
							after.Add(1)
						}
					}
				}()
			}
		}
		for done.Load() < 40 {
			time.Sleep(10 * time.Millisecond)
		}
		kill := time.Now()
		c.kill()
		killed.Store(&kill)
		elected := make(chan time.Duration, 1)
		go func() {
			for {
				poll, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				st, err := c.logs[0].ClusterStatus(poll)
				cancel()
				if err == nil && st.Leader != "" && st.Leader != "n2" {
					elected <- time.Since(kill)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		deadline := time.Now().Add(2 * time.Minute)
		for after.Load() < 40 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		close(stop)
		wg.Wait()
		if after.Load() < 40 {
			t.Fatalf("round %d: %d appends acknowledged in the two minutes after the leader was killed", round, after.Load())
		}
		first := time.Duration(-1)
		for _, tr := range tries {
			switch {
			case tr.err == nil:
				for _, p := range tr.res.Events {
					acked[p.ID] = p
				}
				if tr.res.Duplicate {
					t.Errorf("round %d: an append made once answered as a duplicate: %+v", round, tr.res)
				}
				if tr.start.Before(kill) && tr.end.After(kill) {
					inFlight++
					recovered++
					recover = append(recover, tr.end.Sub(kill))
				}
				if tr.start.After(kill) && (first < 0 || tr.end.Sub(kill) < first) {
					first = tr.end.Sub(kill)
				}
			case errors.Is(tr.err, eventlog.ErrUnavailable):
				// Allowed past FailoverTimeout, which an election in
				// this test never takes: sent again, the append lands.
				inFlight++
				failed++
				t.Errorf("round %d: append made %v before the kill: %v", round, kill.Sub(tr.start), tr.err)
			default:
				t.Errorf("round %d: append made %v before the kill: %v, want success or ErrUnavailable", round, kill.Sub(tr.start), tr.err)
			}
		}
		firstAfter = append(firstAfter, first)
		var resent uint64
		for _, i := range writers {
			resent += c.logs[i].Stats().Resent - resentAt[i]
		}
		t.Logf("round %d: the leader killed; a new one elected after %v; %d appends, %d sent again, the first made after the kill answered %v after it",
			round, <-elected, len(tries), resent, first)

		// Every event at most once (the tokens of failed appends too), the
		// acknowledged ones at their positions, sequences without gaps,
		// versions contiguous.
		l := c.logs[writers[0]]
		last, err := l.LastSeq(ctx)
		if err != nil {
			t.Fatal(err)
		}
		waitReadable(t, l, last)
		checkLog(t, l, acked, fmt.Sprintf("round %d", round))
		seen := map[string]int{}
		for seq := uint64(0); ; {
			page, err := l.Read(ctx, seq, 1000, eventlog.Filter{})
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Events) == 0 {
				break
			}
			for _, e := range page.Events {
				seq = e.Seq
				var d struct{ Token string }
				if json.Unmarshal(e.Data, &d) == nil {
					seen[e.Stream+" "+d.Token]++
				}
			}
		}
		for k, n := range seen {
			if n > 1 {
				t.Fatalf("round %d: %s stored %d times", round, k, n)
			}
		}

		// The node comes back and catches up (its Open waits for that).
		if err := c.startChild(); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(recover)
	med, worst := time.Duration(0), time.Duration(0)
	if n := len(recover); n > 0 {
		med, worst = recover[n/2], recover[n-1]
	}
	t.Logf("%d rounds: %d appends in flight at the kill: %d landed once (answered %v median, %v max after the kill), %d failed with ErrUnavailable; the first append made after the kill answered after %v",
		failoverRounds(), inFlight, recovered, med, worst, failed, firstAfter)
}

// With other writers, a log's view of a stream may be behind: an
// expectation that fails against it is checked against the stream's end
// in the log before the append is refused (a name released by another
// node is claimable at once), and a real conflict is still refused.
func TestExpectationAfterAnotherWriter(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(30 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var logs [2]*eventlog.Log
	for i := range logs {
		l := eventlog.New(t.TempDir())
		l.URL = srv.ClientURL()
		if err := l.Open(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close(context.Background()) })
		logs[i] = l
	}
	ev := func() []eventlog.Event {
		return []eventlog.Event{{Stream: "names.x", Type: "names.changed", Data: json.RawMessage(`{}`)}}
	}
	if _, err := logs[0].Append(ctx, ev(), eventlog.ExpectNew("names.x")); err != nil {
		t.Fatal(err)
	}
	if _, err := logs[1].Append(ctx, ev(), eventlog.ExpectVersion("names.x", 1)); err != nil {
		t.Fatal(err)
	}
	res, err := logs[0].Append(ctx, ev(), eventlog.ExpectVersion("names.x", 2))
	if err != nil || res.Events[0].Version != 3 {
		t.Fatalf("expecting the version another writer made: %+v %v, want version 3", res, err)
	}
	var ce *eventlog.ConflictError
	if _, err := logs[1].Append(ctx, ev(), eventlog.ExpectVersion("names.x", 2)); !errors.As(err, &ce) || ce.Actual != 3 {
		t.Fatalf("an expectation that no longer holds: %v, want a conflict at version 3", err)
	}
}
