package kernel_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/kerneltest"
)

// hostCall sends a request with a Host header to the kernel's listener.
func hostCall(t *testing.T, k *kernel.Kernel, method, host, path, body string) (int, string) {
	t.Helper()
	status, b, _ := kerneltest.Client{Base: "http://" + k.ListenAddr()}.Do(t, method, path, strings.NewReader(body), map[string]string{"Host": host})
	return status, b
}

// RouteHost's function takes the requests for its hosts, whatever their
// path, before the API; every other request reaches the API as before.
func TestRouteHostTakesItsHostsFirst(t *testing.T) {
	k := newKernel(t, t.TempDir(), func(k *kernel.Kernel) { k.PublicBodyBytes = 100 })
	site := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		io.WriteString(w, "site "+r.URL.Path+" "+string(b))
	})
	if err := k.RouteHost(func(r *http.Request) http.Handler {
		if r.Host == "site.test" {
			return site
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	open(t, k)
	if err := k.RouteHost(func(*http.Request) http.Handler { return nil }); !errors.Is(err, eventlog.ErrInvalid) {
		t.Errorf("RouteHost after Open: %v, want ErrInvalid", err)
	}

	// The site's host: its handler, also for the API's paths, no token.
	for _, path := range []string{"/", "/v1/events", "/healthz"} {
		if status, body := hostCall(t, k, "GET", "site.test", path, ""); status != 200 || body != "site "+path+" " {
			t.Errorf("site.test%s: %d %q, want the site's handler", path, status, body)
		}
	}
	if status, body := hostCall(t, k, "POST", "site.test", "/form", strings.Repeat("x", 101)); status != http.StatusRequestEntityTooLarge {
		t.Errorf("a body over PublicBodyBytes: %d %q, want the handler to see it cut (413)", status, body)
	}
	// Any other host: the API, token and all.
	if status, _ := hostCall(t, k, "GET", "other.test", "/v1/events", ""); status != http.StatusUnauthorized {
		t.Errorf("other.test/v1/events without a token: %d, want 401", status)
	}
	if status, _ := hostCall(t, k, "GET", k.ListenAddr(), "/healthz", ""); status != 200 {
		t.Errorf("/healthz on the listener's address: %d, want 200", status)
	}
	if status, body, _ := call(t, k, "GET", "/metrics", k.Token, ""); status != 200 || !strings.Contains(body, `route="`+kernel.HostRoute+`"`) {
		t.Errorf("/metrics: %d, want the host route counted under %q", status, kernel.HostRoute)
	}
}

// One function per kernel, and not nil: a mistake made at registration
// (Open then fails with it).
func TestRouteHostRefusesNilAndASecond(t *testing.T) {
	k := newKernel(t, t.TempDir(), nil)
	if err := k.RouteHost(nil); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("RouteHost(nil): %v, want ErrInvalid", err)
	}
	k = newKernel(t, t.TempDir(), nil)
	none := func(*http.Request) http.Handler { return nil }
	if err := k.RouteHost(none); err != nil {
		t.Fatal(err)
	}
	if err := k.RouteHost(none); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("a second RouteHost: %v, want ErrInvalid", err)
	}
}

// HandleBody gives one admin route its own body limit; the others keep
// MaxBodyBytes.
func TestHandleBodyLimitsOneRoute(t *testing.T) {
	k := newKernel(t, t.TempDir(), func(k *kernel.Kernel) { k.MaxBodyBytes = 100 })
	read := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			k.WriteError(w, r, fmt.Errorf("%w: %w", eventlog.ErrInvalid, err))
			return
		}
		fmt.Fprintf(w, "%d", len(b))
	})
	if err := k.HandleBody("PUT /v1/test/upload", read, 1000); err != nil {
		t.Fatal(err)
	}
	if err := k.Handle("PUT /v1/test/small", read); err != nil {
		t.Fatal(err)
	}
	open(t, k)
	if status, body, _ := call(t, k, "PUT", "/v1/test/upload", k.Token, strings.Repeat("x", 1000)); status != 200 || body != "1000" {
		t.Errorf("1000 bytes to the upload route: %d %s", status, body)
	}
	if status, body, _ := call(t, k, "PUT", "/v1/test/upload", k.Token, strings.Repeat("x", 1001)); status != http.StatusRequestEntityTooLarge {
		t.Errorf("1001 bytes to the upload route: %d %s, want 413", status, body)
	}
	if status, body, _ := call(t, k, "PUT", "/v1/test/small", k.Token, strings.Repeat("x", 101)); status != http.StatusRequestEntityTooLarge {
		t.Errorf("101 bytes to another route: %d %s, want 413", status, body)
	}
	if err := newKernel(t, t.TempDir(), nil).HandleBody("PUT /v1/x", read, 0); !errors.Is(err, eventlog.ErrInvalid) {
		t.Errorf("HandleBody with limit 0: %v, want ErrInvalid", err)
	}
}
