package analytics

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
)

// scenario is one HTTP exchange and what it must append to the log.
type scenario struct {
	name    string
	method  string
	url     string
	headers map[string]string
	body    string
	admin   bool // send the API token

	status int
	has    []string // substrings of the answer (body, then headers)
	hasNot []string
	events map[string]int // event type -> how many the request appends
	check  func(t *testing.T, events []eventlog.Event)
}

func (sc scenario) run(t *testing.T, e *env) {
	t.Helper()
	status, header, body := e.do(t, sc.method, sc.url, sc.headers, sc.body, sc.admin)
	if status != sc.status {
		t.Errorf("status %d, want %d; body %s", status, sc.status, body)
	}
	var hb strings.Builder
	_ = header.Write(&hb)
	answer := body + "\n" + hb.String()
	for _, s := range sc.has {
		if !strings.Contains(answer, s) {
			t.Errorf("answer lacks %q:\n%s", s, answer)
		}
	}
	for _, s := range sc.hasNot {
		if strings.Contains(answer, s) {
			t.Errorf("answer has %q:\n%s", s, answer)
		}
	}
	events := e.newEvents(t)
	got := map[string]int{}
	for _, ev := range events {
		got[ev.Type]++
	}
	want := sc.events
	if want == nil {
		want = map[string]int{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("appended %v, want %v", got, want)
	}
	if sc.check != nil && !t.Failed() {
		sc.check(t, events)
	}
}

// collectHeaders are a browser's beacon headers, from client address ip.
func collectHeaders(ip, ua string) map[string]string {
	return map[string]string{"Content-Type": "text/plain;charset=UTF-8", "User-Agent": ua, "X-Forwarded-For": ip}
}

func with(h map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// wantPageview checks the one page view a scenario appended.
func wantPageview(want PageviewRecorded) func(t *testing.T, events []eventlog.Event) {
	return func(t *testing.T, events []eventlog.Event) {
		t.Helper()
		ev := events[0]
		if ev.Stream != "analytics."+want.Site || ev.Schema != current {
			t.Errorf("event on stream %s schema %d; want analytics.%s schema %d", ev.Stream, ev.Schema, want.Site, current)
		}
		got := pageviewOf(t, ev)
		if len(got.Visitor) != 32 || strings.Trim(got.Visitor, "0123456789abcdef") != "" {
			t.Errorf("visitor %q is not 32 hex digits", got.Visitor)
		}
		want.Visitor = got.Visitor
		if got != want {
			t.Errorf("page view\n got %+v\nwant %+v", got, want)
		}
		if strings.Contains(string(ev.Data), "127.0.0.1") || strings.Contains(string(ev.Data), "Mozilla") {
			t.Errorf("the event keeps the address or the user agent: %s", ev.Data)
		}
	}
}

func TestHTTPScenarios(t *testing.T) {
	e := startDefault(t)
	const at = "2025-03-10T10:00:00Z"
	desktop := collectHeaders("203.0.113.7", chromeUA)
	one := map[string]int{TypePageviewRecorded: 1}
	created := map[string]int{TypeSiteCreated: 1}
	big := `{"site":"blog","url":"https://blog.example.com/` + strings.Repeat("a", 70<<10) + `","referrer":""}`

	scenarios := []scenario{
		// Sites.
		{name: "create site", method: "POST", url: "/v1/analytics/sites", admin: true,
			body:   `{"id":"blog","name":"My blog","domains":["Blog.Example.com.","blog.example.com","www.example.com"]}`,
			status: 201, has: []string{`"site":{"id":"blog","name":"My blog","domains":["blog.example.com","www.example.com"]}`, `"seq":`},
			events: created,
			check: func(t *testing.T, events []eventlog.Event) {
				if events[0].Stream != "analytics.blog" || events[0].Version != 1 {
					t.Errorf("site_created on %s version %d; want analytics.blog version 1", events[0].Stream, events[0].Version)
				}
			}},
		{name: "create second site", method: "POST", url: "/v1/analytics/sites", admin: true,
			body: `{"id":"shop","name":"Shop","domains":["shop.example.org"]}`, status: 201, events: created},
		{name: "create duplicate", method: "POST", url: "/v1/analytics/sites", admin: true,
			body: `{"id":"blog","name":"Again","domains":["x.example.com"]}`, status: 409, has: []string{`"refused"`, `already exists`}},
		{name: "create bad id", method: "POST", url: "/v1/analytics/sites", admin: true,
			body: `{"id":"My Blog","name":"x","domains":["x.example.com"]}`, status: 400, has: []string{`site id \"My Blog\" is invalid`}},
		{name: "create no domains", method: "POST", url: "/v1/analytics/sites", admin: true,
			body: `{"id":"nodomains","name":"x","domains":[]}`, status: 400, has: []string{`\"domains\" is missing or empty`}},
		{name: "create domain with scheme", method: "POST", url: "/v1/analytics/sites", admin: true,
			body: `{"id":"scheme","name":"x","domains":["https://x.example.com"]}`, status: 400, has: []string{`domain \"https://x.example.com\" is invalid`}},
		{name: "create unknown field", method: "POST", url: "/v1/analytics/sites", admin: true,
			body: `{"id":"x","domains":["x.example.com"],"owner":"me"}`, status: 400, has: []string{`owner`}},
		{name: "create without token", method: "POST", url: "/v1/analytics/sites",
			body: `{"id":"x","domains":["x.example.com"]}`, status: 401, has: []string{`"unauthorized"`}},
		{name: "list sites", method: "GET", url: "/v1/analytics/sites", admin: true, status: 200,
			has: []string{`{"sites":[{"id":"blog","name":"My blog","domains":["blog.example.com","www.example.com"],"created":"`, `{"id":"shop"`}},
		{name: "list sites without token", method: "GET", url: "/v1/analytics/sites", status: 401},
		{name: "list sites bad param", method: "GET", url: "/v1/analytics/sites?limit=3", admin: true, status: 400, has: []string{`unknown query parameter \"limit\"`}},

		// Collect: recorded.
		{name: "collect text/plain", method: "POST", url: "/v1/analytics/collect", headers: desktop,
			body:   `{"site":"blog","url":"https://blog.example.com/posts/1?utm_source=News&x=1#top","referrer":"https://www.google.com/search?q=x"}`,
			status: 202, has: []string{"Access-Control-Allow-Origin: *"}, hasNot: []string{"{"}, events: one,
			check: wantPageview(PageviewRecorded{Site: "blog", Path: "/posts/1", Referrer: "www.google.com", UAClass: "desktop", At: at, UTMSource: "news"})},
		{name: "collect application/json, mobile, direct", method: "POST", url: "/v1/analytics/collect",
			headers: with(collectHeaders("203.0.113.8", iphoneUA), "Content-Type", "application/json"),
			body:    `{"site":"blog","url":"https://www.example.com","referrer":""}`, status: 202, events: one,
			check: wantPageview(PageviewRecorded{Site: "blog", Path: "/", Referrer: "", UAClass: "mobile", At: at})},
		{name: "collect referrer from the site itself is direct", method: "POST", url: "/v1/analytics/collect",
			headers: collectHeaders("203.0.113.9", ipadUA),
			body:    `{"site":"blog","url":"https://blog.example.com/about","referrer":"https://www.example.com/"}`, status: 202, events: one,
			check: wantPageview(PageviewRecorded{Site: "blog", Path: "/about", Referrer: "", UAClass: "tablet", At: at})},

		// Collect: filtered bots, answered as if recorded.
		{name: "googlebot", method: "POST", url: "/v1/analytics/collect", headers: with(desktop, "User-Agent", googlebot),
			body: `{"site":"blog","url":"https://blog.example.com/","referrer":""}`, status: 202},
		{name: "curl", method: "POST", url: "/v1/analytics/collect", headers: with(desktop, "User-Agent", "curl/8.5.0"),
			body: `{"site":"blog","url":"https://blog.example.com/","referrer":""}`, status: 202},
		{name: "headless chrome", method: "POST", url: "/v1/analytics/collect",
			headers: with(desktop, "User-Agent", strings.Replace(chromeUA, "Chrome/", "HeadlessChrome/", 1)),
			body:    `{"site":"blog","url":"https://blog.example.com/","referrer":""}`, status: 202},
		{name: "no user agent", method: "POST", url: "/v1/analytics/collect", headers: with(desktop, "User-Agent", ""),
			body: `{"site":"blog","url":"https://blog.example.com/","referrer":""}`, status: 202},
		{name: "prefetch", method: "POST", url: "/v1/analytics/collect", headers: with(desktop, "Sec-Purpose", "prefetch;prerender"),
			body: `{"site":"blog","url":"https://blog.example.com/","referrer":""}`, status: 202},
		{name: "purpose prefetch", method: "POST", url: "/v1/analytics/collect", headers: with(desktop, "Purpose", "prefetch"),
			body: `{"site":"blog","url":"https://blog.example.com/","referrer":""}`, status: 202},

		// Collect: refused.
		{name: "unknown site", method: "POST", url: "/v1/analytics/collect", headers: desktop,
			body: `{"site":"nope","url":"https://blog.example.com/","referrer":""}`, status: 404, has: []string{`no site \"nope\"`, "Access-Control-Allow-Origin: *"}},
		{name: "bad site id", method: "POST", url: "/v1/analytics/collect", headers: desktop,
			body: `{"site":"../x","url":"https://blog.example.com/","referrer":""}`, status: 400},
		{name: "foreign host", method: "POST", url: "/v1/analytics/collect", headers: desktop,
			body: `{"site":"blog","url":"https://shop.example.org/","referrer":""}`, status: 400, has: []string{`host \"shop.example.org\" is not a domain of site \"blog\"`}},
		{name: "localhost is not allowed by default", method: "POST", url: "/v1/analytics/collect", headers: desktop,
			body: `{"site":"blog","url":"http://localhost:3000/","referrer":""}`, status: 400},
		{name: "relative url", method: "POST", url: "/v1/analytics/collect", headers: desktop,
			body: `{"site":"blog","url":"/posts/1","referrer":""}`, status: 400, has: []string{`not an absolute http(s) URL`}},
		{name: "malformed JSON", method: "POST", url: "/v1/analytics/collect", headers: desktop,
			body: `{"site":"blog",`, status: 400, has: []string{`not valid JSON`}},
		{name: "unknown field", method: "POST", url: "/v1/analytics/collect", headers: desktop,
			body: `{"site":"blog","url":"https://blog.example.com/","ip":"1.2.3.4"}`, status: 400},
		{name: "wrong content type", method: "POST", url: "/v1/analytics/collect", headers: with(desktop, "Content-Type", "application/x-www-form-urlencoded"),
			body: `site=blog`, status: 400, has: []string{`Content-Type`}},
		{name: "too large", method: "POST", url: "/v1/analytics/collect", headers: desktop, body: big, status: 413, has: []string{`"too_large"`}},
		{name: "preflight", method: "OPTIONS", url: "/v1/analytics/collect",
			headers: map[string]string{"Origin": "https://blog.example.com", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"},
			status:  204, has: []string{"Access-Control-Allow-Origin: *", "Access-Control-Allow-Methods: POST, OPTIONS", "Access-Control-Allow-Headers: Content-Type"}},
		{name: "collect by GET is not a route", method: "GET", url: "/v1/analytics/collect", status: 401},

		// Script.
		{name: "script", method: "GET", url: "/v1/analytics/script.js", status: 200,
			has:    []string{"sendBeacon", "keepalive", "data-site", "pushState", "popstate", "Content-Type: application/javascript", "Cache-Control: public, max-age=3600", "Etag: " + snippetETag},
			hasNot: []string{"cookie", "localStorage"}},
		{name: "script revalidated", method: "GET", url: "/v1/analytics/script.js", headers: map[string]string{"If-None-Match": snippetETag}, status: 304},

		// Stats errors (the figures have their own test).
		{name: "stats unknown site", method: "GET", url: "/v1/analytics/nope/stats", admin: true, status: 404},
		{name: "stats without token", method: "GET", url: "/v1/analytics/blog/stats", status: 401},
		{name: "stats unknown param", method: "GET", url: "/v1/analytics/blog/stats?form=2025-01-01", admin: true, status: 400, has: []string{`unknown query parameter \"form\"`}},
		{name: "stats bad day", method: "GET", url: "/v1/analytics/blog/stats?from=2025-1-1", admin: true, status: 400, has: []string{`use YYYY-MM-DD`}},
		{name: "stats from after to", method: "GET", url: "/v1/analytics/blog/stats?from=2025-03-02&to=2025-03-01", admin: true, status: 400, has: []string{`is after`}},
		{name: "stats range too long", method: "GET", url: "/v1/analytics/blog/stats?from=2024-01-01&to=2025-01-01", admin: true, status: 400, has: []string{`spans 367 days`}},
		{name: "stats limit 0", method: "GET", url: "/v1/analytics/blog/stats?limit=0", admin: true, status: 400},
		{name: "stats limit 101", method: "GET", url: "/v1/analytics/blog/stats?limit=101", admin: true, status: 400, has: []string{`1 to 100`}},
		{name: "stats default range", method: "GET", url: "/v1/analytics/blog/stats", admin: true, status: 200,
			has: []string{`"from":"2025-02-09","to":"2025-03-10","views":3,"visitors":3`}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, e) })
	}
}

// The figures, exact: views, daily uniques, tops, zero days.
func TestStats(t *testing.T) {
	e := startDefault(t)
	e.createSite(t, "blog", "blog.example.com")
	e.createSite(t, "shop", "shop.example.org")

	// Day 1: visitor A views / twice and /about, from Google and then
	// within the site; visitor B comes from a newsletter.
	e.clock.Set("2025-03-10T08:00:00Z")
	e.hit(t, "198.51.100.1", chromeUA, "blog", "https://blog.example.com/", "https://www.google.com/search?q=fazt")
	e.hit(t, "198.51.100.1", chromeUA, "blog", "https://blog.example.com/about", "https://blog.example.com/")
	e.clock.Set("2025-03-10T23:59:59Z")
	e.hit(t, "198.51.100.1", chromeUA, "blog", "https://blog.example.com/", "")
	e.hit(t, "198.51.100.2", androidUA, "blog", "https://blog.example.com/?utm_source=Newsletter", "https://news.example.net/issue/4")
	// Another site's view counts only there.
	e.hit(t, "198.51.100.1", chromeUA, "shop", "https://shop.example.org/", "")
	// Day 3 (day 2 has none): A again, a new pseudonym but one visitor.
	e.clock.Set("2025-03-12T00:00:00Z")
	e.hit(t, "198.51.100.1", chromeUA, "blog", "https://blog.example.com/about", "https://www.google.com/")
	e.hit(t, "198.51.100.1", chromeUA, "blog", "https://blog.example.com/about?utm_source=newsletter", "")

	got := e.stats(t, "blog", "?from=2025-03-09&to=2025-03-12&limit=5")
	if got.Seq == 0 {
		t.Errorf("seq is 0")
	}
	got.Seq = 0
	want := Stats{Site: "blog", From: "2025-03-09", To: "2025-03-12", Views: 6, Visitors: 3,
		Days: []Day{
			{"2025-03-09", 0, 0},
			{"2025-03-10", 4, 2},
			{"2025-03-11", 0, 0},
			{"2025-03-12", 2, 1},
		},
		TopPaths:     []PathViews{{"/", 3}, {"/about", 3}},
		TopReferrers: []RefViews{{"www.google.com", 2}, {"news.example.net", 1}},
		TopSources:   []SourceView{{"newsletter", 2}},
	}
	if !reflect.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Errorf("stats\n got %s\nwant %s", g, w)
	}

	// limit cuts the top lists; the default range ends today.
	got = e.stats(t, "blog", "?limit=1")
	if got.From != "2025-02-11" || got.To != "2025-03-12" || len(got.Days) != 30 || got.Views != 6 ||
		!reflect.DeepEqual(got.TopPaths, []PathViews{{"/", 3}}) || !reflect.DeepEqual(got.TopReferrers, []RefViews{{"www.google.com", 2}}) {
		t.Errorf("stats?limit=1: %+v", got)
	}
	// A range without views is all zeros, with every day listed.
	got = e.stats(t, "blog", "?from=2024-03-12&to=2025-03-09")
	if got.Views != 0 || got.Visitors != 0 || len(got.Days) != 363 || len(got.TopPaths) != 0 || got.TopPaths == nil {
		t.Errorf("empty range: views %d, visitors %d, %d days, top paths %v", got.Views, got.Visitors, len(got.Days), got.TopPaths)
	}
	if got = e.stats(t, "shop", "?from=2025-03-10&to=2025-03-10"); got.Views != 1 || got.Visitors != 1 {
		t.Errorf("shop: %+v", got)
	}
}

// A site created a moment ago takes hits at once (read your writes), and
// a restart keeps the day's salt: the same visitor stays one.
func TestSiteAtOnceAndSaltAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir, current, trustClients, Config{})
	e.createSite(t, "blog", "blog.example.com")
	e.hit(t, "198.51.100.1", chromeUA, "blog", "https://blog.example.com/", "")
	first := pageviewOf(t, e.newEvents(t)[0])
	e.close(t)

	e = start(t, dir, current, trustClients, Config{})
	e.hit(t, "198.51.100.1", chromeUA, "blog", "https://blog.example.com/", "")
	if again := pageviewOf(t, e.newEvents(t)[0]); again.Visitor != first.Visitor {
		t.Errorf("visitor %s after a restart, %s before; want the same within a day", again.Visitor, first.Visitor)
	}
	if st := e.stats(t, "blog", "?from=2025-03-10&to=2025-03-10"); st.Views != 2 || st.Visitors != 1 {
		t.Errorf("views %d visitors %d; want 2 and 1", st.Views, st.Visitors)
	}
}

// Config.AllowHosts admits a development host for every site.
func TestAllowHosts(t *testing.T) {
	e := start(t, t.TempDir(), current, nil, Config{AllowHosts: []string{"LocalHost"}})
	e.createSite(t, "blog", "blog.example.com")
	e.hit(t, "", chromeUA, "blog", "http://localhost:3000/draft", "http://localhost:3000/")
	pv := pageviewOf(t, e.newEvents(t)[0])
	if pv.Path != "/draft" || pv.Referrer != "" {
		t.Errorf("page view %+v; want path /draft, direct", pv)
	}
}

// The public routes are rate limited per client address by the kernel.
func TestRateLimit(t *testing.T) {
	e := start(t, t.TempDir(), current, func(k *kernel.Kernel) { k.PublicRate, k.PublicBurst = 0.001, 2 }, Config{})
	e.createSite(t, "blog", "blog.example.com")
	body := `{"site":"blog","url":"https://blog.example.com/","referrer":""}`
	h := collectHeaders("", chromeUA)
	for i, want := range []int{202, 202, 429} {
		status, header, resp := e.do(t, "POST", "/v1/analytics/collect", h, body, false)
		if status != want {
			t.Fatalf("hit %d: %d %s; want %d", i+1, status, resp, want)
		}
		if status == 429 && header.Get("Retry-After") == "" {
			t.Errorf("429 without Retry-After")
		}
	}
	if n := len(e.newEvents(t)); n != 2 {
		t.Errorf("%d events appended; want 2, none for the limited hit", n)
	}
	// Admin routes are not limited.
	if status, _, _ := e.do(t, "GET", "/v1/analytics/sites", nil, "", true); status != 200 {
		t.Errorf("admin route: %d", status)
	}
}
