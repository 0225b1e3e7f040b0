package edge_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/fazt-sh/fazt/kernel/edge"
)

// plain is an edge serving over HTTP only, for the routing tests.
func plain(tune func(*edge.Config)) edge.Config {
	cfg := edge.Config{Domain: "example.com", Plain: true, Rate: 1e6, Burst: 1e6}
	if tune != nil {
		tune(&cfg)
	}
	return cfg
}

// TestRoutes: NAME.<domain> serves app NAME once it is live, an alias
// and a custom domain serve their app, other hosts get the plain 404;
// the admin host is never served in clear text.
func TestRoutes(t *testing.T) {
	n := startNode(t, t.TempDir(), plain(nil))
	n.deploy(t, "one", map[string]string{"index.html": "one"})
	n.deploy(t, "two", map[string]string{"index.html": "two"})
	if code, body := n.api(t, "POST", "/v1/apps/one/aliases", map[string]string{"alias": "uno"}); code != http.StatusCreated {
		t.Fatalf("alias: %d %s", code, body)
	}
	n.bind(t, "two", "www.two-example.org")
	n.waitServes(t, "www.two-example.org", true)
	n.waitServes(t, "uno.example.com", true)
	c := dialTo(n.edge.HTTPAddr(), nil)
	for url, want := range map[string]string{
		"http://one.example.com/":         "200 one",
		"http://ONE.example.com.:80/":     "200 one",
		"http://uno.example.com/":         "200 one",
		"http://two.example.com/":         "200 two",
		"http://www.two-example.org/":     "200 two",
		"http://three.example.com/":       "404",
		"http://one.example.org/":         "404",
		"http://fazt.example.com/v1/apps": "404",
		"http://127.0.0.1/":               "404",
	} {
		code, body, _, err := get(t, c, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := http.StatusText(code)
		switch code {
		case http.StatusOK:
			got = "200 " + body
		case http.StatusNotFound:
			got = "404"
		}
		if got != want {
			t.Errorf("GET %s: %d %q, want %s", url, code, body, want)
		}
	}
}

// TestSwapUnderLoad: clients hammering while a domain is bound to one
// app, unbound, and bound to another see only whole answers: the page
// of the app bound at that moment or the 404, never anything else.
func TestSwapUnderLoad(t *testing.T) {
	n := startNode(t, t.TempDir(), plain(nil))
	n.deploy(t, "one", map[string]string{"index.html": "page of one"})
	n.deploy(t, "two", map[string]string{"index.html": "page of two"})
	const host = "swap.example.org"
	var stop atomic.Bool
	var wg sync.WaitGroup
	var requests atomic.Int64
	bad := make(chan string, 100)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, n.edge.HTTPAddr())
			}}}
			for !stop.Load() {
				code, body, _, err := get(t, c, "http://"+host+"/", nil)
				requests.Add(1)
				ok := err == nil && ((code == 200 && (body == "page of one" || body == "page of two")) || (code == 404 && strings.Contains(body, "no site")))
				if !ok {
					select {
					case bad <- fmt.Sprintf("%d %q %v", code, body, err):
					default:
					}
				}
			}
		}()
	}
	c := dialTo(n.edge.HTTPAddr(), nil)
	for i := range 6 {
		app := []string{"one", "two"}[i%2]
		n.bind(t, app, host)
		n.waitServes(t, host, true)
		if code, body, _, _ := get(t, c, "http://"+host+"/", nil); code != 200 || body != "page of "+app {
			t.Errorf("bound to %s: %d %q", app, code, body)
		}
		n.unbind(t, app, host)
		n.waitServes(t, host, false)
		if code, _, _, _ := get(t, c, "http://"+host+"/", nil); code != 404 {
			t.Errorf("unbound: %d", code)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(bad)
	for b := range bad {
		t.Errorf("a client saw %s", b)
	}
	if requests.Load() < 10 {
		t.Errorf("only %d requests were made during the swaps", requests.Load())
	}
}

// TestForwardedFor: X-Forwarded-For names the client only when the peer
// is a trusted proxy, and then only its last untrusted address (what
// the proxy saw), so that a client cannot dodge the rate limit by
// sending its own header.
func TestForwardedFor(t *testing.T) {
	limit := func(trusted ...netip.Prefix) func(*edge.Config) {
		return func(c *edge.Config) { c.Rate, c.Burst, c.TrustedProxies = rate.Limit(0.0001), 1, trusted }
	}
	n := startNode(t, t.TempDir(), plain(limit(netip.MustParsePrefix("127.0.0.0/8"))))
	n.deploy(t, "one", map[string]string{"index.html": "one"})
	n.waitServes(t, "one.example.com", true)
	c := dialTo(n.edge.HTTPAddr(), nil)
	for _, step := range []struct {
		xff  string
		want int
	}{
		{"203.0.113.7", 200},
		{"203.0.113.7", 429},
		{"203.0.113.8", 200},
		{"203.0.113.9, 127.0.0.2", 200},    // a trusted hop is skipped
		{"198.51.100.5, 203.0.113.9", 429}, // the left part is the client's to forge
		{"garbage, 203.0.113.10", 200},
	} {
		code, _, _, err := get(t, c, "http://one.example.com/", map[string]string{"X-Forwarded-For": step.xff})
		if err != nil || code != step.want {
			t.Errorf("X-Forwarded-For %q: %d %v, want %d", step.xff, code, err, step.want)
		}
	}

	n2 := startNode(t, t.TempDir(), plain(limit()))
	n2.deploy(t, "one", map[string]string{"index.html": "one"})
	n2.waitServes(t, "one.example.com", true)
	c2 := dialTo(n2.edge.HTTPAddr(), nil)
	for i, want := range []int{200, 429, 429} {
		xff := "203.0.113." + strconv.Itoa(i+1)
		if code, _, _, err := get(t, c2, "http://one.example.com/", map[string]string{"X-Forwarded-For": xff}); err != nil || code != want {
			t.Errorf("untrusted peer, X-Forwarded-For %s: %d %v, want %d", xff, code, err, want)
		}
	}
}

// TestLimits: oversized headers are refused, and a client that never
// finishes its headers is cut off (slowloris) instead of holding the
// connection.
func TestLimits(t *testing.T) {
	n := startNode(t, t.TempDir(), plain(func(c *edge.Config) {
		c.MaxHeaderBytes, c.ReadHeaderTimeout, c.MaxBodyBytes = 1024, 200*time.Millisecond, 16
	}))
	n.deploy(t, "one", map[string]string{"index.html": "one"})
	n.waitServes(t, "one.example.com", true)
	c := dialTo(n.edge.HTTPAddr(), nil)
	code, _, _, err := get(t, c, "http://one.example.com/", map[string]string{"X-Big": strings.Repeat("a", 64<<10)})
	if err != nil || code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB header: %d %v, want 431", code, err)
	}

	conn, err := net.Dial("tcp", n.edge.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: one.example.com\r\nX-Slow: 1\r\n")); err != nil {
		t.Fatal(err)
	}
	// The safety deadline is far above the server's 200ms: reaching it
	// means the server never cut the connection.
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = bufio.NewReader(conn).ReadString('\n')
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("unfinished headers: read %v, want the server to close the connection", err)
	}
}
