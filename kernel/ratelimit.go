package kernel

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/netutil"
	"golang.org/x/time/rate"
)

// limiter is a token bucket per client address for public routes. It
// uses golang.org/x/time/rate, the Go team's limiter, rather than a
// hand-written bucket.
type limiter struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	clients map[string]*client
	swept   time.Time
}

type client struct {
	lim  *rate.Limiter
	seen time.Time
}

// idleAfter: a client not seen for this long is forgotten, so the map
// stays as small as the set of recent clients.
const idleAfter = 10 * time.Minute

func newLimiter(r rate.Limit, burst int) *limiter {
	return &limiter{rate: r, burst: burst, clients: map[string]*client{}, swept: time.Now()}
}

func (l *limiter) allow(addr string) bool {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > idleAfter {
		for a, c := range l.clients {
			if now.Sub(c.seen) > idleAfter {
				delete(l.clients, a)
			}
		}
		l.swept = now
	}
	c := l.clients[addr]
	if c == nil {
		c = &client{lim: rate.NewLimiter(l.rate, l.burst)}
		l.clients[addr] = c
	}
	c.seen = now
	return c.lim.AllowN(now, 1)
}

// clientAddr is the address a request is limited by: ClientIP, with
// IPv6 clients grouped by /64, the block one subscriber usually has.
func clientAddr(r *http.Request, trustProxy bool) string {
	return clientKey(ClientIP(r, trustProxy))
}

// clientKey groups an IPv6 host by its /64; other hosts are themselves.
func clientKey(host string) string {
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() != nil {
		return host
	}
	return ip.Mask(net.CIDRMask(64, 128)).String()
}

// perClient counts what each client address holds open (connections,
// live streams) against a cap.
type perClient struct {
	max  int
	mu   sync.Mutex
	open map[string]int
}

func newPerClient(max int) *perClient { return &perClient{max: max, open: map[string]int{}} }

// acquire takes one for key, or reports false when key holds max.
func (p *perClient) acquire(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open[key] >= p.max {
		return false
	}
	p.open[key]++
	return true
}

func (p *perClient) release(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open[key]--; p.open[key] <= 0 {
		delete(p.open, key) // the map holds only clients with something open
	}
}

// limitListener caps the connections ln hands out: max in all, through
// golang.org/x/net/netutil.LimitListener (further clients wait in the
// listen backlog until a connection closes), and perClient from one
// client address (grouped like clientAddr); a connection past that cap
// is answered 429 and closed before the server sees it. perClient 0
// turns the per-client cap off, as it must be behind a proxy, where
// every connection comes from the proxy's address.
func limitListener(ln net.Listener, max, perClient int) net.Listener {
	ln = netutil.LimitListener(ln, max)
	if perClient <= 0 {
		return ln
	}
	return &clientListener{Listener: ln, conns: newPerClient(perClient)}
}

type clientListener struct {
	net.Listener
	conns *perClient
}

func (l *clientListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := c.RemoteAddr().String()
		if host, _, err := net.SplitHostPort(key); err == nil {
			key = clientKey(host)
		}
		if !l.conns.acquire(key) {
			go refuseConn(c, l.conns.max)
			continue
		}
		return &clientConn{Conn: c, release: func() { l.conns.release(key) }}, nil
	}
}

// clientConn gives its client's place back when it closes.
type clientConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *clientConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// refuseConn answers a connection past its client's cap with a 429 and
// closes it. It reads what the client sends meanwhile (a little, for a
// little while) so that closing does not reset the connection before
// the client has read the answer.
func refuseConn(c net.Conn, max int) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	body := fmt.Sprintf(`{"error":{"code":"rate_limited","message":"too many connections from this address (at most %d open at once): reuse connections (keep-alive) or close some"}}`+"\n", max)
	_, err := fmt.Fprintf(c, "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s", len(body), body)
	if err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}
}

// ClientIP is a request's client address: the connection's peer, or
// with trustProxy the nearest address in X-Forwarded-For (the one the
// proxy in front appended). Use Kernel.ClientIP for the kernel's setting.
func ClientIP(r *http.Request, trustProxy bool) string {
	host := r.RemoteAddr
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if trustProxy {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			parts := strings.Split(xff[len(xff)-1], ",")
			host = strings.TrimSpace(parts[len(parts)-1])
		}
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.String()
	}
	return host
}

// ClientIP is r's client address, honouring Kernel.TrustProxy.
func (k *Kernel) ClientIP(r *http.Request) string { return ClientIP(r, k.TrustProxy) }

// ClientLimiter is the per-client token bucket of the public routes, for
// a service that serves its own listener (the edge): IPv6 clients are
// grouped by /64 as on the kernel's listener.
type ClientLimiter struct{ l *limiter }

// NewClientLimiter allows each client r requests a second, bursts of burst.
func NewClientLimiter(r rate.Limit, burst int) *ClientLimiter {
	return &ClientLimiter{l: newLimiter(r, burst)}
}

// Allow spends one token of the client at address ip, or reports false.
func (c *ClientLimiter) Allow(ip string) bool { return c.l.allow(clientKey(ip)) }

// LimitListener caps the connections of ln as the kernel's listener
// does: max in all (more wait in the backlog), perClient from one client
// address (more are answered 429 and closed; 0: no per-client cap).
func LimitListener(ln net.Listener, max, perClient int) net.Listener {
	return limitListener(ln, max, perClient)
}
