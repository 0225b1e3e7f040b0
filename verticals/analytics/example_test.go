package analytics_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/verticals/analytics"
)

func ExampleRegister() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "fazt-analytics-example")
	defer os.RemoveAll(dir)

	k := kernel.New(dir)
	k.Addr = "127.0.0.1:0"
	k.Logger = slog.New(slog.DiscardHandler)
	noon := func() time.Time { return time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC) }
	if err := analytics.Register(k, analytics.Config{Now: noon}); err != nil {
		panic(err)
	}
	if err := k.Open(ctx); err != nil {
		panic(err)
	}
	defer k.Close(ctx)
	base := "http://" + k.ListenAddr()

	send := func(method, path, contentType, body string, admin bool) (int, []byte) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/127.0")
		if admin {
			req.Header.Set("Authorization", "Bearer "+k.Token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	// The admin creates a site; the snippet on its pages sends hits.
	status, _ := send("POST", "/v1/analytics/sites", "application/json",
		`{"id":"blog","name":"My blog","domains":["blog.example.com"]}`, true)
	fmt.Println("create:", status)
	status, _ = send("POST", "/v1/analytics/collect", "text/plain",
		`{"site":"blog","url":"https://blog.example.com/hello?utm_source=news","referrer":"https://search.example.net/?q=fazt"}`, false)
	fmt.Println("collect:", status)

	// The stats read their writes: the view just sent is in.
	_, body := send("GET", "/v1/analytics/blog/stats?from=2025-03-10&to=2025-03-10", "", "", true)
	var st analytics.Stats
	if err := json.Unmarshal(body, &st); err != nil {
		panic(err)
	}
	fmt.Println("views:", st.Views, "visitors:", st.Visitors)
	fmt.Println("top path:", st.TopPaths[0].Path, "referrer:", st.TopReferrers[0].Referrer, "source:", st.TopSources[0].Source)
	// Output:
	// create: 201
	// collect: 202
	// views: 1 visitors: 1
	// top path: /hello referrer: search.example.net source: news
}
