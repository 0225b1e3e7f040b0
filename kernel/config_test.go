package kernel_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/kerneltest"
	"github.com/fazt-sh/fazt/kernel/reactor"
)

// TestNewPresetsDefaults: New sets every tunable to its default, so that
// a zero value is never a stand-in for "the default".
func TestNewPresetsDefaults(t *testing.T) {
	k := kernel.New(t.TempDir())
	got := map[string]any{
		"Addr": k.Addr, "NoHTTP": k.NoHTTP, "Token": k.Token, "Durability": k.Durability,
		"NATSURL": k.NATSURL, "NATSListen": k.NATSListen, "NATSWritable": k.NATSWritable,
		"StoreLimit": k.StoreLimit, "DiskReserve": k.DiskReserve, "Logger": k.Logger,
		"MaxBodyBytes": k.MaxBodyBytes, "PublicBodyBytes": k.PublicBodyBytes,
		"PublicRate": float64(k.PublicRate), "PublicBurst": k.PublicBurst, "TrustProxy": k.TrustProxy,
		"ShutdownTimeout": k.ShutdownTimeout, "ReadHeaderTimeout": k.ReadHeaderTimeout,
		"BodyTimeout": k.BodyTimeout, "WriteTimeout": k.WriteTimeout, "IdleTimeout": k.IdleTimeout,
		"MaxConns": k.MaxConns, "MaxConnsPerClient": k.MaxConnsPerClient, "MaxStreamsPerClient": k.MaxStreamsPerClient,
	}
	want := map[string]any{
		"Addr": kernel.DefaultAddr, "NoHTTP": false, "Token": "", "Durability": eventlog.Strict,
		"NATSURL": "", "NATSListen": "", "NATSWritable": false,
		"StoreLimit": int64(0), "DiskReserve": int64(eventlog.DefaultDiskReserve), "Logger": slog.Default(),
		"MaxBodyBytes": int64(kernel.DefaultMaxBodyBytes), "PublicBodyBytes": int64(kernel.DefaultPublicBodyBytes),
		"PublicRate": float64(kernel.DefaultPublicRate), "PublicBurst": kernel.DefaultPublicBurst, "TrustProxy": false,
		"ShutdownTimeout": kernel.DefaultShutdownTimeout, "ReadHeaderTimeout": kernel.DefaultReadHeaderTimeout,
		"BodyTimeout": kernel.DefaultBodyTimeout, "WriteTimeout": kernel.DefaultWriteTimeout, "IdleTimeout": kernel.DefaultIdleTimeout,
		"MaxConns": kernel.DefaultMaxConns, "MaxConnsPerClient": kernel.DefaultMaxConnsPerClient, "MaxStreamsPerClient": kernel.DefaultMaxStreamsPerClient,
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("New: %s = %v, want %v", name, got[name], w)
		}
	}
}

// TestTunablesAreReadAtOpen: fields set after New and after the
// verticals registered still count, for the kernel, its API and its
// reactors, since Open reads them.
func TestTunablesAreReadAtOpen(t *testing.T) {
	k := kernel.New(t.TempDir())
	k.RegisterEvent("mail.requested", 1, []byte(`{"type":"object"}`))
	if err := k.RegisterReactor(reactor.Reactor{
		Name:        "mailer",
		Filter:      eventlog.Filter{Types: []string{"mail.requested"}},
		Handle:      func(context.Context, eventlog.Event, string) error { return errors.New("smtp: connection refused") },
		MaxAttempts: 1,
		FetchWait:   100 * time.Millisecond,
	}); err != nil {
		t.Fatal(err)
	}
	if err := k.HandlePublic("GET /hello", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	k.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	k.Addr, k.Token = "127.0.0.1:0", "tok"
	k.PublicRate, k.PublicBurst = 0.001, 1
	open(t, k)

	if k.Token != "tok" {
		t.Fatalf("Token = %q after Open, want the one set", k.Token)
	}
	if status, body, _ := call(t, k, "GET", "/v1/schemas", "tok", ""); status != http.StatusOK {
		t.Fatalf("with the token set before Open: %d %s", status, body)
	}
	if status, _, _ := call(t, k, "GET", "/hello", "", ""); status != http.StatusOK {
		t.Fatalf("first public request: %d", status)
	}
	if status, _, _ := call(t, k, "GET", "/hello", "", ""); status != http.StatusTooManyRequests {
		t.Fatalf("second public request with PublicBurst 1: %d, want 429", status)
	}

	if _, err := k.Append(context.Background(), []eventlog.Event{{Stream: "mail.1", Type: "mail.requested", Data: []byte(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		st, err := k.Reactors()[0].Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Parked) == 1 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the failing event was not parked: %+v", st)
		case <-time.After(20 * time.Millisecond):
		}
	}
	out := logs.String()
	for _, want := range []string{`msg="kernel open"`, `msg="reactor parks event" reactor=mailer`} {
		if !strings.Contains(out, want) {
			t.Errorf("the Logger set before Open did not get %s:\n%s", want, out)
		}
	}
}

// TestOpenRefusesBadTunables: a tunable set to a value the kernel cannot
// use is refused, naming it; the failed kernel closes cleanly.
func TestOpenRefusesBadTunables(t *testing.T) {
	k := newKernel(t, t.TempDir(), func(k *kernel.Kernel) { k.MaxBodyBytes, k.BodyTimeout, k.Logger = 0, -time.Second, nil })
	err := k.Open(context.Background())
	if !errors.Is(err, eventlog.ErrInvalid) || !strings.Contains(err.Error(), "MaxBodyBytes 0") || !strings.Contains(err.Error(), "BodyTimeout -1s") {
		t.Fatalf("Open: %v, want ErrInvalid naming MaxBodyBytes and BodyTimeout", err)
	}
	checkFailedOpen(t, k)
}

// TestCloseAfterFailedOpen: a kernel whose Open failed before it opened
// anything (no data directory, a registration error) closes without
// error, and WaitReady says it is closed instead of waiting.
func TestCloseAfterFailedOpen(t *testing.T) {
	k := kernel.New("")
	if err := k.Open(context.Background()); !errors.Is(err, eventlog.ErrInvalid) || !strings.Contains(err.Error(), "kernel.New(dir)") {
		t.Fatalf("Open without a directory: %v, want ErrInvalid", err)
	}
	checkFailedOpen(t, k)

	k = newKernel(t, t.TempDir(), nil)
	k.RegisterEvent("bad type", 1, []byte(`{"type":"object"}`))
	if err := k.Open(context.Background()); err == nil || !strings.Contains(err.Error(), "registration") {
		t.Fatalf("Open after a failed registration: %v", err)
	}
	checkFailedOpen(t, k)
}

func checkFailedOpen(t *testing.T, k *kernel.Kernel) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := k.WaitReady(ctx); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("WaitReady after a failed Open: %v, want ErrClosed", err)
	}
	if err := k.Close(ctx); err != nil {
		t.Fatalf("Close after a failed Open: %v", err)
	}
	if err := k.Open(ctx); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("Open again: %v, want ErrInvalid (a kernel opens once)", err)
	}
}

// syncBuffer is a buffer the kernel and the test use at once.
type syncBuffer = kerneltest.Buffer
