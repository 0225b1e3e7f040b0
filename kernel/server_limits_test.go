package kernel_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
)

// rawRequest writes a request on c and reads the answer.
func rawRequest(t *testing.T, c net.Conn, br *bufio.Reader, req string) (*http.Response, string) {
	t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func dial(t *testing.T, k *kernel.Kernel) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", k.ListenAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

const healthz = "GET /healthz HTTP/1.1\r\nHost: fazt\r\n\r\n"

// TestSlowBodyIsCutOff: a client that stops sending its body is
// answered 408 once BodyTimeout has passed, and its connection closed,
// on admin and public routes alike; a handler that answers for longer
// than BodyTimeout after reading its body, and a live stream, are not
// cut off.
func TestSlowBodyIsCutOff(t *testing.T) {
	const limit = 300 * time.Millisecond
	k := newKernel(t, t.TempDir(), func(c *kernel.Kernel) { c.BodyTimeout, c.WriteTimeout = limit, 2*limit })
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			k.WriteError(w, r, err)
			return
		}
		kernel.WriteJSON(w, http.StatusOK, map[string]int{"got": len(b)})
	})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			k.WriteError(w, r, err)
			return
		}
		// Longer than the body timeout: the request must not be cancelled.
		select {
		case <-time.After(3 * limit):
		case <-r.Context().Done():
			k.WriteError(w, r, r.Context().Err())
			return
		}
		_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
		kernel.WriteJSON(w, http.StatusOK, map[string]string{"status": "done"})
	})
	if err := k.HandlePublic("POST /hook", echo); err != nil {
		t.Fatal(err)
	}
	if err := k.Handle("POST /v1/slow", slow); err != nil {
		t.Fatal(err)
	}
	if err := k.RegisterEvent("t.hit", 1, []byte(`{"type":"object"}`)); err != nil {
		t.Fatal(err)
	}
	open(t, k)

	for _, path := range []string{"/v1/query", "/hook"} {
		t.Run(path, func(t *testing.T) {
			c, br := dial(t, k)
			// Ten bytes of a hundred, then nothing.
			resp, body := rawRequest(t, c, br, "POST "+path+" HTTP/1.1\r\nHost: fazt\r\nAuthorization: Bearer "+k.Token+
				"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"project")
			if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(body, `"code":"timeout"`) || !strings.Contains(body, "did not arrive within") {
				t.Fatalf("slow body: %d %s; want 408 timeout", resp.StatusCode, body)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("after the 408 the connection is still open: %v", err)
			}
		})
	}

	// A body sent at once, then a handler working past the body timeout.
	status, body, _ := call(t, k, "POST", "/v1/slow", k.Token, `{}`)
	if status != http.StatusOK || !strings.Contains(body, "done") {
		t.Fatalf("long handler after its body: %d %s", status, body)
	}

	// A live stream outlives both timeouts.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+k.ListenAddr()+"/v1/events/live?after=0", nil)
	req.Header.Set("Authorization", "Bearer "+k.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	time.Sleep(3 * limit)
	if _, err := k.Append(ctx, []eventlog.Event{{Stream: "t.late", Type: "t.hit", Data: []byte(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data:") && strings.Contains(sc.Text(), "t.late") {
			return
		}
	}
	t.Fatalf("the live stream ended before the event: %v", sc.Err())
}

// TestConnectionsPerClient: a client address holds at most
// MaxConnsPerClient connections; one more is answered 429 and closed,
// and once one closes a new one is served.
func TestConnectionsPerClient(t *testing.T) {
	k := newKernel(t, t.TempDir(), func(c *kernel.Kernel) { c.MaxConnsPerClient = 3 })
	open(t, k)
	var conns []net.Conn
	for range 3 {
		c, br := dial(t, k)
		if resp, body := rawRequest(t, c, br, healthz); resp.StatusCode != http.StatusOK {
			t.Fatalf("connection %d: %d %s", len(conns)+1, resp.StatusCode, body)
		}
		conns = append(conns, c)
	}
	c, br := dial(t, k)
	resp, body := rawRequest(t, c, br, healthz)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, `"code":"rate_limited"`) || !strings.Contains(body, "too many connections from this address (at most 3") {
		t.Fatalf("a fourth connection: %d %s; want 429", resp.StatusCode, body)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("the refused connection is still open: %v", err)
	}
	conns[0].Close()
	waitFor(t, "a connection to be served again", func() bool {
		c, br := dial(t, k)
		resp, _ := rawRequest(t, c, br, healthz)
		c.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// TestConnectionsPerClientOffBehindProxy: with TrustProxy every
// connection comes from the proxy, so only the total cap applies.
func TestConnectionsPerClientOffBehindProxy(t *testing.T) {
	k := newKernel(t, t.TempDir(), func(c *kernel.Kernel) { c.MaxConnsPerClient, c.TrustProxy = 2, true })
	open(t, k)
	for i := range 4 {
		c, br := dial(t, k)
		if resp, body := rawRequest(t, c, br, healthz); resp.StatusCode != http.StatusOK {
			t.Fatalf("connection %d behind a proxy: %d %s", i+1, resp.StatusCode, body)
		}
	}
}

// TestConnectionsInAll: past MaxConns a connection waits, unanswered,
// until another closes; then it is served.
func TestConnectionsInAll(t *testing.T) {
	k := newKernel(t, t.TempDir(), func(c *kernel.Kernel) { c.MaxConns = 2 })
	open(t, k)
	var conns []net.Conn
	for range 2 {
		c, br := dial(t, k)
		if resp, body := rawRequest(t, c, br, healthz); resp.StatusCode != http.StatusOK {
			t.Fatalf("connection %d: %d %s", len(conns)+1, resp.StatusCode, body)
		}
		conns = append(conns, c)
	}
	c, br := dial(t, k)
	if _, err := io.WriteString(c, healthz); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := br.Peek(1); err == nil {
		t.Fatal("a third connection was answered while two were open; want it to wait")
	}
	conns[0].Close()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the waiting connection once another closed: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestLiveStreamsPerClient: one more live stream than
// MaxStreamsPerClient is answered 429; closing one makes room.
func TestLiveStreamsPerClient(t *testing.T) {
	k := newKernel(t, t.TempDir(), func(c *kernel.Kernel) { c.MaxStreamsPerClient = 2 })
	open(t, k)
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	live := func(ctx context.Context) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+k.ListenAddr()+"/v1/events/live?after=0", nil)
		req.Header.Set("Authorization", "Bearer "+k.Token)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	var cancels []context.CancelFunc
	for i := range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cancels = append(cancels, cancel)
		if resp := live(ctx); resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: %d", i+1, resp.StatusCode)
		}
	}
	third, cancelThird := context.WithCancel(context.Background())
	resp := live(third)
	if resp.StatusCode == http.StatusOK {
		cancelThird()
		t.Fatal("a third stream was opened; want 429")
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	cancelThird()
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), "too many live event streams from this address (at most 2") {
		t.Fatalf("a third stream: %d %s; want 429", resp.StatusCode, body)
	}
	// Other routes still answer that client.
	if status, body, _ := call(t, k, "GET", "/v1/schemas", k.Token, ""); status != http.StatusOK {
		t.Fatalf("another route while the streams are open: %d %s", status, body)
	}
	cancels[0]()
	waitFor(t, "room for a stream", func() bool {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		resp := live(ctx)
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// waitFor polls until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
