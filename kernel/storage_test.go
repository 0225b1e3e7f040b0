package kernel_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/kernel"
)

// appendPadded posts one event of about size bytes; it returns the
// status and the error code, if any.
func appendPadded(t *testing.T, k *kernel.Kernel, size int) (int, string) {
	t.Helper()
	body := fmt.Sprintf(`{"events":[{"stream":"disk.a","type":"disk.filled","data":{"pad":%q}}]}`, strings.Repeat("x", size))
	status, resp, _ := call(t, k, "POST", "/v1/events", "tok", body)
	if status == http.StatusOK {
		return status, ""
	}
	var e kernel.ErrorResponse
	if err := json.Unmarshal([]byte(resp), &e); err != nil {
		t.Fatalf("append answered %d with %q", status, resp)
	}
	return status, e.Error.Code + ": " + e.Error.Message
}

func logLength(t *testing.T, k *kernel.Kernel) uint64 {
	t.Helper()
	seq, err := k.Log().LastSeq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// TestStorageLimitOverHTTP: past --store-limit an append is 507
// insufficient_storage and writes nothing; readiness of writes, doctor
// and metrics say so, while /readyz (reads) stays ready.
func TestStorageLimitOverHTTP(t *testing.T) {
	k := newKernel(t, t.TempDir(), func(c *kernel.Kernel) { c.Token = "tok"; c.StoreLimit = 1 << 20 })
	if err := k.RegisterEvent("disk.filled", 1, []byte(`{"type":"object"}`)); err != nil {
		t.Fatal(err)
	}
	open(t, k)
	if status, _, _ := call(t, k, "GET", "/readyz/writes", "", ""); status != http.StatusOK {
		t.Fatalf("/readyz/writes on an empty log: %d", status)
	}
	before := logLength(t, k)
	ok := uint64(0)
	var refusal string
	for i := 0; i < 100 && refusal == ""; i++ {
		switch status, msg := appendPadded(t, k, 60<<10); status {
		case http.StatusOK:
			ok++
		case http.StatusInsufficientStorage:
			refusal = msg
		default:
			t.Fatalf("append %d: %d %s", i, status, msg)
		}
	}
	if refusal == "" || !strings.HasPrefix(refusal, "insufficient_storage: ") || !strings.Contains(refusal, "--store-limit") {
		t.Fatalf("after %d appends of 60 KiB under a 1 MiB limit: refusal %q", ok, refusal)
	}
	if got := logLength(t, k) - before; got != ok {
		t.Fatalf("%d appends acknowledged, %d events in the log", ok, got)
	}
	status, body, _ := call(t, k, "GET", "/readyz/writes", "", "")
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "insufficient_storage") || !strings.Contains(body, "storage limit") {
		t.Errorf("/readyz/writes while refusing: %d %s", status, body)
	}
	if status, body, _ := call(t, k, "GET", "/readyz", "", ""); status != http.StatusOK {
		t.Errorf("/readyz (reads) while writes are refused: %d %s", status, body)
	}
	_, body, _ = call(t, k, "GET", "/v1/doctor", "tok", "")
	var doc struct{ Checks []kernel.Check }
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("doctor: %v: %s", err, body)
	}
	found := false
	for _, c := range doc.Checks {
		if c.Name == "log storage" {
			found = true
			if c.Status != kernel.CheckFail || !strings.Contains(c.Detail, "storage limit") || c.Fix == "" {
				t.Errorf("doctor's storage check while refusing: %+v", c)
			}
		}
	}
	if !found {
		t.Errorf("doctor has no log storage check: %s", body)
	}
	_, metrics, _ := call(t, k, "GET", "/metrics", "tok", "")
	for _, want := range []string{"fazt_log_writes_refused 1", "fazt_log_storage_limit_bytes 1.048576e+06", "fazt_log_storage_refusals_total 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestDiskReserveOverHTTP fills a real file system under the data
// directory: appends are 507 while the disk is down to the reserve, and
// taken again, without a restart, once space is freed.
func TestDiskReserveOverHTTP(t *testing.T) {
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", dir).CombinedOutput()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("mount a small tmpfs (CI runs as root): %v: %s", err, out)
		}
		t.Skipf("cannot mount a small tmpfs here (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })

	k := newKernel(t, dir, func(c *kernel.Kernel) { c.Token = "tok"; c.DiskReserve = 8 << 20 })
	if err := k.RegisterEvent("disk.filled", 1, []byte(`{"type":"object"}`)); err != nil {
		t.Fatal(err)
	}
	open(t, k)
	st := k.Log().Storage()
	if !st.Checked || st.Reserve != 8<<20 {
		t.Fatalf("storage status: %+v", st)
	}
	// Leave 12 MiB free: 4 MiB above the reserve.
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, st.Free-12<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	before := logLength(t, k)
	ok := uint64(0)
	refused := false
	for i := 0; i < 500 && !refused; i++ {
		switch status, msg := appendPadded(t, k, 60<<10); status {
		case http.StatusOK:
			ok++
		case http.StatusInsufficientStorage:
			refused = true
			if !strings.Contains(msg, dir) || !strings.Contains(msg, "reserve") {
				t.Errorf("the refusal does not name the disk and the reserve: %s", msg)
			}
		default:
			t.Fatalf("append %d: %d %s", i, status, msg)
		}
	}
	if !refused || ok == 0 {
		t.Fatalf("%d appends taken, refused: %v", ok, refused)
	}
	if got := logLength(t, k) - before; got != ok {
		t.Fatalf("%d appends acknowledged, %d events in the log", ok, got)
	}
	if status, body, _ := call(t, k, "GET", "/readyz/writes", "", ""); status != http.StatusServiceUnavailable || strings.Contains(body, dir) {
		t.Errorf("/readyz/writes (open, no token) while the disk is at its reserve: %d %s; want 503 without the data directory", status, body)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	var status int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if status, _, _ = call(t, k, "GET", "/readyz/writes", "", ""); status == http.StatusOK {
			break
		}
	}
	if status != http.StatusOK {
		t.Fatalf("/readyz/writes after space was freed: %d", status)
	}
	if status, msg := appendPadded(t, k, 60<<10); status != http.StatusOK {
		t.Fatalf("append after space was freed: %d %s", status, msg)
	}
}
