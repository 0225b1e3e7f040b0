package apps

import (
	"context"
	"database/sql"
	"net"
	"net/http"
	"strings"
	"sync"

	"golang.org/x/net/idna"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/vfs"
	"github.com/fazt-sh/fazt/projections"
)

// LocalSuffix is the suffix of the hosts that name an app by itself:
// NAME.localhost, which browsers resolve to loopback with no DNS.
const LocalSuffix = ".localhost"

// ParseHost reads a request's Host header: the port (digits) dropped,
// lower-cased, one trailing dot dropped. ok is false for a Host that is not a valid
// host name or address.
func ParseHost(raw string) (host string, ok bool) {
	h := raw
	bracketed := strings.HasPrefix(h, "[")
	switch {
	case bracketed && strings.HasSuffix(h, "]"):
		h = h[1 : len(h)-1]
	case bracketed || strings.Count(h, ":") == 1:
		var port string
		var err error
		if h, port, err = net.SplitHostPort(h); err != nil || len(port) > 5 || strings.Trim(port, "0123456789") != "" {
			return "", false
		}
	}
	if !bracketed && strings.Contains(h, ":") {
		return "", false // an IPv6 address needs brackets
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "" || len(h) > 253 {
		return "", false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`/\?#@%"<>{}|^`+"`", c) >= 0 {
			return "", false
		}
	}
	return h, true
}

// localApp returns NAME for NAME.localhost; ok is false for hosts that
// are not under LocalSuffix. bad is set for a host under it that names
// no valid app (a.b.localhost, a non-ASCII name, "_x.localhost").
func localApp(raw string) (name string, ours, bad bool) {
	h, ok := ParseHost(raw)
	if !ok {
		// Only garbage under .localhost is ours to refuse.
		low := strings.ToLower(raw)
		if i := strings.LastIndexByte(low, ':'); i > 0 && !strings.Contains(low, "]") {
			low = low[:i]
		}
		low = strings.TrimSuffix(low, ".")
		return "", strings.HasSuffix(low, LocalSuffix), strings.HasSuffix(low, LocalSuffix)
	}
	if !strings.HasSuffix(h, LocalSuffix) {
		return h, false, false
	}
	name = strings.TrimSuffix(h, LocalSuffix)
	if !vfs.ValidSite(name) {
		return "", true, true
	}
	return name, true, false
}

// NormalizeDomain checks a custom domain and returns its stored form:
// lower-case ASCII (an internationalised name in punycode), no trailing
// dot, at least two labels of [a-z0-9-] (not starting or ending with
// "-"), at most 253 bytes; not an IP address, not a wildcard, not under
// .localhost (those are the apps' own names). Errors wrap
// eventlog.ErrInvalid.
func NormalizeDomain(d string) (string, error) {
	in := d
	d = strings.TrimSuffix(strings.TrimSpace(d), ".")
	if d == "" {
		return "", kernel.Invalidf("empty domain: want a host name such as www.example.com")
	}
	if net.ParseIP(strings.Trim(d, "[]")) != nil {
		return "", kernel.Invalidf("domain %q is an IP address: bind a host name such as www.example.com", clip(in))
	}
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return "", kernel.Invalidf("domain %q is not a valid host name: %v", clip(in), err)
	}
	a = strings.ToLower(a)
	if len(a) > 253 {
		return "", kernel.Invalidf("domain %q: %d bytes, at most 253", clip(in), len(a))
	}
	labels := strings.Split(a, ".")
	if len(labels) < 2 {
		return "", kernel.Invalidf("domain %q has one label: want a full host name such as www.example.com", clip(in))
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", kernel.Invalidf("domain %q: label %q must be 1 to 63 of a-z, 0-9 and -, not starting or ending with -", clip(in), clip(l))
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return "", kernel.Invalidf("domain %q: label %q holds %q: use a-z, 0-9 and - (no wildcards)", clip(in), clip(l), string(c))
			}
		}
	}
	if tld := labels[len(labels)-1]; strings.Trim(tld, "0123456789") == "" {
		return "", kernel.Invalidf("domain %q ends in a number: bind a host name such as www.example.com", clip(in))
	}
	if a == "localhost" || strings.HasSuffix(a, LocalSuffix) {
		return "", kernel.Invalidf("domain %q is under .localhost, where apps answer by name already: add an alias instead (fazt apps alias add)", clip(in))
	}
	return a, nil
}

// hostMap is the aliases and domains of every app, host → app, in
// memory: serving a request costs no SQLite read. The projection's fold
// drops it when it applies a change (before committing it), and the next
// request loads it again with a read that waits until the projection has
// folded the whole log.
type hostMap struct {
	mu   sync.Mutex
	gen  uint64            // bumped by every change
	m    map[string]string // nil: load it
	load func(ctx context.Context) (map[string]string, error)
}

func (h *hostMap) get(ctx context.Context) (map[string]string, error) {
	h.mu.Lock()
	m, gen := h.m, h.gen
	h.mu.Unlock()
	if m != nil {
		return m, nil
	}
	m, err := h.load(ctx)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	if h.gen == gen {
		h.m = m
	}
	h.mu.Unlock()
	return m, nil
}

// changed drops the map after a change was folded.
func (h *hostMap) changed() {
	h.mu.Lock()
	h.gen++
	h.m = nil
	h.mu.Unlock()
}

// loadHosts reads the hosts table once the projection has folded the log.
func (v *vertical) loadHosts(ctx context.Context) (map[string]string, error) {
	m := map[string]string{}
	err := v.read(ctx, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT host, app FROM hosts`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var h, a string
			if err := rows.Scan(&h, &a); err != nil {
				return err
			}
			m[h] = a
		}
		return rows.Err()
	})
	return m, err
}

// route is the kernel's RouteHost function: NAME.localhost and
// ALIAS.localhost serve the app, a bound domain serves its app, a
// malformed name under .localhost is 400, and every other host is left
// to the API (nil).
func (v *vertical) route(r *http.Request) http.Handler {
	name, local, bad := localApp(r.Host)
	if bad {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			v.k.WriteError(w, r, kernel.Invalidf("host %q names no app: use NAME.localhost, NAME of [a-z0-9][a-z0-9-]{0,62}", clip(r.Host)))
		})
	}
	if name == "" || (!local && !strings.Contains(name, ".")) {
		return nil // an address, localhost or a one-label name: the API
	}
	if !local && net.ParseIP(name) != nil {
		return nil
	}
	hosts, err := v.hosts.get(r.Context())
	if err != nil {
		if local {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { v.k.WriteError(w, r, err) })
		}
		// The domains cannot be read (the projection is halted or
		// catching up): the API stays reachable by any name, to fix it.
		return nil
	}
	app, found := hosts[name]
	switch {
	case local && !found:
		app = name
	case !local && !found:
		return nil
	}
	return siteHandler{v.files, app}
}

// siteHandler serves one app through vfs.ServeSite.
type siteHandler struct {
	files *vfs.Service
	app   string
}

func (h siteHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.files.ServeSite(w, r, h.app)
}

// read runs fn in one read transaction of the apps projection, once it
// has folded everything the log holds now.
func (v *vertical) read(ctx context.Context, fn func(context.Context, *sql.Tx) error) error {
	last, err := v.k.Log().LastSeq(ctx)
	if err != nil {
		return err
	}
	_, err = v.k.Projections().Read(ctx, projectionName, projections.ReadOptions{MinSeq: last, MaxWait: v.cfg.MaxWait}, fn)
	return err
}

// clip shortens what a caller sent for an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
