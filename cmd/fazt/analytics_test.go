package main

import (
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/verticals/analytics"
)

// topJSON runs `fazt analytics top SITE --json` with args and decodes it.
func topJSON(t *testing.T, s *testServer, site string, args ...string) analytics.Stats {
	t.Helper()
	out, _, err := fazt(t, nil, "", append([]string{"analytics", "top", site, "--json", "--data", s.dir}, args...)...)
	if err != nil {
		t.Fatalf("analytics top %s: %v", site, err)
	}
	var st analytics.Stats
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("analytics top %s --json: %v\n%s", site, err, out)
	}
	return st
}

func TestDemo(t *testing.T) {
	s := startServer(t, t.TempDir())
	d := []string{"--data", s.dir}
	today := time.Now().UTC()
	// A range around the demo's days, so that a test running over
	// midnight still sees every view.
	rng := []string{"--from", today.AddDate(0, 0, -3).Format(time.DateOnly), "--to", today.AddDate(0, 0, 1).Format(time.DateOnly)}

	out, errOut, err := fazt(t, nil, "", append([]string{"demo", "--views", "2000", "--days", "3"}, d...)...)
	if err != nil {
		t.Fatalf("demo: %v\nstderr:\n%s", err, errOut)
	}
	for _, want := range []string{"Loaded 2,000 page views over 3 days into 3 sites", "blog.example.com", "1,000 views",
		"fazt analytics top blog --data " + s.dir + "\n", "fazt query --projection analytics ", "/v1/analytics/blog/stats?from=",
		`<script defer data-site="blog" src="` + s.addr + `/v1/analytics/script.js"></script>`} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	// Not a terminal: progress comes as whole lines.
	if !strings.Contains(errOut, "importing page views: 2,000/2,000 (100%)") || strings.Contains(errOut, "\r") {
		t.Errorf("demo progress:\n%q", errOut)
	}

	// The commands it suggests work as printed.
	_, next, _ := strings.Cut(out, "\nNext:\n")
	next, _, _ = strings.Cut(next, "\n\n")
	if n := strings.Count(next, "\n") + 1; n != 5 {
		t.Errorf("%d next commands, want 5:\n%s", n, next)
	}
	for _, line := range strings.Split(next, "\n") {
		words := shellWords(t, strings.TrimSpace(line))
		switch words[0] {
		case "fazt":
			if _, _, err := fazt(t, nil, "", words[1:]...); err != nil {
				t.Errorf("%s: %v", line, err)
			}
		case "curl":
			// curl -s -H "Authorization: Bearer $(cat DIR/token)" 'URL'
			if len(words) != 5 || words[3] != "Authorization: Bearer $(cat "+s.dir+"/token)" || !strings.HasPrefix(words[4], s.addr+"/v1/analytics/blog/stats?") {
				t.Errorf("curl line: %q", words)
				continue
			}
			path := strings.TrimPrefix(words[4], s.addr)
			if status, body, _ := s.do(t, "GET", path, nil, nil); status != 200 || !strings.Contains(body, `"views":1000,`) {
				t.Errorf("%s: %d %.200s", line, status, body)
			}
		default:
			t.Errorf("unexpected next command %q", line)
		}
	}

	want := map[string]int64{"blog": 1000, "shop": 600, "docs": 400} // weights 5:3:2
	var total int64
	for site, n := range want {
		st := topJSON(t, s, site, rng...)
		total += st.Views
		if st.Views != n {
			t.Errorf("%s: %d views, want %d", site, st.Views, n)
		}
		var days, inDays int64
		for _, d := range st.Days {
			inDays += d.Views
			if d.Views > 0 {
				days++
			}
		}
		// Today may have none yet just after midnight; a test running
		// over midnight sees a fourth day.
		if inDays != st.Views || days < 2 || days > 4 {
			t.Errorf("%s: %d views on %d days, want %d on 2 to 4", site, inDays, days, st.Views)
		}
		if st.Visitors <= 0 || st.Visitors >= st.Views {
			t.Errorf("%s: %d visitors for %d views: want returning visitors", site, st.Visitors, st.Views)
		}
		if len(st.TopPaths) == 0 || len(st.TopReferrers) == 0 || len(st.TopSources) == 0 {
			t.Errorf("%s: empty top lists: %+v", site, st)
		}
	}
	if total != 2000 {
		t.Fatalf("%d views in the stats, want 2000", total)
	}

	// The readable report.
	out, _, err = fazt(t, nil, "", append(append([]string{"analytics", "top", "blog", "--limit", "3"}, d...), rng...)...)
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{`(?m)^blog, \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d \(as of seq \d+\)$`, `(?m)^  1,000 views, [\d,]+ visitors$`,
		`(?m)^views per day  [ ▁▂▃▄▅▆▇█]{5}$`, `(?m)^day +views +visitors$`, `(?m)^top paths +views +share$`,
		`(?m)^/ +[\d,]+ +\d+\.\d%$`, `(?m)^top referrers +views +share$`, `(?m)^top sources \(utm_source\) +views +share$`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("report does not match %s:\n%s", re, out)
		}
	}
	if n := strings.Count(out, "%\n"); n > 9 {
		t.Errorf("--limit 3 printed %d top rows:\n%s", n, out)
	}

	// Again on the same sites is refused before anything is written.
	_, _, err = fazt(t, nil, "", append([]string{"demo", "--views", "100", "--days", "1"}, d...)...)
	if err == nil || !strings.Contains(err.Error(), "sites blog, shop, docs exist already") || !strings.Contains(err.Error(), "--again") {
		t.Fatalf("second demo: %v", err)
	}
	var u *usageError
	if errors.As(err, &u) {
		t.Fatalf("second demo: a usage error: %v", err)
	}
	if st := topJSON(t, s, "blog", rng...); st.Views != 1000 {
		t.Fatalf("blog has %d views after a refused demo", st.Views)
	}
	// With --again the views add up; a new site is created beside.
	out, errOut, err = fazt(t, nil, "", append([]string{"demo", "--views", "700", "--days", "1", "--sites", "blog,news", "--again"}, d...)...)
	if err != nil {
		t.Fatalf("demo --again: %v\n%s", err, errOut)
	}
	if !strings.Contains(errOut, "site blog exists already: adding the views to it (--again)") || !strings.Contains(out, "(existed already: views added)") {
		t.Errorf("demo --again does not say it adds to blog:\n%s\n%s", out, errOut)
	}
	if st := topJSON(t, s, "blog", rng...); st.Views != 1500 { // 700 × 5/7
		t.Errorf("blog: %d views after --again, want 1500", st.Views)
	}
	if st := topJSON(t, s, "news", rng...); st.Views != 200 {
		t.Errorf("news: %d views, want 200", st.Views)
	}
	out, _, err = fazt(t, nil, "", append([]string{"analytics", "sites"}, d...)...)
	if err != nil || !regexp.MustCompile(`(?m)^news +Demo news +news\.example\.com +\d{4}-`).MatchString(out) || strings.Count(out, "\n") != 5 {
		t.Errorf("sites: %v\n%s", err, out)
	}
}

func TestDemoSample(t *testing.T) {
	now := time.Date(2026, 3, 18, 15, 30, 0, 0, time.UTC) // a Wednesday afternoon
	specs := demoSpecs([]string{"blog", "shop", "docs"})
	a := generateViews(specs, 30000, 28, 7, now)
	if b := generateViews(specs, 30000, 28, 7, now); !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed gave another sample")
	}
	if c := generateViews(specs, 30000, 28, 8, now); reflect.DeepEqual(a, c) {
		t.Fatal("another seed gave the same sample")
	}
	if len(a) != 30000 {
		t.Fatalf("%d views, want 30000", len(a))
	}
	// At the first instant of a day there is no time for views but that.
	midnight := time.Date(2026, 3, 18, 0, 0, 0, 0, time.UTC)
	if v := generateViews(specs, 10, 1, 7, midnight); len(v) != 10 || !v[9].at.Equal(midnight) {
		t.Fatalf("views at midnight: %+v", v)
	}

	first := time.Date(2026, 2, 19, 0, 0, 0, 0, time.UTC) // 28 days ending on now's
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	type key struct{ site, day string }
	views, visitors := map[key]int{}, map[key]map[string]bool{}
	uaOf := map[string]string{}
	byDay := map[string]map[time.Weekday]int{}
	byHour := map[string][24]int{}
	refs := map[string]map[string]int{}
	utm := map[string]int{}
	for i, v := range a {
		if i > 0 && v.at.Before(a[i-1].at) {
			t.Fatalf("view %d is out of time order", i)
		}
		if v.at.Before(first) || v.at.After(now) {
			t.Fatalf("view at %s is outside %s to %s", v.At, first, now)
		}
		if at, err := time.Parse(time.RFC3339, v.At); err != nil || !at.Equal(v.at.Truncate(time.Second)) || !strings.HasSuffix(v.At, "Z") {
			t.Fatalf("at %q: %v", v.At, err)
		}
		if !hex32.MatchString(v.Visitor) || !strings.HasPrefix(v.Path, "/") {
			t.Fatalf("view %+v", v)
		}
		// A visitor keeps their device through the day.
		if ua, ok := uaOf[v.Visitor]; ok && ua != v.UAClass {
			t.Fatalf("visitor %s is %s and %s", v.Visitor, ua, v.UAClass)
		}
		uaOf[v.Visitor] = v.UAClass
		k := key{v.Site, v.At[:10]}
		views[k]++
		if visitors[k] == nil {
			visitors[k] = map[string]bool{}
		}
		visitors[k][v.Visitor] = true
		if byDay[v.Site] == nil {
			byDay[v.Site], refs[v.Site] = map[time.Weekday]int{}, map[string]int{}
		}
		byDay[v.Site][v.at.Weekday()]++
		h := byHour[v.Site]
		h[v.at.Hour()]++
		byHour[v.Site] = h
		refs[v.Site][v.Referrer]++
		if v.UTMSource != "" {
			utm[v.Site]++
		}
	}
	for k, n := range views {
		if u := len(visitors[k]); u >= n {
			t.Errorf("%v: %d visitors for %d views: want returning visitors", k, u, n)
		}
	}
	// Days have their weekday's share: the first day (a Thursday) as the
	// next Thursday, give or take noise; the blog has one big day.
	for _, site := range []string{"shop", "docs"} {
		if d0, d7 := views[key{site, "2026-02-19"}], views[key{site, "2026-02-26"}]; 10*d0 > 14*d7 || 10*d7 > 14*d0 {
			t.Errorf("%s: %d views on the first Thursday, %d on the next", site, d0, d7)
		}
	}
	var blogDays []int
	for k, n := range views {
		if k.site == "blog" {
			blogDays = append(blogDays, n)
		}
	}
	slices.Sort(blogDays)
	if top, median := blogDays[len(blogDays)-1], blogDays[len(blogDays)/2]; top < 2*median {
		t.Errorf("blog: the busiest day has %d views, the median %d: want a front-page day", top, median)
	}
	// Documentation is read on weekdays; four of each weekday here.
	docs := byDay["docs"]
	if wk, we := docs[time.Tuesday]+docs[time.Wednesday], docs[time.Saturday]+docs[time.Sunday]; wk < 3*we/2 {
		t.Errorf("docs: %d views on Tuesdays and Wednesdays, %d on weekends: want a weekly rhythm", wk, we)
	}
	for site, h := range byHour {
		if h[3] >= h[13] {
			t.Errorf("%s: %d views at 03h, %d at 13h: want a daily rhythm", site, h[3], h[13])
		}
		top, most := "", 0
		for r, n := range refs[site] {
			if n > most {
				top, most = r, n
			}
		}
		if top != "" {
			t.Errorf("%s: most views come from %q, want direct ones", site, top)
		}
		if n := views[key{site, "2026-03-18"}]; n == 0 {
			t.Errorf("%s: no views today", site)
		}
		if f := float64(utm[site]) / float64(len(a)); f <= 0 || f > 0.2 {
			t.Errorf("%s: %.0f%% of the views have a utm_source", site, 100*f)
		}
	}
}

func TestAnalyticsCLI(t *testing.T) {
	s := startServer(t, t.TempDir())
	d := []string{"--data", s.dir}

	out, _, err := fazt(t, nil, "", append([]string{"analytics", "sites"}, d...)...)
	if err != nil || !strings.HasPrefix(out, "no sites yet") {
		t.Fatalf("sites on a new server: %q %v", out, err)
	}
	out, _, err = fazt(t, nil, "", append([]string{"analytics", "add-site", "blog", "--domain", "blog.example.com", "--domain", "www.blog.example.com", "--name", "My blog"}, d...)...)
	if err != nil || !regexp.MustCompile(`^created site blog \(My blog; blog\.example\.com, www\.blog\.example\.com\) at seq \d+\n`).MatchString(out) ||
		!strings.Contains(out, `<script defer data-site="blog" src="`+s.addr+`/v1/analytics/script.js"></script>`) {
		t.Fatalf("add-site: %q %v", out, err)
	}
	out, _, err = fazt(t, nil, "", append([]string{"analytics", "add-site", "docs", "--domain", "docs.example.com", "--json"}, d...)...)
	var created analytics.CreateSiteResponse
	if err != nil || json.Unmarshal([]byte(out), &created) != nil || created.Site.Name != "docs" || created.Seq == 0 {
		t.Fatalf("add-site --json: %q %v", out, err)
	}

	// Server errors carry the server's message.
	_, _, err = fazt(t, nil, "", append([]string{"analytics", "add-site", "blog", "--domain", "blog.example.com"}, d...)...)
	var se *serverError
	if !errors.As(err, &se) || se.Status != 409 || !strings.Contains(err.Error(), `site "blog" already exists`) {
		t.Fatalf("add-site twice: %v", err)
	}
	_, _, err = fazt(t, nil, "", append([]string{"analytics", "add-site", "bad", "--domain", "https://bad.example.com/"}, d...)...)
	if !errors.As(err, &se) || se.Code != "invalid" || !strings.Contains(err.Error(), "domain") {
		t.Fatalf("add-site with a URL for a domain: %v", err)
	}
	_, _, err = fazt(t, nil, "", append([]string{"analytics", "top", "nosuch"}, d...)...)
	if !errors.As(err, &se) || se.Code != "not_found" || !strings.Contains(err.Error(), `no site "nosuch"`) {
		t.Fatalf("top of an unknown site: %v", err)
	}
	_, _, err = fazt(t, nil, "", append([]string{"analytics", "top", "blog", "--limit", "1000"}, d...)...)
	if !errors.As(err, &se) || se.Code != "invalid" || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("top --limit 1000: %v", err)
	}

	out, _, err = fazt(t, nil, "", append([]string{"analytics", "sites"}, d...)...)
	if err != nil || !regexp.MustCompile(`^id +name +domains +created\nblog +My blog +blog\.example\.com,www\.blog\.example\.com +\d{4}-\d\d-\d\dT\S+Z\ndocs +docs +docs\.example\.com +\S+\n$`).MatchString(out) {
		t.Fatalf("sites: %q %v", out, err)
	}
	out, _, err = fazt(t, nil, "", append([]string{"analytics", "sites", "--json"}, d...)...)
	var list analytics.ListSitesResponse
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list.Sites) != 2 || list.Sites[0].ID != "blog" {
		t.Fatalf("sites --json: %q %v", out, err)
	}

	// A site without views yet: zeros, and every day of the range.
	st := topJSON(t, s, "blog", "--from", "2026-01-01", "--to", "2026-01-07")
	if st.Views != 0 || len(st.Days) != 7 || st.From != "2026-01-01" || st.To != "2026-01-07" {
		t.Fatalf("empty stats: %+v", st)
	}
	out, _, err = fazt(t, nil, "", append([]string{"analytics", "top", "blog", "--from", "2026-01-01", "--to", "2026-01-07"}, d...)...)
	if err != nil || !strings.Contains(out, "\n  0 views, 0 visitors\n\nno views in this range yet") || strings.Contains(out, "views per day") || !strings.Contains(out, "top paths: none\n") {
		t.Fatalf("empty report: %q %v", out, err)
	}
	// Without a server.
	_, _, err = fazt(t, nil, "", "analytics", "top", "blog", "--data", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "no running server found") {
		t.Fatalf("top without a server: %v", err)
	}
}

func TestAnalyticsUsageErrors(t *testing.T) {
	dir := t.TempDir() // no server: usage errors come first
	for _, args := range [][]string{
		{"analytics", "bogus"},
		{"analytics", "top"},
		{"analytics", "top", "a", "b"},
		{"analytics", "top", "blog", "--from", "2026-13-01"},
		{"analytics", "top", "blog", "--to", "yesterday"},
		{"analytics", "top", "blog", "--from", "2026-02-02", "--to", "2026-02-01"},
		{"analytics", "top", "blog", "--limit", "0"},
		{"analytics", "top", "blog", "--limit", "x"},
		{"analytics", "top", "blog", "--nope"},
		{"analytics", "sites", "extra"},
		{"analytics", "add-site", "blog"},
		{"analytics", "add-site", "--domain", "a.example.com"},
		{"demo", "extra"},
		{"demo", "--views", "0"},
		{"demo", "--views", "lots"},
		{"demo", "--days", "0"},
		{"demo", "--days", "400"},
		{"demo", "--sites", "Blog"},
		{"demo", "--sites", "blog,blog"},
		{"demo", "--sites", ""},
		{"demo", "--seed", "-1"},
		{"demo", "--until", "yesterday"},
		{"demo", "--until", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)},
		{"demo", "--bogus"},
	} {
		_, _, err := fazt(t, nil, "", append(args, "--data", dir)...)
		var u *usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), "--help' for usage") {
			t.Errorf("%q: %v; want a usage error", args, err)
		}
	}
}

func TestReportFormatting(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 7: "7", 999: "999", 1000: "1,000", 123456: "123,456", 1234567: "1,234,567", -4500: "-4,500"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
	if got := sparkline([]int64{0, 1, 4, 8}); got != " ▂▅█" {
		t.Errorf("sparkline = %q", got)
	}
	if got := shellQuote("fazt-data/token"); got != "fazt-data/token" {
		t.Errorf("shellQuote = %q", got)
	}
	if got := shellQuote("my data/it's"); got != `'my data/it'\''s'` {
		t.Errorf("shellQuote = %q", got)
	}
}

// shellWords splits a command line as a POSIX shell would, for the
// quoting the demo prints: '…' and "…" (with $ left alone).
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; c {
		case ' ':
			if inWord {
				words, inWord = append(words, w.String()), false
				w.Reset()
			}
		case '\'', '"':
			j := strings.IndexByte(line[i+1:], c)
			if j < 0 {
				t.Fatalf("unbalanced quote in %q", line)
			}
			w.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}
