package main

import (
	"errors"
	"strings"
	"testing"
)

// A single server shows itself as a cluster of one, the leader of its
// only replica, and exports the cluster metrics.
func TestClusterStatusSingleNode(t *testing.T) {
	s := startServer(t, t.TempDir())
	out, _, err := fazt(t, nil, "", "cluster", "status", "--data", s.dir)
	if err != nil || !strings.Contains(out, "cluster   (single node)") || strings.Count(out, "\nreplica ") != 1 ||
		!strings.Contains(out, "leader    fazt\n") || strings.Count(out, "\nnode ") != 1 {
		t.Fatalf("cluster status: %v\n%s", err, out)
	}
	_, body, _ := s.do(t, "GET", "/metrics", nil, nil)
	for _, want := range []string{"fazt_cluster_peers 0", "fazt_cluster_is_leader 1", `fazt_cluster_replica_lag{node="fazt"} 0`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	out, _, err = fazt(t, nil, "", "cluster", "ready", "--addr", s.addr)
	if err != nil || out != "ready\n" {
		t.Errorf("cluster ready: %q %v", out, err)
	}
}

// The cluster flags are refused in combinations that cannot work, with
// what to do instead, before anything starts.
func TestClusterFlagsRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--peers", "127.0.0.1:6222"}, nil, "--peers needs --cluster NAME"},
		{[]string{"--cluster", "c"}, nil, "FAZT_CLUSTER_SECRET"},
		{[]string{"--cluster", "c", "--nats-url", "nats://127.0.0.1:4222"}, map[string]string{"FAZT_CLUSTER_SECRET": "0123456789abcdef"}, "choose one"},
		{[]string{"--replicas", "7"}, nil, "--replicas 7"},
		{[]string{"--replicas", "3"}, nil, "set Cluster (fazt serve --cluster) for more"},
		{[]string{"--cluster", "c", "--node", "a b", "--cluster-insecure"}, map[string]string{"FAZT_CLUSTER_SECRET": "0123456789abcdef"}, "node name"},
		{[]string{"--cluster", "c", "--cluster-insecure"}, map[string]string{"FAZT_CLUSTER_SECRET": "short"}, "at least 16"},
	} {
		args := append([]string{"serve", "--data", t.TempDir(), "--addr", "127.0.0.1:0"}, tc.args...)
		_, _, err := fazt(t, envMap(tc.env), "", args...)
		var u *usageError
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error naming %q", tc.args, err, tc.want)
		} else if strings.HasPrefix(tc.want, "--") && !errors.As(err, &u) {
			t.Errorf("%v: %v is not a usage error", tc.args, err)
		}
	}
}
