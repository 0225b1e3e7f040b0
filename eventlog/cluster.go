package eventlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Cluster makes the embedded server one node of a NATS cluster: the
// nodes connect to each other by routes, JetStream runs clustered (RAFT),
// and the event stream and the buckets are replicated (Log.Replicas).
// Every node of a cluster runs the same binary with the same Name and
// Secret, its own Node name and Listen address, and Peers listing the
// others (listing itself too is harmless, so every node can be given the
// same list).
type Cluster struct {
	// Name of the cluster, the same on every node.
	Name string
	// Node is this node's server name: unique in the cluster and stable
	// across restarts (JetStream knows its replicas by it).
	Node string
	// Listen is the host:port the node accepts routes from other nodes on.
	Listen string
	// Peers are the other nodes' Listen addresses (host:port).
	Peers []string
	// Secret is the route password every node knows: nodes authenticate
	// to each other with it, and refuse a route without it. Required.
	Secret string
	// TLS encrypts the routes, which carry every event, and makes them
	// mutual: each node verifies its peers' certificates against the
	// cluster's CA, and peers verify this node's. Required unless
	// Insecure.
	TLS *ClusterTLS
	// Insecure runs the routes in clear (authenticated by Secret only):
	// for a cluster on one machine or a network already encrypted. Open
	// logs a warning.
	Insecure bool
}

// routeUser is the user nodes authenticate routes with.
const routeUser = "fazt-route"

// How often a node pings the others, and how many pings may go
// unanswered before it closes a route.
const (
	routePing    = 2 * time.Second
	routePingMax = 3
)

// minSecretLen is the shortest route secret a cluster takes.
const minSecretLen = 16

// check validates c and the replicas asked of it.
func (c *Cluster) check(replicas int) error {
	switch {
	case !validClusterName(c.Name):
		return invalidf("cluster name %q: want letters, digits, '-' and '_' (the same on every node)", c.Name)
	case !validClusterName(c.Node):
		return invalidf("cluster node name %q: want letters, digits, '-' and '_', unique in the cluster and the same at every start", c.Node)
	case len(c.Secret) < minSecretLen:
		return invalidf("cluster secret: at least %d characters, the same on every node (nodes authenticate to each other with it)", minSecretLen)
	case replicas < 1 || replicas > 5:
		return invalidf("replicas %d: want 1..5 (JetStream's limit)", replicas)
	case c.TLS == nil && !c.Insecure:
		return invalidf("cluster routes carry every event: give each node a TLS certificate from the cluster's CA (fazt cluster certs makes them), or run them in clear with Insecure (--cluster-insecure)")
	case c.TLS != nil && c.Insecure:
		return invalidf("cluster TLS and Insecure exclude each other: choose one")
	}
	if c.TLS != nil {
		if err := c.TLS.Check(); err != nil {
			return err
		}
	}
	if _, _, err := splitHostPort(c.Listen); err != nil {
		return invalidf("cluster listen address %q: %v", c.Listen, err)
	}
	for _, p := range c.Peers {
		if _, _, err := splitHostPort(p); err != nil {
			return invalidf("cluster peer %q: %v", p, err)
		}
	}
	return nil
}

func validClusterName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("bad port %q", port)
	}
	return host, p, nil
}

// render writes the node's part of the server configuration, in NATS's
// own configuration language: its name, the cluster block (listen,
// route credentials, routes to the peers) and JetStream's sync policy.
// The durability d decides the sync policy (see "Clusters" in the
// package doc).
func (c *Cluster) render(d Durability, syncInterval time.Duration) string {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	var routes []string
	for _, p := range c.Peers {
		u := url.URL{Scheme: "nats-route", User: url.UserPassword(routeUser, c.Secret), Host: p}
		routes = append(routes, q(u.String()))
	}
	sync := "always"
	if d == Relaxed {
		sync = q(syncInterval.String())
	}
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %s\n", q(c.Node))
	fmt.Fprintf(&b, "cluster {\n  name: %s\n  listen: %s\n", q(c.Name), q(c.Listen))
	fmt.Fprintf(&b, "  authorization {\n    user: %s\n    password: %s\n    timeout: 2\n  }\n", q(routeUser), q(c.Secret))
	// A node that stops answering without closing its connections (a
	// frozen process, a cut network) keeps its share of the requests
	// routed to it, direct gets among them, until its routes are found
	// dead: ping often, so that this takes seconds, not minutes.
	fmt.Fprintf(&b, "  ping_interval: %s\n  ping_max: %d\n", q(routePing.String()), routePingMax)
	if t := c.TLS; t != nil {
		// verify: each side of a route presents its certificate and
		// checks the other's against the CA (mutual TLS).
		fmt.Fprintf(&b, "  tls {\n    cert_file: %s\n    key_file: %s\n    ca_file: %s\n    verify: true\n    timeout: %d\n  }\n",
			q(t.CertFile), q(t.KeyFile), q(t.CAFile), int(routeTLSTimeout/time.Second))
	}
	fmt.Fprintf(&b, "  routes: [%s]\n}\n", strings.Join(routes, ", "))
	fmt.Fprintf(&b, "jetstream {\n  sync_interval: %s\n}\n", sync)
	return b.String()
}

// applyCluster renders c and loads it into opts with the server's own
// configuration parser, the way NATS's tests build clusters.
func applyCluster(opts *server.Options, c *Cluster, d Durability, syncInterval time.Duration) error {
	var co server.Options
	if err := co.ProcessConfigString(c.render(d, syncInterval)); err != nil {
		return fmt.Errorf("cluster configuration: %w", err)
	}
	opts.ServerName = co.ServerName
	opts.Cluster = co.Cluster
	opts.Routes = co.Routes
	opts.SyncAlways = co.SyncAlways
	opts.SyncInterval = co.SyncInterval
	return nil
}

// clusterWaitLog is how often Open says it is still waiting for the
// cluster.
const clusterWaitLog = 5 * time.Second

// clusterTry bounds one attempt to create the stream while a cluster forms.
const clusterTry = 3 * time.Second

// ensureStreamClustered creates or binds a replicated event stream once
// the cluster can: JetStream needs a meta leader, and a stream of R
// replicas needs R nodes. Nodes started together wait for each other,
// until ctx ends; so does a log using a cluster by URL.
func (l *Log) ensureStreamClustered(ctx context.Context) error {
	last := time.Now()
	for {
		// JetStream drops requests made before it has a meta leader:
		// each attempt waits a few seconds, not all of ctx.
		try, cancel := context.WithTimeout(ctx, clusterTry)
		err := l.ensureStream(try)
		if err == nil {
			// Wait for the stream's leader, and for this node to have
			// caught up with the cluster's metadata and the stream:
			// until then what comes next (consumers, appends) times out.
			var info *jetstream.StreamInfo
			if info, err = l.stream.Info(try); err == nil && (info.Cluster == nil || info.Cluster.Leader == "") {
				err = errNoLeader
			} else if errors.Is(err, jetstream.ErrStreamNotFound) {
				// Created (or found) a moment ago: the node answering has
				// not applied the cluster's metadata yet.
				err = errNotCurrent
			}
			if err == nil && l.srv != nil && (!l.srv.JetStreamIsCurrent() || !replicaCurrent(info, l.srv.Name())) {
				err = errNotCurrent
			}
		}
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return l.stillWaiting(ctx, err)
		}
		if !clusterPending(err) {
			return err // a refusal that waiting does not change
		}
		if time.Since(last) > clusterWaitLog {
			last = time.Now()
			if l.srv != nil {
				args := []any{"cluster", l.Cluster.Name, "node", l.Cluster.Node, "routes", l.srv.NumRoutes(), "replicas", l.Replicas, "err", err}
				if bad := l.Cluster.probeRoutes(ctx); len(bad) > 0 {
					args = append(args, "route_errors", strings.Join(bad, "; "))
				}
				l.Logger.Info("waiting for the cluster to create the event stream: start the other nodes, and check --peers, the cluster secret and the TLS certificates", args...)
			} else {
				l.Logger.Info("waiting for the NATS cluster to create the event stream", "url", l.nc.ConnectedUrlRedacted(), "replicas", l.Replicas, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return l.stillWaiting(ctx, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// stillWaiting is the error of a node that gave up waiting for its
// cluster (ctx ended), with the peers its routes could not reach over
// TLS, and why; not when it was interrupted.
func (l *Log) stillWaiting(ctx context.Context, err error) error {
	if l.srv == nil {
		return fmt.Errorf("%w (still waiting for the NATS cluster)", err)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		probe, cancel := context.WithTimeout(context.WithoutCancel(ctx), routeProbeTimeout)
		bad := l.Cluster.probeRoutes(probe)
		cancel()
		if len(bad) > 0 {
			return fmt.Errorf("%w (still waiting for the cluster: %d routes to other nodes; %s)", err, l.srv.NumRoutes(), strings.Join(bad, "; "))
		}
	}
	return fmt.Errorf("%w (still waiting for the cluster: %d routes to other nodes)", err, l.srv.NumRoutes())
}

var (
	errNoLeader   = fmt.Errorf("%w: the event stream has no leader yet", ErrUnavailable)
	errNotCurrent = fmt.Errorf("%w: this node is catching up with the cluster", ErrUnavailable)
)

// replicaCurrent reports whether node leads the stream or holds a
// replica that has caught up with the leader.
func replicaCurrent(info *jetstream.StreamInfo, node string) bool {
	if info.Cluster.Leader == node {
		return true
	}
	for _, p := range info.Cluster.Replicas {
		if p.Name == node {
			return p.Current
		}
	}
	return false
}

// clusterPending reports whether err is what JetStream answers while a
// cluster forms: no meta leader yet, too few nodes for the replicas, no
// answer in time.
func clusterPending(err error) bool {
	var api *jetstream.APIError
	if errors.As(err, &api) {
		return api.Code >= 500 || api.Code == 408 || api.ErrorCode == errCodeInsufficientResourcesJS ||
			api.ErrorCode == jetstream.JSErrCodeJetStreamNotEnabled || api.ErrorCode == jetstream.JSErrCodeJetStreamNotEnabledForAccount
	}
	return errors.Is(err, errNoLeader) || errors.Is(err, errNotCurrent) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

const errCodeInsufficientResourcesJS = jetstream.ErrorCode(errCodeInsufficientResources)

// ClusterStatus is what a node knows of its cluster.
type ClusterStatus struct {
	// Name is the cluster's name; Node this node's (empty with URL).
	Name string `json:"name,omitempty"`
	Node string `json:"node,omitempty"`
	// Routes is how this node's routes run: "tls" (mutual TLS) or
	// "clear" (Insecure); empty outside an embedded cluster.
	Routes string `json:"routes,omitempty"`
	// CertExpires is when this node's route certificate expires.
	CertExpires time.Time `json:"cert_expires,omitzero"`
	// Peers are the nodes this node has routes to (embedded server).
	Peers []ClusterPeer `json:"peers,omitempty"`
	// MetaLeader is the node leading JetStream's metadata (embedded server).
	MetaLeader string `json:"meta_leader,omitempty"`
	// Leader is the node that leads the event stream: it orders every
	// append. Empty while an election runs.
	Leader string `json:"leader"`
	// Replicas of the event stream, the leader first.
	Replicas []ClusterReplica `json:"replicas"`
	// LastSeq is the log's last sequence, as the leader knows it.
	LastSeq uint64 `json:"last_seq"`
}

// ClusterPeer is a route to another node.
type ClusterPeer struct {
	Node string `json:"node"`
	Addr string `json:"addr"`
	RTT  string `json:"rtt,omitempty"`
}

// ClusterReplica is one replica of the event stream.
type ClusterReplica struct {
	Node    string `json:"node"`
	Leader  bool   `json:"leader,omitempty"`
	Current bool   `json:"current"`           // caught up with the leader
	Offline bool   `json:"offline,omitempty"` // not seen lately
	Lag     uint64 `json:"lag"`               // operations behind the leader
	// Active is how long ago the leader last heard from it.
	Active time.Duration `json:"active_ns"`
}

// ClusterStatus reports the cluster as this node sees it: its routes,
// the event stream's leader and each replica's lag. Single node: one
// replica, the leader. Errors: ErrClosed, ErrUnavailable (JetStream did
// not answer).
func (l *Log) ClusterStatus(ctx context.Context) (ClusterStatus, error) {
	info, err := l.StreamInfo(ctx)
	if errors.Is(err, ErrClosed) {
		return ClusterStatus{}, err
	}
	if err != nil {
		return ClusterStatus{}, fmt.Errorf("%w: stream info: %w", ErrUnavailable, err)
	}
	var st ClusterStatus
	if c := l.Cluster; c != nil {
		st.Name, st.Node, st.Routes = c.Name, c.Node, "clear"
		if c.TLS != nil {
			st.Routes, st.CertExpires = "tls", c.TLS.expires
		}
	}
	st.LastSeq = info.State.LastSeq
	if l.srv != nil {
		if rz, err := l.srv.Routez(nil); err == nil {
			seen := map[string]bool{}
			for _, r := range rz.Routes {
				if seen[r.RemoteName] { // pooled routes: one per node
					continue
				}
				seen[r.RemoteName] = true
				st.Peers = append(st.Peers, ClusterPeer{Node: r.RemoteName, Addr: net.JoinHostPort(r.IP, strconv.Itoa(r.Port)), RTT: r.RTT})
			}
			slices.SortFunc(st.Peers, func(a, b ClusterPeer) int { return strings.Compare(a.Node, b.Node) })
		}
		if l.Cluster != nil {
			if jsz, err := l.srv.Jsz(&server.JSzOptions{LeaderOnly: false}); err == nil && jsz.Meta != nil {
				st.MetaLeader = jsz.Meta.Leader
			}
		}
	}
	ci := info.Cluster
	if ci == nil {
		st.Leader = l.srvName()
		st.Replicas = []ClusterReplica{{Node: st.Leader, Leader: true, Current: true}}
		return st, nil
	}
	if st.Name == "" {
		st.Name = ci.Name
	}
	st.Leader = ci.Leader
	if ci.Leader != "" {
		st.Replicas = append(st.Replicas, ClusterReplica{Node: ci.Leader, Leader: true, Current: true})
	}
	for _, p := range ci.Replicas {
		st.Replicas = append(st.Replicas, ClusterReplica{Node: p.Name, Current: p.Current, Offline: p.Offline, Lag: p.Lag, Active: p.Active})
	}
	return st, nil
}

func (l *Log) srvName() string {
	if l.srv != nil {
		return l.srv.Name()
	}
	return ""
}
