package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fazt-sh/fazt/eventlog"
)

// clusterTLSOptions are serve's flags for the TLS of a node's routes.
type clusterTLSOptions struct {
	cert, key, ca string
	insecure      bool
	insecureEnv   string // FAZT_CLUSTER_INSECURE as given, to refuse a bad value
}

func (a *app) clusterTLSFlags(f *pflag.FlagSet, o *clusterTLSOptions) {
	f.StringVar(&o.cert, "cluster-tls-cert", a.getenv("FAZT_CLUSTER_TLS_CERT"), "this node's TLS certificate for its routes, issued by the cluster's CA (fazt cluster certs makes them; env FAZT_CLUSTER_TLS_CERT)")
	f.StringVar(&o.key, "cluster-tls-key", a.getenv("FAZT_CLUSTER_TLS_KEY"), "the private key of --cluster-tls-cert (env FAZT_CLUSTER_TLS_KEY)")
	f.StringVar(&o.ca, "cluster-tls-ca", a.getenv("FAZT_CLUSTER_TLS_CA"), "the cluster's CA certificate: every node verifies the others' certificates against it (env FAZT_CLUSTER_TLS_CA)")
	o.insecureEnv = a.getenv("FAZT_CLUSTER_INSECURE")
	def, _ := strconv.ParseBool(o.insecureEnv)
	f.BoolVar(&o.insecure, "cluster-insecure", def, "run the routes without TLS: every event crosses the network in clear, authenticated by the secret only; for one machine or a network encrypted already (env FAZT_CLUSTER_INSECURE=1)")
}

// clusterTLS checks the TLS flags of a cluster node: all three files, or
// --cluster-insecure. The files are read and checked here, so that a
// wrong one is a usage error before anything starts.
func (a *app) clusterTLS(cmd *cobra.Command, o clusterTLSOptions) (*eventlog.ClusterTLS, error) {
	if _, err := strconv.ParseBool(o.insecureEnv); o.insecureEnv != "" && err != nil {
		return nil, usagef(cmd, "FAZT_CLUSTER_INSECURE=%q: want 1 or 0", o.insecureEnv)
	}
	given := o.cert != "" || o.key != "" || o.ca != ""
	switch {
	case o.insecure && given:
		return nil, usagef(cmd, "--cluster-insecure runs the routes without TLS, and --cluster-tls-* gives them TLS: choose one")
	case o.insecure:
		return nil, nil
	case !given:
		return nil, usagef(cmd, "--cluster needs TLS for its routes, which carry every event: give each node --cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca (make them with: fazt cluster certs --out DIR --node NAME ...), or --cluster-insecure to run them in clear")
	case o.cert == "":
		return nil, usagef(cmd, "--cluster-tls-key and --cluster-tls-ca need --cluster-tls-cert: this node's certificate, issued by the CA")
	case o.key == "":
		return nil, usagef(cmd, "--cluster-tls-cert needs --cluster-tls-key: the private key made with the certificate")
	case o.ca == "":
		return nil, usagef(cmd, "--cluster-tls-cert needs --cluster-tls-ca: the CA certificate the nodes verify each other against (ca.crt of fazt cluster certs)")
	}
	t := &eventlog.ClusterTLS{CertFile: o.cert, KeyFile: o.key, CAFile: o.ca}
	if err := t.Check(); err != nil {
		return nil, usagef(cmd, "%v", err)
	}
	return t, nil
}

// Files fazt cluster certs writes in its --out directory.
const (
	caCertFile = "ca.crt"
	caKeyFile  = "ca.key"
)

func (a *app) clusterCertsCmd() *cobra.Command {
	var (
		out, name string
		nodes     []string
		hosts     []string
		keep      bool
	)
	cmd := &cobra.Command{
		Use:   "certs --out DIR --node NAME[=HOST,...] ...",
		Short: "Make a private CA and a TLS certificate for each node of a cluster",
		Long: `Certs makes what "fazt serve --cluster" needs to encrypt and authenticate
its routes with mutual TLS: a private CA (DIR/ca.crt, DIR/ca.key) and,
for each --node, a certificate and key (DIR/NAME.crt, DIR/NAME.key)
that the other nodes accept because the CA issued them. Files are
written with mode 0600, each whole or not at all, and never over an
existing file: with --keep-existing the files already in DIR are kept
(the CA among them, which then issues the missing nodes' certificates),
so that nodes can be added later.

A node's certificate names the node, localhost and the loopback
addresses, and the hosts given after its name and with --host: they
must include the host part of the node's address in the others' --peers.

Give each node its own pair and ca.crt; keep ca.key off the nodes where
you can (whoever holds it can make a node the others accept):

  fazt cluster certs --out certs --node n1=10.0.0.1 --node n2=10.0.0.2 --node n3=10.0.0.3
  fazt serve --cluster prod --node n1 --cluster-listen 10.0.0.1:6222 \
    --peers 10.0.0.1:6222,10.0.0.2:6222,10.0.0.3:6222 \
    --cluster-tls-cert certs/n1.crt --cluster-tls-key certs/n1.key --cluster-tls-ca certs/ca.crt`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef(cmd, "--out DIR: where to write the certificates")
			}
			if len(nodes) == 0 {
				return usagef(cmd, "--node NAME: one for each node (its --node name), with the hosts the others reach it by: --node n1=10.0.0.1,n1.example.com")
			}
			var todo []nodeCert
			seen := map[string]bool{}
			for _, n := range nodes {
				node, hs, _ := strings.Cut(n, "=")
				if seen[node] {
					return usagef(cmd, "--node %s given twice", node)
				}
				seen[node] = true
				todo = append(todo, nodeCert{node: node, hosts: append(slices.Clone(hosts), splitList(hs)...)})
			}
			return a.clusterCerts(cmd, out, name, keep, todo)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "directory to write the files in (made if missing, mode 0700)")
	f.StringArrayVar(&nodes, "node", nil, "a node's name as given to its --node, with the hosts the other nodes reach it by after '=' (comma separated); repeatable")
	f.StringArrayVar(&hosts, "host", nil, "a host (DNS name or IP) to put in every node's certificate; repeatable")
	f.StringVar(&name, "cluster", "fazt", "the cluster's name, shown in the CA's")
	f.BoolVar(&keep, "keep-existing", false, "keep files already in DIR instead of refusing: reuse its CA and make only the missing nodes' files")
	return cmd
}

// nodeCert is a node to make a certificate for.
type nodeCert struct {
	node  string
	hosts []string
}

// clusterCerts makes the CA in out (or, keep, reuses the one there) and
// each node's files. Every refusal comes before the first write.
func (a *app) clusterCerts(cmd *cobra.Command, out, name string, keep bool, todo []nodeCert) error {
	if err := os.MkdirAll(out, 0o700); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	exists := func(p string) bool { _, err := os.Lstat(p); return err == nil }
	// pair reports whether both files exist (to keep), neither (to make),
	// or refuses.
	pair := func(x, y string) (bool, error) {
		ex, ey := exists(x), exists(y)
		switch {
		case ex && ey && keep:
			return true, nil
		case !ex && !ey:
			return false, nil
		case !keep:
			if !ex {
				x = y
			}
			return false, usagef(cmd, "%s exists: refusing to overwrite it (move it away, or add --keep-existing to keep the files there and make only the missing ones)", x)
		default:
			return false, fmt.Errorf("%s and %s: one without the other; move it away to make a new pair", x, y)
		}
	}
	caCert, caKey := filepath.Join(out, caCertFile), filepath.Join(out, caKeyFile)
	keepCA, err := pair(caCert, caKey)
	if err != nil {
		return err
	}
	keepNode := make([]bool, len(todo))
	for i, n := range todo {
		if keepNode[i], err = pair(filepath.Join(out, n.node+".crt"), filepath.Join(out, n.node+".key")); err != nil {
			return err
		}
	}
	var ca *eventlog.ClusterCA
	if keepCA {
		cp, err := os.ReadFile(caCert)
		if err != nil {
			return err
		}
		kp, err := os.ReadFile(caKey)
		if err != nil {
			return err
		}
		if ca, err = eventlog.ParseClusterCA(cp, kp); err != nil {
			return fmt.Errorf("%s and %s: %w", caCert, caKey, err)
		}
		fmt.Fprintf(a.stdout, "kept    %s\n", caCert)
	}
	type issued struct{ crt, key []byte }
	made := make([]issued, len(todo))
	for i, n := range todo {
		if keepNode[i] {
			continue
		}
		if ca == nil {
			if ca, err = eventlog.NewClusterCA(name); err != nil {
				return err
			}
		}
		if made[i].crt, made[i].key, err = ca.Issue(n.node, n.hosts); err != nil {
			return usagef(cmd, "--node %s: %v", n.node, err)
		}
	}
	// The CA first: a run cut short leaves a CA that --keep-existing
	// goes on with.
	if !keepCA && ca != nil {
		if err := a.writeNew(caKey, ca.KeyPEM); err != nil {
			return err
		}
		if err := a.writeNew(caCert, ca.CertPEM); err != nil {
			return err
		}
	}
	for i, n := range todo {
		crt, key := filepath.Join(out, n.node+".crt"), filepath.Join(out, n.node+".key")
		if keepNode[i] {
			t := &eventlog.ClusterTLS{CertFile: crt, KeyFile: key, CAFile: caCert}
			if err := t.Check(); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "kept    %s\n", crt)
			continue
		}
		if err := a.writeNew(key, made[i].key); err != nil {
			return err
		}
		if err := a.writeNew(crt, made[i].crt); err != nil {
			return err
		}
	}
	n := todo[0].node
	_, err = fmt.Fprintf(a.stdout, "Start each node with its own pair and the CA, e.g. for %s:\n  fazt serve --cluster NAME --node %s --cluster-tls-cert %s --cluster-tls-key %s --cluster-tls-ca %s ...\nCopy to each node only its pair and %s; keep %s off the nodes where you can.\n",
		n, n, filepath.Join(out, n+".crt"), filepath.Join(out, n+".key"), caCert, caCertFile, caKey)
	return err
}

// writeNew writes b to path, mode 0600, whole or not at all, and never
// over a file: a temporary file is synced, then linked to path, which
// fails if path exists (even if it came since the check).
func (a *app) writeNew(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Link(f.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s appeared while writing: refusing to overwrite it", path)
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	fmt.Fprintf(a.stdout, "wrote   %s\n", path)
	return nil
}
