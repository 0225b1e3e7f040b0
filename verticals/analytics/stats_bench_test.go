package analytics_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/verticals/analytics"
	"github.com/fazt-sh/fazt/verticals/analytics/analyticsbench"
)

// BenchmarkStats measures GET /v1/analytics/{site}/stats over the
// sample's 90 days, through the kernel's handler without a network: the
// wait for the log's tail, the read transaction and the JSON answer.
func BenchmarkStats(b *testing.B) {
	ctx := context.Background()
	k := kernel.New(b.TempDir())
	k.Addr, k.Logger = "127.0.0.1:0", slog.New(slog.DiscardHandler)
	if err := analytics.Register(k, analytics.Config{}); err != nil {
		b.Fatal(err)
	}
	if err := k.Open(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { k.Close(context.Background()) })
	last, err := analyticsbench.NewSample(5000, 1).Fill(ctx, k.Log(), nil)
	if err != nil {
		b.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := k.Projections().WaitFor(wctx, "analytics", last); err != nil {
		b.Fatal(err)
	}
	h := k.Handler()
	for b.Loop() {
		req := httptest.NewRequest("GET", "/v1/analytics/blog/stats?from=2026-01-05&to=2026-04-04", nil)
		req.Header.Set("Authorization", "Bearer "+k.Token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		var st analytics.Stats
		if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &st) != nil || st.Views == 0 || st.Seq != last {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}
