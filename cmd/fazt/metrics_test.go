package main

import (
	"strings"
	"testing"
)

func TestMetrics(t *testing.T) {
	s := startServer(t, t.TempDir())
	res := s.appendJSON(t, `{"events":[{"stream":"orders.1","type":"orders.created","data":{}}]}`)
	// Wait until the projection has folded the event.
	if st, b, _ := s.do(t, "POST", "/v1/query", strings.NewReader(`{"projection":"orders_total","sql":"SELECT 1","min_seq":`+jsonUint(res.LastSeq)+`}`), nil); st != 200 {
		t.Fatalf("query: %d %s", st, b)
	}
	if st, _, _ := s.do(t, "GET", "/metrics", nil, map[string]string{"Authorization": ""}); st != 401 {
		t.Fatalf("metrics without the token: %d", st)
	}
	st, body, _ := s.do(t, "GET", "/metrics", nil, nil)
	if st != 200 {
		t.Fatalf("metrics: %d %s", st, body)
	}
	for _, want := range []string{
		"fazt_log_last_seq 1",
		"fazt_log_appends_total 1",
		"fazt_log_events_appended_total 1",
		"fazt_log_groups_total 1",
		"fazt_log_fsyncs_total 1",
		"fazt_log_retries_total 0",
		"fazt_log_resent_total 0",
		`fazt_projection_checkpoint_seq{projection="orders_total"} 1`,
		`fazt_projection_lag{projection="orders_total"} 0`,
		`fazt_projection_halted{projection="orders_total"} 0`,
		`fazt_http_requests_total{code="200",route="POST /v1/events"} 1`,
		`fazt_http_requests_total{code="401",route="GET /metrics"} 1`,
		`fazt_http_request_duration_seconds_count{route="POST /v1/query"} 1`,
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
