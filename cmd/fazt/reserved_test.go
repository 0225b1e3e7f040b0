package main

import (
	"strings"
	"testing"
)

// The CLI appends through the API like everyone: the kernel's own
// categories are refused there too, and `fazt schema register` still
// writes its registration.
func TestCLIReservedCategories(t *testing.T) {
	s := startServer(t, t.TempDir())
	d := []string{"--data-dir", s.dir}
	for _, args := range [][]string{
		{"--stream", "schemas.shop.ordered", "--type", "schemas.registered", "--data", `{"type":"shop.ordered","version":1,"schema":{"type":"object"}}`},
		{"--stream", "projections.analytics", "--type", "projections.event_skipped", "--data", `{"projection":"analytics","seq":1}`},
		{"--stream", "reactors.x", "--type", "t"},
	} {
		_, _, err := fazt(t, nil, "", append(append([]string{"events", "append"}, args...), d...)...)
		if err == nil || !strings.Contains(err.Error(), "is reserved for the kernel") {
			t.Errorf("events append %v: %v; want the category refused", args, err)
		}
	}
	out, _, err := fazt(t, nil, `{"type":"object"}`, append([]string{"schema", "register", "shop.ordered", "--file", "-"}, d...)...)
	if err != nil || out != "registered shop.ordered version 1\n" {
		t.Fatalf("register: %q %v", out, err)
	}
	out, _, err = fazt(t, nil, "", append([]string{"events", "read", "schemas.shop.ordered", "--json"}, d...)...)
	if err != nil || strings.Count(out, `"type":"schemas.registered"`) != 1 {
		t.Fatalf("registration stream: %q %v", out, err)
	}
}
