package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/vfs"
	"github.com/fazt-sh/fazt/verticals/apps"
)

// Scenario 7 serves a deployed site's files through the kernel's own
// listener (host routing, then vfs.ServeSite), as `fazt serve` does,
// against the same files served from disk by Go's http.FileServer and,
// when an nginx binary is on PATH, by nginx.

// serveConns is the number of keep-alive client connections, each
// with one request in flight (wrk -c32).
const serveConns = 32

// serveApp is the app the scenario deploys; its files are served at
// http://serveApp.localhost:PORT/.
const serveApp = "benchsite"

// serveFiles are the files deployed and served, by name and size.
var serveFiles = []struct {
	name string
	size int
}{
	{"small.bin", 9 * 1024},
	{"large.bin", 1024 * 1024},
}

// NginxMissing is the note a run without nginx carries.
const NginxMissing = "nginx not found; install the Debian package nginx (apt-get install nginx) to measure against it"

func (b *bench) serving(ctx context.Context, dir string) ([]Row, error) {
	site := filepath.Join(dir, "site")
	if err := os.MkdirAll(site, 0o700); err != nil {
		return nil, err
	}
	for _, f := range serveFiles {
		data := make([]byte, f.size)
		_, _ = rand.Read(data) // incompressible: every server sends the bytes as they are
		if err := os.WriteFile(filepath.Join(site, f.name), data, 0o600); err != nil {
			return nil, err
		}
	}

	b.prog.say("starting the kernel and deploying the site")
	k, err := startServingKernel(ctx, filepath.Join(dir, "kernel"))
	if err != nil {
		return nil, err
	}
	defer k.Close(context.WithoutCancel(ctx))
	if err := deploySite(ctx, k, site); err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	kernelURL := "http://" + k.ListenAddr()
	kernelHost := serveApp + apps.LocalSuffix + ":" + portOf(k.ListenAddr())

	fs, fsURL, err := startFileServer(site)
	if err != nil {
		return nil, err
	}
	defer fs.Close()

	var ng *nginx
	nginxPath, lookErr := exec.LookPath("nginx")
	if lookErr == nil {
		b.prog.say("starting nginx")
		if ng, err = startNginx(ctx, nginxPath, filepath.Join(dir, "nginx"), site); err != nil {
			return nil, fmt.Errorf("nginx: %w", err)
		}
		defer ng.stop()
	}

	var rows []Row
	for _, f := range serveFiles {
		path := "/" + f.name
		// Every server must answer the file whole before it is timed.
		for _, t := range []struct{ url, host string }{{kernelURL, kernelHost}, {fsURL, ""}} {
			if err := checkServed(ctx, t.url, t.host, path, f.size); err != nil {
				return rows, err
			}
		}
		if ng != nil {
			if err := checkServed(ctx, ng.url, "", path, f.size); err != nil {
				return rows, fmt.Errorf("nginx: %w", err)
			}
		}
		label := fmt.Sprintf("%s file", sizeLabel(f.size))
		kernelRound := func() (sample, error) { return b.fetchLoop(ctx, kernelURL, kernelHost, path) }
		fsRound := func() (sample, error) { return b.fetchLoop(ctx, fsURL, "", path) }
		if ng != nil {
			ngRound := func() (sample, error) { return b.fetchLoop(ctx, ng.url, "", path) }
			raws, kernels, err := b.alternate(label+" vs nginx", ngRound, kernelRound)
			if err != nil {
				return rows, err
			}
			row := rateRow(label+", vs nginx", "req/s", "nginx serving the file from disk (sendfile on, access_log off, 1 worker)", raws, kernels)
			row.Latency = fmt.Sprintf("per request, %d keep-alive connections", serveConns)
			row.atLeast(0.5)
			rows = append(rows, row)
		}
		raws, kernels, err := b.alternate(label+" vs http.FileServer", fsRound, kernelRound)
		if err != nil {
			return rows, err
		}
		row := rateRow(label+", vs http.FileServer", "req/s", "Go's http.FileServer serving the file from disk", raws, kernels)
		row.Latency = fmt.Sprintf("per request, %d keep-alive connections", serveConns)
		if ng == nil {
			row.Note = NginxMissing
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func sizeLabel(n int) string {
	if n >= 1024*1024 {
		return fmt.Sprintf("%d MiB", n/(1024*1024))
	}
	return fmt.Sprintf("%d KiB", n/1024)
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// startServingKernel opens a kernel with vfs and the hosting vertical
// registered, as the binary does, on a free loopback port.
func startServingKernel(ctx context.Context, dir string) (*kernel.Kernel, error) {
	k := kernel.New(dir)
	k.Addr, k.Logger = "127.0.0.1:0", slog.New(slog.DiscardHandler)
	files, err := vfs.Register(k, vfs.Config{})
	if err != nil {
		return nil, err
	}
	if err := apps.Register(k, files, apps.Config{}); err != nil {
		return nil, err
	}
	if err := k.Open(ctx); err != nil {
		return nil, err
	}
	if err := k.WaitReady(ctx); err != nil {
		return nil, errors.Join(err, k.Close(context.WithoutCancel(ctx)))
	}
	return k, nil
}

// deploySite deploys the files of dir as serveApp through the deploy
// API, as `fazt deploy` does: the manifest, the missing blobs, the
// deploy.
func deploySite(ctx context.Context, k *kernel.Kernel, dir string) error {
	base := "http://" + k.ListenAddr()
	m := vfs.Manifest{Files: map[string]vfs.File{}}
	blobs := map[string][]byte{}
	for _, f := range serveFiles {
		data, err := os.ReadFile(filepath.Join(dir, f.name))
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		h := hex.EncodeToString(sum[:])
		m.Files[f.name] = vfs.File{SHA256: h, Size: int64(len(data))}
		blobs[h] = data
	}
	call := func(method, path string, body []byte, out any) error {
		req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+k.Token)
		if method == http.MethodPut {
			req.Header.Set("Content-Type", "application/octet-stream")
		} else {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
		}
		if out != nil {
			return json.Unmarshal(b, out)
		}
		return nil
	}
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var mr apps.ManifestResponse
	if err := call(http.MethodPost, apps.ManifestPath(serveApp), body, &mr); err != nil {
		return err
	}
	for _, h := range mr.Missing {
		if err := call(http.MethodPut, apps.BlobPath(serveApp, h), blobs[h], nil); err != nil {
			return err
		}
	}
	return call(http.MethodPost, apps.DeploysPath(serveApp), body, nil)
}

// checkServed waits until url (with Host host, when set) answers path
// with 200 and size bytes: a deploy is live once the read model has
// folded it.
func checkServed(ctx context.Context, url, host, path string, size int) error {
	c := newServeClient(1)
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+path, nil)
		if err != nil {
			return err
		}
		if host != "" {
			req.Host = host
		}
		var got string
		resp, err := c.Do(req)
		if err == nil {
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && n == int64(size) {
				return nil
			}
			got = fmt.Sprintf("%s, %d bytes", resp.Status, n)
		} else {
			got = err.Error()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("GET %s%s (Host %q): %s, want 200 and %d bytes", url, path, host, got, size)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newServeClient keeps conns connections alive to one server and asks
// for no compression (every server sends the same bytes).
func newServeClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		DisableCompression:  true,
	}}
}

// fetchLoop GETs path from serveConns keep-alive connections for one
// round.
func (b *bench) fetchLoop(ctx context.Context, url, host, path string) (sample, error) {
	c := newServeClient(serveConns)
	defer c.CloseIdleConnections()
	buf := make(chan []byte, serveConns)
	for range serveConns {
		buf <- make([]byte, 64*1024)
	}
	return closedLoop(ctx, serveConns, b.cfg.Duration, func(int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+path, nil)
		if err != nil {
			return err
		}
		if host != "" {
			req.Host = host
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		p := <-buf
		_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{resp.Body}, p)
		buf <- p
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return err
	})
}

// startFileServer serves dir with http.FileServer on a free loopback
// port.
func startFileServer(dir string) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir)), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return srv, "http://" + ln.Addr().String(), nil
}

// nginx is an nginx child process serving a directory.
type nginx struct {
	cmd  *exec.Cmd
	url  string
	done chan error
}

// nginxConf is a minimal configuration: one worker (the kernel's
// listener is one process too), in the foreground, logs off, sendfile.
const nginxConf = `daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log error;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    types { application/octet-stream bin; }
    server {
        listen %[2]s;
        root %[3]s;
    }
}
`

// NginxConfig returns the configuration the scenario runs nginx with:
// files under dir, listening on addr, serving root.
func NginxConfig(dir, addr, root string) string { return fmt.Sprintf(nginxConf, dir, addr, root) }

// startNginx starts nginx (the binary at bin) on a free loopback port,
// serving root, with its files in dir.
func startNginx(ctx context.Context, bin, dir, root string) (*nginx, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// A free port: taken, then released for nginx to bind.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(NginxConfig(dir, addr, root)), 0o600); err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := &nginx{cmd: cmd, url: "http://" + addr, done: make(chan error, 1)}
	go func() { n.done <- cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return n, nil
		}
		select {
		case err := <-n.done:
			return nil, fmt.Errorf("exited before listening (%v): %s", err, strings.TrimSpace(stderr.String()))
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			n.stop()
			return nil, ctx.Err()
		}
		if time.Now().After(deadline) {
			n.stop()
			return nil, fmt.Errorf("not listening on %s after 10s: %s", addr, strings.TrimSpace(stderr.String()))
		}
	}
}

func (n *nginx) stop() {
	_ = n.cmd.Process.Kill()
	<-n.done
}
