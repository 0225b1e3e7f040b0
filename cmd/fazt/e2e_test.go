package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/verticals/analytics"
)

// Browsers of the end-to-end test. Over loopback every request comes from
// 127.0.0.1, so the user agent alone tells visitors apart.
const (
	uaWindowsChrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
	uaIPhone        = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
	uaAndroidPhone  = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36"
	uaIPad          = "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
	uaLinuxFirefox  = "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"
	uaGooglebot     = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
	uaCurl          = "curl/8.5.0"
)

// collect sends one hit to the public collect route, without the token,
// as the snippet does, and returns the status.
func collect(t *testing.T, s *testServer, ua, contentType, body string) int {
	t.Helper()
	status, resp, _ := s.do(t, "POST", "/v1/analytics/collect", strings.NewReader(body),
		map[string]string{"Authorization": "", "User-Agent": ua, "Content-Type": contentType})
	if status == http.StatusAccepted && resp != "" {
		t.Fatalf("collect answered 202 with a body: %q", resp)
	}
	return status
}

func hitJSON(site, pageURL, referrer string) string {
	b, _ := json.Marshal(map[string]string{"site": site, "url": pageURL, "referrer": referrer})
	return string(b)
}

// statsHTTP reads a site's stats over HTTP with the token.
func statsHTTP(t *testing.T, s *testServer, site string, q url.Values) (analytics.Stats, string) {
	t.Helper()
	status, body, _ := s.do(t, "GET", "/v1/analytics/"+site+"/stats?"+q.Encode(), nil, nil)
	if status != http.StatusOK {
		t.Fatalf("stats: %d %s", status, body)
	}
	var st analytics.Stats
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	return st, body
}

// TestAnalyticsEndToEnd runs the binary's server, collects page views the
// way browsers send them, reads the figures over HTTP and the CLI, and
// reads the same figures again after a restart.
func TestAnalyticsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	day := time.Now().UTC()

	status, body, _ := s.do(t, "POST", "/v1/analytics/sites", strings.NewReader(`{"id":"blog","name":"My blog","domains":["blog.example.com"]}`), nil)
	if status != http.StatusCreated || !strings.Contains(body, `"site":{"id":"blog","name":"My blog","domains":["blog.example.com"]}`) {
		t.Fatalf("create site: %d %s", status, body)
	}
	// The snippet is public.
	status, body, _ = s.do(t, "GET", "/v1/analytics/script.js", nil, map[string]string{"Authorization": ""})
	if status != http.StatusOK || !strings.Contains(body, "collect") {
		t.Fatalf("script.js: %d %.200s", status, body)
	}

	page := "https://blog.example.com"
	hits := []struct {
		ua, ct, url, ref string
	}{
		{uaWindowsChrome, "application/json", page + "/", "https://www.google.com/search?q=fazt"},
		{uaWindowsChrome, "text/plain", page + "/posts/hello?utm_source=Newsletter", page + "/"}, // within the site: no referrer
		{uaWindowsChrome, "text/plain", page + "/posts/hello#comments", ""},
		{uaIPhone, "text/plain", page + "/posts/hello?utm_source=twitter", "https://t.co/abc"},
		{uaIPhone, "text/plain", page + "/about", page + "/posts/hello"},
		{uaAndroidPhone, "application/json", page + "/", "https://news.ycombinator.com/item?id=1"},
		{uaIPad, "text/plain", page + "/posts/hello", "https://news.ycombinator.com/"},
		{uaLinuxFirefox, "application/json", page + "/about", ""},
		// Bots are answered like browsers but not counted.
		{uaGooglebot, "text/plain", page + "/", ""},
		{uaCurl, "application/json", page + "/about", ""},
	}
	for _, h := range hits {
		if st := collect(t, s, h.ua, h.ct, hitJSON("blog", h.url, h.ref)); st != http.StatusAccepted {
			t.Fatalf("collect %s from %.30s: %d", h.url, h.ua, st)
		}
	}
	// Hits the collector refuses: another host, an unknown site.
	if st := collect(t, s, uaLinuxFirefox, "application/json", hitJSON("blog", "https://evil.example.net/", "")); st != http.StatusBadRequest {
		t.Fatalf("hit for a foreign host: %d, want 400", st)
	}
	if st := collect(t, s, uaLinuxFirefox, "application/json", hitJSON("nosuch", page+"/", "")); st != http.StatusNotFound {
		t.Fatalf("hit for an unknown site: %d, want 404", st)
	}
	if time.Now().UTC().Format(time.DateOnly) != day.Format(time.DateOnly) {
		t.Skip("the UTC day changed while collecting: the views are on two days")
	}

	// A range around today, given explicitly, so that the same request
	// has the same answer after the restart.
	q := url.Values{"from": {day.AddDate(0, 0, -1).Format(time.DateOnly)}, "to": {day.AddDate(0, 0, 1).Format(time.DateOnly)}}
	st, raw := statsHTTP(t, s, "blog", q)
	if st.Site != "blog" || st.Views != 8 || st.Visitors != 5 {
		t.Fatalf("totals: %d views, %d visitors; want 8 and 5\n%s", st.Views, st.Visitors, raw)
	}
	if len(st.Days) != 3 || st.Days[0].Views != 0 || st.Days[1].Day != day.Format(time.DateOnly) || st.Days[1].Views != 8 || st.Days[1].Visitors != 5 || st.Days[2].Views != 0 {
		t.Errorf("days: %+v", st.Days)
	}
	if want := []analytics.PathViews{{Path: "/posts/hello", Views: 4}, {Path: "/", Views: 2}, {Path: "/about", Views: 2}}; !reflect.DeepEqual(st.TopPaths, want) {
		t.Errorf("top paths %+v, want %+v", st.TopPaths, want)
	}
	if want := []analytics.RefViews{{Referrer: "news.ycombinator.com", Views: 2}, {Referrer: "t.co", Views: 1}, {Referrer: "www.google.com", Views: 1}}; !reflect.DeepEqual(st.TopReferrers, want) {
		t.Errorf("top referrers %+v, want %+v", st.TopReferrers, want)
	}
	if want := []analytics.SourceView{{Source: "newsletter", Views: 1}, {Source: "twitter", Views: 1}}; !reflect.DeepEqual(st.TopSources, want) {
		t.Errorf("top sources %+v, want %+v", st.TopSources, want)
	}

	// The CLI prints the server's answer.
	args := []string{"analytics", "top", "blog", "--json", "--data", dir, "--from", q.Get("from"), "--to", q.Get("to")}
	out, _, err := fazt(t, nil, "", args...)
	if err != nil || strings.TrimSpace(out) != strings.TrimSpace(raw) {
		t.Fatalf("analytics top --json: %v\n%s\nwant\n%s", err, out, raw)
	}
	// Device classes, through the read model's page view rows.
	uaSQL := []string{"query", "--projection", "analytics", "--data", dir, "--json",
		"SELECT ua_class, COUNT(*) AS n FROM pageviews WHERE site = ? GROUP BY ua_class ORDER BY ua_class", "--arg", "blog"}
	out, _, err = fazt(t, nil, "", uaSQL...)
	if err != nil || !strings.Contains(out, `"rows":[["desktop",4],["mobile",3],["tablet",1]]`) {
		t.Fatalf("page views by device: %v\n%s", err, out)
	}

	// Restarted on the same data, the server answers the same.
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	s2 := startServer(t, dir)
	st2, raw2 := statsHTTP(t, s2, "blog", q)
	if raw2 != raw || !reflect.DeepEqual(st2, st) {
		t.Fatalf("stats after a restart:\n%s\nwant\n%s", raw2, raw)
	}
	out, _, err = fazt(t, nil, "", args...)
	if err != nil || strings.TrimSpace(out) != strings.TrimSpace(raw) {
		t.Fatalf("analytics top --json after a restart: %v\n%s", err, out)
	}

	// The day's salt survives the restart too: a returning browser is
	// the same visitor.
	if st := collect(t, s2, uaIPhone, "text/plain", hitJSON("blog", page+"/posts/hello", "")); st != http.StatusAccepted {
		t.Fatalf("collect after restart: %d", st)
	}
	if time.Now().UTC().Format(time.DateOnly) != day.Format(time.DateOnly) {
		return // a new day, a new salt
	}
	if st, raw := statsHTTP(t, s2, "blog", q); st.Views != 9 || st.Visitors != 5 {
		t.Fatalf("after one more view by a known visitor: %d views, %d visitors; want 9 and 5\n%s", st.Views, st.Visitors, raw)
	}
}
