package main

import (
	"strings"
	"testing"
)

// TestDataFlagEverywhere: every command that finds a server takes
// --data DIR, as serve and doctor do; --data-dir still works, with a
// note, and is no longer in the help. In events append, where --data is
// the event's data, --data-dir is the data directory.
func TestDataFlagEverywhere(t *testing.T) {
	s := startServer(t, t.TempDir())
	out, stderr, err := fazt(t, nil, "", "events", "append", "--stream", "orders.1", "--type", "orders.created", "--data", `{"n":1}`, "--data-dir", s.dir)
	if err != nil || out != "appended orders.1 version 1 at seq 1\n" || stderr != "" {
		t.Fatalf("append with --data-dir: %q %q %v", out, stderr, err)
	}
	for _, args := range [][]string{
		{"events", "read", "orders.1"},
		{"analytics", "sites"},
		{"schema", "list"},
		{"projections", "status"},
		{"reactors", "status"},
		{"query", "--projection", "orders_total", "SELECT n FROM totals"},
	} {
		out, stderr, err := fazt(t, nil, "", append(args, "--data", s.dir)...)
		if err != nil || stderr != "" {
			t.Errorf("%v --data: %q %q %v", args, out, stderr, err)
		}
		if args[0] == "events" && !strings.Contains(out, `{"n":1}`) {
			t.Errorf("events read --data: %q", out)
		}
		out2, stderr, err := fazt(t, nil, "", append(args, "--data-dir", s.dir)...)
		if err != nil || out2 != out || stderr != "note: --data-dir is deprecated: use --data\n" {
			t.Errorf("%v --data-dir: %q %q %v; want the same output and a note", args, out2, stderr, err)
		}
		cmdPath := args[:2:2]
		if args[0] == "query" {
			cmdPath = args[:1:1]
		}
		help, _, err := fazt(t, nil, "", append(cmdPath, "--help")...)
		if err != nil || !strings.Contains(help, "--data string") || strings.Contains(help, "--data-dir") {
			t.Errorf("%v --help: want --data and not --data-dir:\n%s", cmdPath, help)
		}
	}
	// Without either, the error says which flag to use.
	_, _, err = fazt(t, nil, "", "events", "read", "orders.1", "--addr", s.addr)
	if err == nil || !strings.Contains(err.Error(), "pass --data with the server's data directory") {
		t.Errorf("no token: %v", err)
	}
}
