package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
)

// clusterOptions are serve's flags for running as a node of a cluster.
type clusterOptions struct {
	name, listen, node, secretFile string
	peers                          []string
	replicas                       int
	tls                            clusterTLSOptions
}

// Files in the data directory of a cluster node.
const nodeFile = "cluster-node" // the node's name, made at first start

func (a *app) clusterFlags(f *pflag.FlagSet, o *clusterOptions) {
	f.StringVar(&o.name, "cluster", a.getenv("FAZT_CLUSTER"), "run as a node of the NATS cluster of this name: the log becomes a replicated JetStream stream (env FAZT_CLUSTER)")
	f.StringVar(&o.listen, "cluster-listen", a.envOr("FAZT_CLUSTER_LISTEN", "127.0.0.1:6222"), "host:port this node accepts the other nodes' routes on (env FAZT_CLUSTER_LISTEN)")
	f.StringSliceVar(&o.peers, "peers", splitList(a.getenv("FAZT_PEERS")), "the nodes' --cluster-listen addresses, comma separated; this node's own may be listed (env FAZT_PEERS)")
	f.StringVar(&o.node, "node", a.getenv("FAZT_NODE"), "this node's name, unique in the cluster and the same at every start (default: one made at first start and kept in DIR/"+nodeFile+"; env FAZT_NODE)")
	f.StringVar(&o.secretFile, "cluster-secret-file", a.getenv("FAZT_CLUSTER_SECRET_FILE"), "file holding the secret every node shares, to authenticate routes (or env FAZT_CLUSTER_SECRET)")
	a.clusterTLSFlags(f, &o.tls)
	f.IntVar(&o.replicas, "replicas", 0, "replicas of the event stream and the buckets (default: 3 with --cluster or several --nats-url servers, else 1)")
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// applyCluster checks the cluster flags and sets them on k.
func (a *app) applyCluster(cmd *cobra.Command, o clusterOptions, dir, natsURL string, k *kernel.Kernel) error {
	if o.replicas < 0 || o.replicas > 5 {
		return usagef(cmd, "--replicas %d: want 1..5", o.replicas)
	}
	k.Replicas = o.replicas
	if o.name == "" {
		for _, f := range []string{"peers", "node", "cluster-secret-file", "cluster-listen", "cluster-tls-cert", "cluster-tls-key", "cluster-tls-ca", "cluster-insecure"} {
			if cmd.Flags().Changed(f) {
				return usagef(cmd, "--%s needs --cluster NAME", f)
			}
		}
		return nil
	}
	if natsURL != "" {
		return usagef(cmd, "--cluster runs an embedded node; --nats-url uses an existing cluster instead: choose one")
	}
	secret := a.getenv("FAZT_CLUSTER_SECRET")
	if o.secretFile != "" {
		b, err := os.ReadFile(o.secretFile)
		if err != nil {
			return fmt.Errorf("--cluster-secret-file: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	if secret == "" {
		return usagef(cmd, "--cluster needs the secret the nodes authenticate to each other with: set FAZT_CLUSTER_SECRET or --cluster-secret-file (the same on every node, at least 16 characters)")
	}
	tls, err := a.clusterTLS(cmd, o.tls)
	if err != nil {
		return err
	}
	node := o.node
	if node == "" {
		if node, err = nodeName(dir); err != nil {
			return err
		}
	}
	k.Cluster = &eventlog.Cluster{Name: o.name, Node: node, Listen: o.listen, Peers: o.peers, Secret: secret, TLS: tls, Insecure: o.tls.insecure}
	return nil
}

// nodeName reads DIR/cluster-node, creating it with a new name at first
// start: a node's name must not change, or JetStream takes it for a new
// node.
func nodeName(dir string) (string, error) {
	p := filepath.Join(dir, nodeFile)
	b, err := os.ReadFile(p)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	name := "fazt-" + strings.ToLower(rand.Text()[:10])
	if err := os.WriteFile(p, []byte(name+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("keep the node's name: %w", err)
	}
	return name, nil
}

// The cluster's route and metrics, and how nodes tell each other their
// read models' positions.

// nodesSubject is where a node asks every node for its positions.
const nodesSubject = "fazt.cluster.nodes"

// NodeStatus is one node's own report: its HTTP address and how far its
// read models have folded the log.
type NodeStatus struct {
	Node        string            `json:"node"`
	Addr        string            `json:"addr,omitempty"`
	Projections []NodeReadModel   `json:"projections"`
	Reported    time.Time         `json:"reported"`
	Readiness   *kernel.Readiness `json:"readiness,omitempty"`
}

// NodeReadModel is one read model's position on a node.
type NodeReadModel struct {
	Name  string `json:"name"`
	Seq   uint64 `json:"seq"`
	Lag   uint64 `json:"lag"`
	State string `json:"state"`
}

// ClusterAnswer is GET /v1/cluster.
type ClusterAnswer struct {
	eventlog.ClusterStatus
	// Nodes are the nodes that answered within a second, by name.
	Nodes []NodeStatus `json:"nodes"`
}

// clusterNode serves the cluster route and answers other nodes' requests
// for positions.
type clusterNode struct {
	k    *kernel.Kernel
	addr string
}

// registerCluster adds GET /v1/cluster and the cluster's metrics to k
// (before Open).
func registerCluster(k *kernel.Kernel) (*clusterNode, error) {
	cn := &clusterNode{k: k}
	if err := k.Handle("GET /v1/cluster", http.HandlerFunc(cn.serveStatus)); err != nil {
		return nil, err
	}
	if err := k.Metrics().Register(&clusterCollector{k: k}); err != nil {
		return nil, err
	}
	return cn, nil
}

// start answers the other nodes (after Open), until the log closes.
func (cn *clusterNode) start(addr string) error {
	cn.addr = addr
	_, err := cn.k.Log().Conn().Subscribe(nodesSubject, func(m *nats.Msg) {
		b, err := json.Marshal(cn.self())
		if err == nil {
			_ = m.Respond(b)
		}
	})
	return err
}

func (cn *clusterNode) self() NodeStatus {
	st := NodeStatus{Addr: cn.addr, Reported: time.Now().UTC()}
	if c := cn.k.Cluster; c != nil {
		st.Node = c.Node
	} else if srv := cn.k.Log().Server(); srv != nil {
		st.Node = srv.Name()
	}
	r := cn.k.Readiness()
	st.Readiness = &r
	for _, p := range cn.k.Projections().Statuses() {
		st.Projections = append(st.Projections, NodeReadModel{Name: p.Name, Seq: p.Seq, Lag: p.Lag, State: p.State})
	}
	return st
}

// gather asks every node for its positions, for up to wait.
func (cn *clusterNode) gather(ctx context.Context, want int, wait time.Duration) []NodeStatus {
	nc := cn.k.Log().Conn()
	inbox := nc.NewRespInbox()
	ch := make(chan *nats.Msg, 16)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return []NodeStatus{cn.self()}
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(nodesSubject, inbox, nil); err != nil {
		return []NodeStatus{cn.self()}
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var out []NodeStatus
	for len(out) < want {
		select {
		case m := <-ch:
			var st NodeStatus
			if json.Unmarshal(m.Data, &st) == nil {
				out = append(out, st)
			}
			continue
		case <-timer.C:
		case <-ctx.Done():
		}
		break
	}
	slices.SortFunc(out, func(a, b NodeStatus) int { return strings.Compare(a.Node, b.Node) })
	return out
}

func (cn *clusterNode) serveStatus(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	st, err := cn.k.Log().ClusterStatus(ctx)
	if err != nil {
		cn.k.WriteError(w, r, err)
		return
	}
	ans := ClusterAnswer{ClusterStatus: st}
	ans.Nodes = cn.gather(ctx, max(len(st.Peers)+1, len(st.Replicas)), time.Second)
	kernel.WriteJSON(w, http.StatusOK, ans)
}

// clusterCollector exports the cluster's state to /metrics.
type clusterCollector struct{ k *kernel.Kernel }

var (
	descPeers   = prometheus.NewDesc("fazt_cluster_peers", "Nodes this node has routes to.", nil, nil)
	descLeader  = prometheus.NewDesc("fazt_cluster_stream_leader", "1 for the node that leads the event stream (it orders every append); 0 while there is none.", []string{"node"}, nil)
	descIsLead  = prometheus.NewDesc("fazt_cluster_is_leader", "1 when this node leads the event stream.", nil, nil)
	descLag     = prometheus.NewDesc("fazt_cluster_replica_lag", "Operations a replica of the event stream is behind its leader.", []string{"node"}, nil)
	descCurrent = prometheus.NewDesc("fazt_cluster_replica_current", "1 when a replica of the event stream has caught up with its leader.", []string{"node"}, nil)
	descOffline = prometheus.NewDesc("fazt_cluster_replica_offline", "1 when a replica of the event stream has not been seen lately.", []string{"node"}, nil)
)

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPeers, descLeader, descIsLead, descLag, descCurrent, descOffline} {
		ch <- d
	}
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	if c.k.Log().Conn() == nil {
		return // not open yet
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.k.Log().ClusterStatus(ctx)
	if err != nil {
		return
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(len(st.Peers)))
	ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, b(st.Leader != ""), st.Leader)
	ch <- prometheus.MustNewConstMetric(descIsLead, prometheus.GaugeValue, b(st.Leader != "" && (st.Node == st.Leader || st.Node == "" && len(st.Replicas) == 1)))
	for _, r := range st.Replicas {
		ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(r.Lag), r.Node)
		ch <- prometheus.MustNewConstMetric(descCurrent, prometheus.GaugeValue, b(r.Current), r.Node)
		ch <- prometheus.MustNewConstMetric(descOffline, prometheus.GaugeValue, b(r.Offline), r.Node)
	}
}

// fazt cluster status

func (a *app) clusterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Inspect the cluster a running server belongs to, or make its nodes' TLS certificates",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.clusterStatusCmd(), a.clusterReadyCmd(), a.clusterCertsCmd())
	return cmd
}

// clusterReadyCmd is a container's health check: it needs no token, and
// no shell or HTTP client in the image.
func (a *app) clusterReadyCmd() *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "ready",
		Short: "Exit 0 when the node at --addr is ready (GET /readyz answers 200): a health check",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(addr, "/")+"/readyz", nil)
			if err != nil {
				return usagef(cmd, "--addr %q: %v", addr, err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("the node at %s does not answer: %w", addr, err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("the node at %s is not ready (%d): %s", addr, resp.StatusCode, safe(strings.TrimSpace(string(body))))
			}
			_, err = fmt.Fprintln(a.stdout, "ready")
			return err
		}),
	}
	cmd.Flags().StringVar(&addr, "addr", "http://127.0.0.1:8080", "the node's HTTP address")
	return cmd
}

func (a *app) clusterStatusCmd() *cobra.Command {
	var (
		sf     serverFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the cluster's nodes, the event stream's leader, each replica's lag and each node's read models",
		Long: `Status asks one node (the server of --addr or the data directory) what it
knows of its cluster: the nodes it has routes to, the node that leads the
event stream (it orders every append), each replica's lag behind it, and
how far every node that answers within a second has folded the log into
its read models. A single server shows itself as the one replica.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			var res ClusterAnswer
			raw, err := a.get(cmd.Context(), sf, "/v1/cluster", &res)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printRaw(raw)
			}
			return a.printCluster(res)
		}),
	}
	serverFlagsOn(cmd, &sf)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the server's JSON answer")
	return cmd
}

func (a *app) printCluster(res ClusterAnswer) error {
	tw := tabwriter.NewWriter(a.stdout, 0, 8, 2, ' ', 0)
	name := res.Name
	if name == "" {
		name = "(single node)"
	}
	leader := res.Leader
	if leader == "" {
		leader = "none (an election is running, appends wait)"
	}
	fmt.Fprintf(tw, "cluster\t%s\n", safe(name))
	if res.Node != "" {
		fmt.Fprintf(tw, "asked\t%s\n", safe(res.Node))
	}
	switch res.Routes {
	case "tls":
		fmt.Fprintf(tw, "routes\tmutual TLS (this node's certificate expires %s)\n", res.CertExpires.UTC().Format(time.DateOnly))
	case "clear":
		fmt.Fprintf(tw, "routes\tin clear (--cluster-insecure)\n")
	}
	fmt.Fprintf(tw, "leader\t%s\n", safe(leader))
	fmt.Fprintf(tw, "last seq\t%d\n", res.LastSeq)
	for _, r := range res.Replicas {
		state := "current"
		switch {
		case r.Leader:
			state = "leader"
		case r.Offline:
			state = "offline"
		case !r.Current:
			state = "catching up"
		}
		fmt.Fprintf(tw, "replica\t%s\t%s\tlag %d\n", safe(r.Node), state, r.Lag)
	}
	for _, p := range res.Peers {
		fmt.Fprintf(tw, "route\t%s\t%s\trtt %s\n", safe(p.Node), safe(p.Addr), safe(p.RTT))
	}
	for _, n := range res.Nodes {
		var pos []string
		for _, p := range n.Projections {
			pos = append(pos, fmt.Sprintf("%s %d (lag %d, %s)", p.Name, p.Seq, p.Lag, p.State))
		}
		fmt.Fprintf(tw, "node\t%s\t%s\t%s\n", safe(n.Node), safe(n.Addr), safe(strings.Join(pos, ", ")))
	}
	return tw.Flush()
}
