package kernel

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

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

// clientAddr is the address a public request is limited by: ClientIP,
// with IPv6 clients grouped by /64, the block one subscriber usually has.
func clientAddr(r *http.Request, trustProxy bool) string {
	host := ClientIP(r, trustProxy)
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() != nil {
		return host
	}
	return ip.Mask(net.CIDRMask(64, 128)).String()
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

// ClientIP is r's client address, honouring Config.TrustProxy.
func (k *Kernel) ClientIP(r *http.Request) string { return ClientIP(r, k.cfg.TrustProxy) }
