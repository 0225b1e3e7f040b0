package provision

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/kerneltest"
)

// startKernel opens a real kernel in dir with the service registered.
func startKernel(t *testing.T, dir string, cfg Config) (*kernel.Kernel, kerneltest.Client) {
	t.Helper()
	k := kernel.New(dir)
	k.Addr, k.Logger = "127.0.0.1:0", slog.New(slog.DiscardHandler)
	if _, err := Register(k, cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := k.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := k.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return k, kerneltest.Client{Base: "http://" + k.ListenAddr(), Token: k.Token}
}

func history(t *testing.T, k *kernel.Kernel) []eventlog.Event {
	t.Helper()
	evs, err := k.ReadStream(context.Background(), UpgradeStream, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// The records route takes the upgrade events only, each once by its ID;
// the category is the service's alone; the status says what runs.
func TestRecordsAndStatus(t *testing.T) {
	k, c := startKernel(t, t.TempDir(), Config{Version: "v1.0.0", Executable: "/usr/local/bin/fazt", Args: []string{"fazt", "serve"}})

	status, body, _ := c.Do(t, http.MethodGet, "/v1/provision/status", nil, nil)
	var st Status
	if status != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil || st.Version != "v1.0.0" || st.PID != os.Getpid() ||
		st.Executable != "/usr/local/bin/fazt" || strings.Join(st.Args, " ") != "fazt serve" || !filepath.IsAbs(st.Data) || st.Platform != Platform() {
		t.Fatalf("status: %d %s", status, body)
	}

	id := ulid.Make().String()
	rec := `{"id":"` + id + `","type":"provision.upgrade_completed","data":{"upgrade":"` + id + `","from_version":"v1.0.0","to_version":"v1.1.0"}}`
	for i := 0; i < 2; i++ { // a retry is not a second record
		if status, body, _ := c.Do(t, http.MethodPost, "/v1/provision/records", strings.NewReader(rec), nil); status != http.StatusOK {
			t.Fatalf("record: %d %s", status, body)
		}
	}
	if h := history(t, k); len(h) != 1 || h[0].Type != TypeUpgradeCompleted || h[0].ID != id {
		t.Fatalf("history: %+v", h)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"id":"` + ulid.Make().String() + `","type":"orders.placed","data":{}}`, "only the provision.upgrade_*"},
		{`{"id":"1","type":"provision.upgrade_completed","data":{"upgrade":"` + id + `","from_version":"a","to_version":"b"}}`, "want a ULID"},
		{`{"id":"` + ulid.Make().String() + `","type":"provision.upgrade_completed","data":{"upgrade":"` + id + `"}}`, "to_version"},
	} {
		if status, body, _ := c.Do(t, http.MethodPost, "/v1/provision/records", strings.NewReader(tc.body), nil); status != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s", tc.body, status, body)
		}
	}
	// Around the service, the category is closed.
	ev := `{"events":[{"stream":"provision.upgrades","type":"provision.upgrade_completed","data":{"upgrade":"` + id + `","from_version":"a","to_version":"b"}}]}`
	if status, body, _ := c.Do(t, http.MethodPost, "/v1/events", strings.NewReader(ev), nil); status != http.StatusBadRequest {
		t.Fatalf("append into the reserved category: %d %s", status, body)
	}
	if h := history(t, k); len(h) != 1 {
		t.Fatalf("history grew: %d", len(h))
	}
}

// An upgrade requested by an event makes the reactor run the upgrade
// command once, with the request's arguments, even when the event comes
// again; a request recorded by the command itself runs nothing.
func TestReactorRunsRequestedUpgrade(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(t.TempDir(), "ran")
	cfg := Config{
		Version:    "v1.0.0",
		Executable: "/bin/sh",
		UpgradeArgs: func(req UpgradeRequested, data string) []string {
			// A real process standing in for `fazt upgrade --detach`.
			return []string{"-c", `echo "$1 $2 $3" >> "$0"`, out, req.Upgrade, req.From, data}
		},
	}
	k, c := startKernel(t, dir, cfg)

	// Recorded by the command: the reactor leaves it alone.
	cmdID := ulid.Make().String()
	rec := `{"id":"` + cmdID + `","type":"provision.upgrade_requested","data":{"upgrade":"` + cmdID + `","from":"/x/manifest.json","running":"v1.0.0","by":"command"}}`
	if status, body, _ := c.Do(t, http.MethodPost, "/v1/provision/records", strings.NewReader(rec), nil); status != http.StatusOK {
		t.Fatalf("record: %d %s", status, body)
	}
	status, body, _ := c.Do(t, http.MethodPost, "/v1/provision/upgrades", strings.NewReader(`{"from":"https://example.invalid/manifest.json"}`), nil)
	var res struct {
		Upgrade string `json:"upgrade"`
	}
	if status != http.StatusAccepted || json.Unmarshal([]byte(body), &res) != nil {
		t.Fatalf("request: %d %s", status, body)
	}
	data, _ := filepath.Abs(dir)
	want := res.Upgrade + " https://example.invalid/manifest.json " + data + "\n"
	deadline := time.Now().Add(time.Minute)
	for {
		b, _ := os.ReadFile(out)
		if string(b) == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reactor ran %q, want %q", b, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The same event again (a redelivery): the marker keeps it from a
	// second run.
	h := history(t, k)
	if len(h) != 2 {
		t.Fatalf("history: %d events", len(h))
	}
	svc := &Service{k: k, cfg: cfg}
	if err := svc.handle(context.Background(), h[1], h[1].ID); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != want {
		t.Fatalf("ran again: %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "provision", "requests", cmdID)); !os.IsNotExist(err) {
		t.Fatalf("the command's own request was handled: %v", err)
	}
}

// An upgrade asked for through the API is checked against the built-in
// key only: a key in the event is never passed on.
func TestDefaultUpgradeArgsIgnoreTheKey(t *testing.T) {
	args := DefaultUpgradeArgs(UpgradeRequested{Upgrade: "01ARZ3NDEKTSV4RRFFQ69G5FAV", From: "https://x/manifest.json", Key: "RWQattacker", By: ByService}, "/var/lib/fazt")
	want := "upgrade --detach --request 01ARZ3NDEKTSV4RRFFQ69G5FAV --from https://x/manifest.json --data /var/lib/fazt"
	if got := strings.Join(args, " "); got != want {
		t.Fatalf("args %q, want %q", got, want)
	}
}
