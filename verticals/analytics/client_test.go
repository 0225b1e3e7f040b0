package analytics

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
)

// A client that knows the vertical only by its exported names, as fazt's
// CLI does, reaches every route, and the page views it appends itself
// are accepted and counted.
func TestClientNames(t *testing.T) {
	e := startDefault(t)
	decode := func(what string, status, want int, body string, v any) {
		t.Helper()
		if status != want {
			t.Fatalf("%s: %d %s; want %d", what, status, body, want)
		}
		if err := json.Unmarshal([]byte(body), v); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	req, _ := json.Marshal(CreateSiteRequest{ID: "blog", Name: "My blog", Domains: []string{"Blog.Example.com."}})
	status, _, body := e.do(t, "POST", SitesPath, nil, string(req), true)
	var created CreateSiteResponse
	decode("create", status, http.StatusCreated, body, &created)
	if created.Site.ID != "blog" || !slices.Equal(created.Site.Domains, []string{"blog.example.com"}) || created.Seq == 0 {
		t.Fatalf("create: %+v", created)
	}
	evs := e.newEvents(t)
	if len(evs) != 1 || evs[0].Stream != SiteStream("blog") || evs[0].Type != TypeSiteCreated || evs[0].Schema != SiteCreatedVersion {
		t.Fatalf("the creation: %+v; want %s on %s, version %d", evs, TypeSiteCreated, SiteStream("blog"), SiteCreatedVersion)
	}

	pv, _ := json.Marshal(PageviewRecorded{Site: "blog", Path: "/", UAClass: Mobile, Visitor: strings.Repeat("ab", 16),
		At: e.clock.Now().UTC().Format(time.RFC3339), UTMSource: "newsletter"})
	app, _ := json.Marshal(kernel.AppendRequest{Events: []kernel.AppendEvent{
		{Stream: SiteStream("blog"), Type: TypePageviewRecorded, Schema: PageviewRecordedVersion, Data: pv}}})
	var res eventlog.Result
	status, _, body = e.do(t, "POST", "/v1/events", nil, string(app), true)
	decode("append a page view", status, http.StatusOK, body, &res)

	var st Stats
	status, _, body = e.do(t, "GET", StatsPath("blog"), nil, "", true)
	decode("stats", status, http.StatusOK, body, &st)
	if st.Views != 1 || len(st.TopSources) != 1 || st.TopSources[0].Source != "newsletter" || st.Seq < res.LastSeq {
		t.Fatalf("stats after the appended view: %+v", st)
	}
	var list ListSitesResponse
	status, _, body = e.do(t, "GET", SitesPath, nil, "", true)
	decode("list", status, http.StatusOK, body, &list)
	if len(list.Sites) != 1 || list.Sites[0].ID != "blog" {
		t.Fatalf("list: %+v", list)
	}

	// The snippet tag's src serves the script, without the token.
	tag := SnippetTag(e.base, "blog")
	m := regexp.MustCompile(`^<script defer data-site="blog" src="([^"]+)"></script>$`).FindStringSubmatch(tag)
	if m == nil || !strings.HasPrefix(m[1], e.base) {
		t.Fatalf("SnippetTag: %s", tag)
	}
	if status, h, body := e.do(t, "GET", strings.TrimPrefix(m[1], e.base), nil, "", false); status != http.StatusOK || !strings.Contains(h.Get("Content-Type"), "javascript") {
		t.Fatalf("GET %s: %d %s", m[1], status, body)
	}
	hit, _ := json.Marshal(hit{Site: "blog", URL: "https://blog.example.com/about"})
	h := map[string]string{"Content-Type": "text/plain", "User-Agent": chromeUA, "X-Forwarded-For": "192.0.2.1"}
	if status, _, body := e.do(t, "POST", CollectPath, h, string(hit), false); status != http.StatusAccepted {
		t.Fatalf("POST %s: %d %s", CollectPath, status, body)
	}
}

// The versions a client appends with are the newest this release
// registers, the ones the collector records.
func TestAppendVersionsAreNewest(t *testing.T) {
	newest := map[string]int{}
	for _, s := range eventSchemas {
		if s.release <= current {
			newest[s.typ] = max(newest[s.typ], s.version)
		}
	}
	if newest[TypeSiteCreated] != SiteCreatedVersion || newest[TypePageviewRecorded] != PageviewRecordedVersion {
		t.Fatalf("newest versions %v; exported SiteCreatedVersion %d, PageviewRecordedVersion %d", newest, SiteCreatedVersion, PageviewRecordedVersion)
	}
}
