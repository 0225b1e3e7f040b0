package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/cmd/fazt/internal/bench"
)

// benchChildTestEnv marks the process that `fazt bench` re-executes for
// its start-up scenario. In a test that is this test binary, so it runs
// the child here, before any test, as the fazt binary would.
const benchChildTestEnv = "FAZT_TEST_BENCH_CHILD"

func init() {
	benchChildEnv = []string{benchChildTestEnv + "=1"}
	if os.Getenv(benchChildTestEnv) != "1" {
		return
	}
	if err := run(context.Background(), compiledIn(), os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// tinyBench is every scenario at sizes that only prove it works.
var tinyBench = []string{"bench", "--duration", "40ms", "--rounds", "1", "--sizes", "256,1KiB",
	"--callers", "1,4", "--events", "600", "--rebuild-events", "600"}

func runBench(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := run(ctx, testVerticals, args, noEnv, strings.NewReader(""), &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

func TestBenchJSON(t *testing.T) {
	dir := t.TempDir()
	out, progress, err := runBench(t, append(tinyBench, "--json", "--dir", dir)...)
	if err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, progress)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, out)
	}
	seen := map[int]int{}
	for _, row := range rep.Results {
		seen[row.Scenario]++
		what := fmt.Sprintf("scenario %d %q", row.Scenario, row.Case)
		if !(row.Kernel > 0) || math.IsInf(row.Kernel, 0) {
			t.Errorf("%s: kernel %v", what, row.Kernel)
		}
		if row.Raw > 0 {
			// One round: the ratio is the kernel's speed over the raw one's.
			want := row.Kernel / row.Raw
			if row.Unit == "s" {
				want = row.Raw / row.Kernel
			}
			if !(row.Ratio > 0.001 && row.Ratio < 1000) || math.Abs(row.Ratio-want) > 1e-6*want {
				t.Errorf("%s: ratio %v, kernel %v, raw %v", what, row.Ratio, row.Kernel, row.Raw)
			}
		}
		if row.Latency != "" && !(row.P50 > 0 && row.P99 >= row.P50) {
			t.Errorf("%s: p50 %v ms, p99 %v ms", what, row.P50, row.P99)
		}
		if row.Target != "" && row.Met == nil {
			t.Errorf("%s: target %q without met", what, row.Target)
		}
		if row.PeakRSS <= 0 && rep.RSS != "unavailable on this system" {
			t.Errorf("%s: peak RSS %d", what, row.PeakRSS)
		}
		if row.Scenario == 2 && !strings.Contains(row.Note, " events per fsync, ") {
			t.Errorf("%s: note %q does not say how many events shared an fsync", what, row.Note)
		}
	}
	// Scenario 1 has a row per size, 2 per caller count, 3 a catch-up
	// and two rebuilds, 4 has the maximum and three paced rates.
	// 7 has a row per file against http.FileServer, and one per file
	// against nginx when nginx is on PATH.
	want := map[int]int{1: 2, 2: 2, 3: 3, 4: 4, 5: 2, 6: 2, 7: 2}
	if _, err := exec.LookPath("nginx"); err == nil {
		want[7] = 4
	}
	for s, n := range want {
		if seen[s] != n {
			t.Errorf("scenario %d: %d rows, want %d", s, seen[s], n)
		}
	}
	if !strings.Contains(progress, "[7/7 static serving]") || strings.Contains(progress, "\r") {
		t.Errorf("progress on stderr should be plain lines up to scenario 7:\n%s", progress)
	}
	if left, _ := os.ReadDir(dir); len(left) > 0 {
		t.Errorf("the run left %v in --dir", left)
	}
}

func TestBenchTableAndKeep(t *testing.T) {
	dir := t.TempDir()
	out, progress, err := runBench(t, "bench", "--scenarios", "2,5", "--duration", "30ms", "--rounds", "2", "--callers", "2", "--rebuild-events", "300", "--dir", dir, "--keep")
	if err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, progress)
	}
	for _, want := range []string{"scenario", "ratio", "peak RSS", "append, strict", "2 callers, 256 B", "read-only queries", "point lookup by key", "JetStream publish, fsync per message"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "append, relaxed") {
		t.Errorf("--scenarios 2,5 ran scenario 1:\n%s", out)
	}
	kept, _ := os.ReadDir(dir)
	if len(kept) != 1 || !strings.Contains(progress, "kept the run's files in") {
		t.Errorf("--keep: %v in --dir; stderr:\n%s", kept, progress)
	}
}

func TestBenchUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "extra"},
		{"bench", "--scenarios", "8"},
		{"bench", "--scenarios", "one"},
		{"bench", "--scenarios", ","},
		{"bench", "--sizes", "0"},
		{"bench", "--sizes", "big"},
		{"bench", "--sizes", "2MiB"},
		{"bench", "--callers", "0"},
		{"bench", "--events", "0"},
		{"bench", "--events", "lots"},
		{"bench", "--rebuild-events", "-5"},
		{"bench", "--rounds", "0"},
		{"bench", "--duration", "0s"},
		{"bench", "--duration", "soon"},
		{"bench", "child"},
	} {
		_, _, err := runBench(t, args...)
		var u *usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), "--help' for usage") {
			t.Errorf("%q: %v; want a usage error", args, err)
		}
	}
	// The child is not advertised.
	out, _, err := runBench(t, "bench", "--help")
	if err != nil || !strings.Contains(out, "--rebuild-events") || strings.Contains(out, "child") {
		t.Errorf("bench --help: %v\n%s", err, out)
	}
}

func TestParseSizesAndCounts(t *testing.T) {
	sizes, err := parseList("256, 4KiB,1k,2K,512B", parseSize)
	if err != nil || !slices.Equal(sizes, []int{256, 4096, 1024, 2048, 512}) {
		t.Errorf("sizes: %v %v", sizes, err)
	}
	for in, want := range map[string]int{"1M": 1_000_000, "200k": 200_000, "1500": 1500} {
		if n, err := parseCount(in); err != nil || n != want {
			t.Errorf("count %q: %d %v", in, n, err)
		}
	}
}
