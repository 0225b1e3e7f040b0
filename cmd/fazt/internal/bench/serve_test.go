package bench

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// runServing runs scenario 7 briefly and checks every row it returns.
func runServing(t *testing.T) []Row {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{Scenarios: []int{7}, Duration: 40 * time.Millisecond, Rounds: 1, Events: 1, RebuildEvents: 1, Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("scenario 7: %v", err)
	}
	for _, row := range rep.Results {
		if row.Scenario != 7 || row.Title != "static serving" || row.Unit != "req/s" {
			t.Errorf("row %+v", row)
		}
		if !(row.Kernel > 0 && row.Raw > 0 && row.Ratio > 0) || !(row.P50 > 0 && row.P99 >= row.P50) {
			t.Errorf("%s: kernel %v, raw %v, ratio %v, p50 %v, p99 %v", row.Case, row.Kernel, row.Raw, row.Ratio, row.P50, row.P99)
		}
	}
	return rep.Results
}

func cases(rows []Row) string {
	var s []string
	for _, r := range rows {
		s = append(s, r.Case)
	}
	return strings.Join(s, "; ")
}

// Without nginx on PATH the scenario measures the kernel against
// http.FileServer and says how to get nginx.
func TestBenchServingWithoutNginx(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	rows := runServing(t)
	want := "9 KiB file, vs http.FileServer; 1 MiB file, vs http.FileServer"
	if got := cases(rows); got != want {
		t.Fatalf("cases %q, want %q", got, want)
	}
	for _, row := range rows {
		if row.Note != NginxMissing {
			t.Errorf("%s: note %q, want %q", row.Case, row.Note, NginxMissing)
		}
	}
}

// With nginx on PATH (the Debian package nginx), each file is measured
// against nginx too, with the bar as the target.
func TestBenchServingWithNginx(t *testing.T) {
	if _, err := exec.LookPath("nginx"); err != nil {
		t.Skip("nginx not on PATH; install the Debian package nginx to run this test")
	}
	rows := runServing(t)
	want := "9 KiB file, vs nginx; 9 KiB file, vs http.FileServer; 1 MiB file, vs nginx; 1 MiB file, vs http.FileServer"
	if got := cases(rows); got != want {
		t.Fatalf("cases %q, want %q", got, want)
	}
	for _, row := range rows {
		if strings.HasSuffix(row.Case, "vs nginx") && (row.Target != "≥ 0.5x" || row.Met == nil || row.Note != "") {
			t.Errorf("%s: target %q met %v note %q", row.Case, row.Target, row.Met, row.Note)
		}
	}
}
