package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/eventlog"
)

// readDir returns every file in dir with its contents.
func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

func parseCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fazt cluster certs: a CA and a pair per node, 0600, each node's
// certificate naming its hosts and verified against the CA; a second run
// refuses to overwrite anything and changes nothing; --keep-existing
// keeps every file there and issues only the missing node's, from the
// same CA.
func TestClusterCertsCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	out, _, err := fazt(t, nil, "", "cluster", "certs", "--out", dir, "--node", "n1", "--node", "n2=h2.example,10.1.2.3", "--host", "all.example")
	if err != nil {
		t.Fatal(err)
	}
	files := readDir(t, dir)
	var names []string
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"ca.crt", "ca.key", "n1.crt", "n1.key", "n2.crt", "n2.key"}) {
		t.Fatalf("files %v (want no temporary file left)", names)
	}
	if !strings.Contains(out, "--cluster-tls-cert "+filepath.Join(dir, "n1.crt")) {
		t.Errorf("no hint how to use them:\n%s", out)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v %v", st.Mode(), err)
	}
	for _, n := range names {
		if st, err := os.Stat(filepath.Join(dir, n)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v %v, want 0600", n, st.Mode(), err)
		}
	}
	for _, n := range []string{"n1", "n2"} {
		tc := &eventlog.ClusterTLS{CertFile: filepath.Join(dir, n+".crt"), KeyFile: filepath.Join(dir, n+".key"), CAFile: filepath.Join(dir, "ca.crt")}
		if err := tc.Check(); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	n2 := parseCert(t, filepath.Join(dir, "n2.crt"))
	for _, h := range []string{"n2", "h2.example", "all.example", "localhost"} {
		if n2.VerifyHostname(h) != nil {
			t.Errorf("n2's certificate does not name %s: %v", h, n2.DNSNames)
		}
	}
	if !slices.ContainsFunc(n2.IPAddresses, net.ParseIP("10.1.2.3").Equal) || n2.VerifyHostname("127.0.0.1") != nil {
		t.Errorf("n2's addresses %v", n2.IPAddresses)
	}
	if n1 := parseCert(t, filepath.Join(dir, "n1.crt")); n1.VerifyHostname("h2.example") == nil || n1.VerifyHostname("all.example") != nil {
		t.Errorf("n1's names %v", n1.DNSNames)
	}

	// Again: refused, before writing anything.
	for _, args := range [][]string{{"--node", "n1"}, {"--node", "n3"}} {
		_, _, err = fazt(t, nil, "", append([]string{"cluster", "certs", "--out", dir}, args...)...)
		var u *usageError
		if err == nil || !strings.Contains(err.Error(), "refusing to overwrite") || !errors.As(err, &u) {
			t.Fatalf("%v over existing files: %v", args, err)
		}
		if got := readDir(t, dir); !mapsEqual(got, files) {
			t.Fatalf("%v changed the directory", args)
		}
	}

	// --keep-existing: n1 and the CA kept, n3 issued by that CA.
	if _, _, err = fazt(t, nil, "", "cluster", "certs", "--out", dir, "--keep-existing", "--node", "n1", "--node", "n3"); err != nil {
		t.Fatal(err)
	}
	got := readDir(t, dir)
	for n, b := range files {
		if got[n] != b {
			t.Errorf("--keep-existing changed %s", n)
		}
	}
	tc := &eventlog.ClusterTLS{CertFile: filepath.Join(dir, "n3.crt"), KeyFile: filepath.Join(dir, "n3.key"), CAFile: filepath.Join(dir, "ca.crt")}
	if err := tc.Check(); err != nil || len(got) != 8 {
		t.Errorf("n3 from the kept CA: %v (%d files)", err, len(got))
	}

	// Refusals.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--node", "n1"}, "--out DIR"},
		{[]string{"--out", t.TempDir()}, "--node NAME"},
		{[]string{"--out", t.TempDir(), "--node", "a b"}, "node name"},
		{[]string{"--out", t.TempDir(), "--node", "n1", "--node", "n1"}, "given twice"},
		{[]string{"--out", t.TempDir(), "--node", "n1=bad host:1"}, "without a port"},
	} {
		_, _, err := fazt(t, nil, "", append([]string{"cluster", "certs"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// serve's TLS flags for a cluster node: TLS, or --cluster-insecure,
// never neither; each file that cannot work is a usage error naming it,
// before anything starts.
func TestClusterTLSFlagsRefused(t *testing.T) {
	mine, other := t.TempDir(), t.TempDir()
	for _, d := range []string{mine, other} {
		if _, _, err := fazt(t, nil, "", "cluster", "certs", "--out", d, "--node", "n1", "--node", "n2"); err != nil {
			t.Fatal(err)
		}
	}
	f := func(dir, name string) string { return filepath.Join(dir, name) }
	secret := map[string]string{"FAZT_CLUSTER_SECRET": "0123456789abcdef"}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--cluster", "c"}, secret, "--cluster-insecure to run them in clear"},
		{[]string{"--cluster-tls-cert", f(mine, "n1.crt")}, nil, "--cluster-tls-cert needs --cluster NAME"},
		{[]string{"--cluster", "c", "--cluster-tls-cert", f(mine, "n1.crt")}, secret, "needs --cluster-tls-key"},
		{[]string{"--cluster", "c", "--cluster-tls-cert", f(mine, "n1.crt"), "--cluster-tls-key", f(mine, "n1.key")}, secret, "needs --cluster-tls-ca"},
		{[]string{"--cluster", "c", "--cluster-tls-ca", f(mine, "ca.crt")}, secret, "need --cluster-tls-cert"},
		{[]string{"--cluster", "c", "--cluster-insecure", "--cluster-tls-ca", f(mine, "ca.crt")}, secret, "choose one"},
		{[]string{"--cluster", "c"}, map[string]string{"FAZT_CLUSTER_SECRET": "0123456789abcdef", "FAZT_CLUSTER_INSECURE": "maybe"}, "FAZT_CLUSTER_INSECURE"},
		// Files: missing, mismatched, from another CA, not a CA.
		{[]string{"--cluster", "c", "--cluster-tls-cert", f(mine, "n9.crt"), "--cluster-tls-key", f(mine, "n1.key"), "--cluster-tls-ca", f(mine, "ca.crt")}, secret, "n9.crt: no such file"},
		{[]string{"--cluster", "c", "--cluster-tls-cert", f(mine, "n1.crt"), "--cluster-tls-key", f(mine, "n1.key"), "--cluster-tls-ca", f(mine, "none.crt")}, secret, "none.crt: no such file"},
		{[]string{"--cluster", "c", "--cluster-tls-cert", f(mine, "n1.crt"), "--cluster-tls-key", f(mine, "n2.key"), "--cluster-tls-ca", f(mine, "ca.crt")}, secret, "the key must be the one made with this certificate"},
		{[]string{"--cluster", "c", "--cluster-tls-cert", f(mine, "n1.crt"), "--cluster-tls-key", f(mine, "n1.key"), "--cluster-tls-ca", f(other, "ca.crt")}, secret, "was not issued by the CA"},
		{[]string{"--cluster", "c", "--cluster-tls-cert", f(mine, "n1.crt"), "--cluster-tls-key", f(mine, "n1.key"), "--cluster-tls-ca", f(mine, "n1.key")}, secret, "holds no PEM certificate"},
	} {
		args := append([]string{"serve", "--data", t.TempDir(), "--addr", "127.0.0.1:0"}, tc.args...)
		_, _, err := fazt(t, envMap(tc.env), "", args...)
		var u *usageError
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &u) {
			t.Errorf("%v: %v, want a usage error naming %q", tc.args, err, tc.want)
		}
	}
}
