package main

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/spf13/pflag"

	"github.com/fazt-sh/fazt/kernel"
)

// repoRoot is the repository's top folder, where the Dockerfile and
// docker-compose.yml are.
const repoRoot = "../.."

func loadCompose(t *testing.T, env map[string]string) (*types.Project, error) {
	t.Helper()
	path, err := filepath.Abs(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  filepath.Dir(path),
		ConfigFiles: []types.ConfigFile{{Filename: path, Content: b}},
		Environment: env,
	}, func(o *loader.Options) { o.SetProjectName("fazt", true) })
}

// docker-compose.yml, loaded as Docker Compose loads it: three nodes of
// one cluster, each with its own volume, a health check on /readyz, the
// HTTP API published on loopback only, and flags that `fazt serve`
// turns into a cluster node that routes to the other two over mutual
// TLS, with the files the certs service's `fazt cluster certs` makes
// (run here into a directory in place of the volume) before they start.
func TestComposeFile(t *testing.T) {
	if _, err := loadCompose(t, map[string]string{}); err == nil || !strings.Contains(err.Error(), "FAZT_CLUSTER_SECRET") {
		t.Fatalf("without FAZT_CLUSTER_SECRET: %v, want a refusal naming it", err)
	}
	secret := "a-secret-of-24-characters"
	p, err := loadCompose(t, map[string]string{"FAZT_CLUSTER_SECRET": secret})
	if err != nil {
		t.Fatal(err)
	}
	names := p.ServiceNames()
	slices.Sort(names)
	if !slices.Equal(names, []string{"certs", "fazt1", "fazt2", "fazt3"}) {
		t.Fatalf("services %v", names)
	}
	names = names[1:]
	// The certs service: fazt cluster certs into the certs volume, run
	// twice (a second `docker compose up` keeps the files).
	certs := p.Services["certs"]
	certsDir := t.TempDir()
	cmdArgs := slices.Clone([]string(certs.Command))
	if len(cmdArgs) < 2 || cmdArgs[0] != "cluster" || cmdArgs[1] != "certs" || !slices.Contains(cmdArgs, "/certs") ||
		len(certs.Volumes) != 1 || certs.Volumes[0].Source != "certs" || certs.Volumes[0].Target != "/certs" || certs.Volumes[0].ReadOnly {
		t.Fatalf("certs service: %v %+v", cmdArgs, certs.Volumes)
	}
	for i := range cmdArgs {
		cmdArgs[i] = strings.Replace(cmdArgs[i], "/certs", certsDir, 1)
	}
	for range 2 {
		if _, _, err := fazt(t, nil, "", cmdArgs...); err != nil {
			t.Fatalf("the certs service's command: %v", err)
		}
	}
	volumes := map[string]bool{}
	nodes := map[string]bool{}
	for _, name := range names {
		s := p.Services[name]
		hc := s.HealthCheck
		if hc == nil || hc.Disable || !slices.Equal([]string(hc.Test), []string{"CMD", "/fazt", "cluster", "ready", "--addr", "http://127.0.0.1:8080"}) || hc.Interval == nil || hc.StartPeriod == nil {
			t.Errorf("%s: health check %+v", name, hc)
		}
		var data string
		for _, v := range s.Volumes {
			if v.Target == "/data" && v.Type == types.VolumeTypeVolume {
				data = v.Source
			}
		}
		if data == "" || volumes[data] {
			t.Errorf("%s: its own named volume at /data: %+v", name, s.Volumes)
		}
		if !slices.ContainsFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool {
			return v.Source == "certs" && v.Target == "/certs" && v.ReadOnly
		}) {
			t.Errorf("%s: the certs volume not at /certs read-only: %+v", name, s.Volumes)
		}
		if d, ok := s.DependsOn["certs"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s: does not wait for the certs: %+v", name, s.DependsOn)
		}
		volumes[data] = true
		for _, port := range s.Ports {
			if port.HostIP != "127.0.0.1" {
				t.Errorf("%s: port %+v published beyond loopback", name, port)
			}
		}
		env := map[string]string{}
		for k, v := range s.Environment {
			if v != nil {
				env[k] = strings.Replace(*v, "/certs", certsDir, 1)
			}
		}
		s.Command = slices.Clone(s.Command)
		for i := range s.Command {
			s.Command[i] = strings.Replace(s.Command[i], "/certs", certsDir, 1)
		}
		if env["FAZT_CLUSTER_SECRET"] != secret {
			t.Errorf("%s: the secret is not passed through", name)
		}
		// The service's command and environment, given to fazt serve.
		k := composeNode(t, s, env)
		c := k.Cluster
		if c == nil {
			t.Fatalf("%s: not a cluster node", name)
		}
		nodes[c.Node] = true
		if c.Name != "fazt" || c.Secret != secret || c.Listen != "0.0.0.0:6222" || len(c.Peers) != 3 {
			t.Errorf("%s: cluster %+v", name, *c)
		}
		if c.TLS == nil || c.Insecure || filepath.Base(c.TLS.CertFile) != c.Node+".crt" {
			t.Errorf("%s: routes without their own TLS: %+v", name, c.TLS)
		}
		// The node's certificate names the host the others reach it by.
		for _, peer := range c.Peers {
			host, _, _ := strings.Cut(peer, ":")
			if host == s.Hostname && parseCert(t, c.TLS.CertFile).VerifyHostname(host) != nil {
				t.Errorf("%s: the certificate does not name %s", name, host)
			}
		}
		for _, peer := range c.Peers {
			host, port, _ := strings.Cut(peer, ":")
			if _, ok := p.Services[host]; !ok || port != "6222" {
				t.Errorf("%s: peer %s is not a service's cluster port", name, peer)
			}
		}
		if s.Hostname != c.Node {
			t.Errorf("%s: hostname %q, node %q", name, s.Hostname, c.Node)
		}
	}
	if len(nodes) != 3 {
		t.Errorf("node names %v: want three distinct", nodes)
	}
}

// composeNode parses a service's command and environment as fazt serve
// does and returns the kernel configured from them (never opened).
func composeNode(t *testing.T, s types.ServiceConfig, env map[string]string) *kernel.Kernel {
	t.Helper()
	a := &app{getenv: func(k string) string { return env[k] }}
	cmd := a.serveCmd()
	args := []string(s.Command)
	if len(args) == 0 || args[0] != "serve" {
		t.Fatalf("%s: command %v, want serve", s.Name, args)
	}
	if err := cmd.ParseFlags(args[1:]); err != nil {
		t.Fatalf("%s: %v", s.Name, err)
	}
	// The same flags, on a set of their own, for their values.
	var o clusterOptions
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	a.clusterFlags(fs, &o)
	if err := fs.Parse(args[1:]); err != nil {
		t.Fatalf("%s: %v", s.Name, err)
	}
	k := kernel.New(t.TempDir())
	if err := a.applyCluster(cmd, o, t.TempDir(), "", k); err != nil {
		t.Fatalf("%s: %v", s.Name, err)
	}
	if addr, _ := cmd.Flags().GetString("addr"); addr != "0.0.0.0:8080" {
		t.Errorf("%s: serves on %q", s.Name, addr)
	}
	return k
}

// The Dockerfile builds the binary with its own command, for the Go of
// go.mod, onto a non-root base, with the compose file's health check;
// the test runs that command and checks the binary is static and runs.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	mod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(string(mod))
	if goVer == nil || !strings.Contains(df, "FROM golang:"+goVer[1]+"-") {
		t.Errorf("the build stage's Go is not go.mod's (%v)", goVer)
	}
	stages := strings.Split(df, "\nFROM ")
	final := stages[len(stages)-1]
	user := regexp.MustCompile(`(?m)^USER (\S+)`).FindStringSubmatch(final)
	if user == nil || strings.HasPrefix(user[1], "0") || user[1] == "root" {
		t.Errorf("the image runs as %v: want a non-root user", user)
	}
	if !strings.Contains(final, `HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 CMD ["/fazt", "cluster", "ready", "--addr", "http://127.0.0.1:8080"]`) {
		t.Error("the image's health check differs from the compose file's")
	}
	build := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 go build .*) -o /out/fazt (\./cmd/fazt)$`).FindStringSubmatch(df)
	if build == nil {
		t.Fatal("no `RUN CGO_ENABLED=0 go build ... -o /out/fazt ./cmd/fazt` in the Dockerfile")
	}
	if testing.Short() {
		t.Skip("builds the binary")
	}
	// Run the Dockerfile's command, only the output moved.
	out := filepath.Join(t.TempDir(), "fazt")
	script := fmt.Sprintf("%s -o %s %s", build[1], out, build[2])
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = repoRoot
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary needs a dynamic loader: not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs %v", libs)
	}
	// The health check's command answers for a node that is not there.
	b, err = exec.Command(out, "cluster", "ready", "--addr", "http://127.0.0.1:1").CombinedOutput()
	if err == nil || !strings.Contains(string(b), "does not answer") {
		t.Errorf("cluster ready without a node: %v %s", err, b)
	}
}
