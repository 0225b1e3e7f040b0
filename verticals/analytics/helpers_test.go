package analytics

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/eventlog/eventlogtest"
	"github.com/fazt-sh/fazt/kernel"
)

// User agents of the tests.
const (
	chromeUA  = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
	iphoneUA  = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
	ipadUA    = "Mozilla/5.0 (iPad; CPU OS 12_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1 Mobile/15E148 Safari/604.1"
	androidUA = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36"
	googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
)

// clock is a settable Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(rfc3339 string) *clock {
	t, err := time.Parse(time.RFC3339, rfc3339)
	if err != nil {
		panic(err)
	}
	return &clock{t: t}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(rfc3339 string) {
	t, err := time.Parse(time.RFC3339, rfc3339)
	if err != nil {
		panic(err)
	}
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// env is a real kernel on a loopback port with the vertical registered.
type env struct {
	k     *kernel.Kernel
	base  string // http://127.0.0.1:PORT
	clock *clock
	seen  uint64 // the log position newEvents continues from
}

// start opens a kernel in dir with the vertical at a release; tune
// changes the kernel's tunables (nil: none), cfg tunes the vertical (its
// Now is the env's clock). Cleanup closes it. Every test of the package
// makes its kernels here.
func start(t *testing.T, dir string, release int, tune func(*kernel.Kernel), cfg Config) *env {
	t.Helper()
	e := &env{clock: newClock("2025-03-10T10:00:00Z")}
	if cfg.Now == nil {
		cfg.Now = e.clock.Now
	}
	e.k = kernel.New(dir)
	e.k.Addr = "127.0.0.1:0"
	e.k.Logger = slog.New(slog.DiscardHandler)
	if tune != nil {
		tune(e.k)
	}
	if err := register(e.k, cfg, release); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.k.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.close(t) })
	err := e.k.WaitReady(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.base = "http://" + e.k.ListenAddr()
	// newEvents reports only what the test appends from now on.
	if e.seen, err = e.k.Log().LastSeq(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

// trustClients lets the tests pick client addresses (X-Forwarded-For)
// and does not rate limit them.
func trustClients(k *kernel.Kernel) {
	k.TrustProxy, k.PublicRate, k.PublicBurst = true, 10000, 10000
}

// startDefault is start with trustClients.
func startDefault(t *testing.T) *env {
	return start(t, t.TempDir(), current, trustClients, Config{})
}

func (e *env) close(t *testing.T) {
	t.Helper()
	if err := e.k.Close(context.Background()); err != nil {
		t.Errorf("close kernel: %v", err)
	}
}

// do sends a request; admin adds the API token. It returns the status,
// the headers and the body.
func (e *env) do(t *testing.T, method, path string, headers map[string]string, body string, admin bool) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if admin {
		req.Header.Set("Authorization", "Bearer "+e.k.Token)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// newEvents returns the events appended since the last call.
func (e *env) newEvents(t *testing.T) []eventlog.Event {
	t.Helper()
	events, seen := eventlogtest.ReadAfter(t, e.k.Log(), e.seen)
	e.seen = seen
	return events
}

// createSite creates a site through the API.
func (e *env) createSite(t *testing.T, id string, domains ...string) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"id": id, "name": id, "domains": domains})
	if status, _, body := e.do(t, "POST", "/v1/analytics/sites", nil, string(b), true); status != http.StatusCreated {
		t.Fatalf("create site %s: %d %s", id, status, body)
	}
	e.newEvents(t)
}

// hit sends one page view from a client address and user agent.
func (e *env) hit(t *testing.T, ip, ua, site, url, referrer string) {
	t.Helper()
	b, _ := json.Marshal(hit{Site: site, URL: url, Referrer: referrer})
	h := map[string]string{"Content-Type": "text/plain;charset=UTF-8", "User-Agent": ua, "X-Forwarded-For": ip}
	if status, _, body := e.do(t, "POST", "/v1/analytics/collect", h, string(b), false); status != http.StatusAccepted {
		t.Fatalf("hit %s: %d %s", url, status, body)
	}
}

// stats reads GET /v1/analytics/{site}/stats with a query.
func (e *env) stats(t *testing.T, site, query string) Stats {
	t.Helper()
	status, _, body := e.do(t, "GET", "/v1/analytics/"+site+"/stats"+query, nil, "", true)
	if status != http.StatusOK {
		t.Fatalf("stats %s%s: %d %s", site, query, status, body)
	}
	var st Stats
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// pageviewOf decodes a pageview_recorded event.
func pageviewOf(t *testing.T, ev eventlog.Event) PageviewRecorded {
	t.Helper()
	if ev.Type != TypePageviewRecorded {
		t.Fatalf("event %d is %s, not %s", ev.Seq, ev.Type, TypePageviewRecorded)
	}
	var pv PageviewRecorded
	if err := json.Unmarshal(ev.Data, &pv); err != nil {
		t.Fatal(err)
	}
	return pv
}
