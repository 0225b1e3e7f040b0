package apps

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/vfs"
)

var helloSite = map[string]string{
	"index.html":      "<h1>hello</h1>",
	"about.html":      "<p>about</p>",
	"css/site.css":    "body { color: red }",
	"docs/index.html": "<p>docs</p>",
}

// A deploy through the API is live at NAME.localhost on the kernel's
// listener, with the API still on the listener's own address.
func TestDeployServesAtNameLocalhost(t *testing.T) {
	e := start(t, t.TempDir(), nil, Config{})
	_, uploaded := e.deploy(t, "hello", helloSite)
	if uploaded != len(helloSite) {
		t.Errorf("first deploy uploaded %d blobs, want %d", uploaded, len(helloSite))
	}
	if got := types(e.newEvents(t)); !slices.Equal(got, []string{TypeNameClaimed, vfs.TypeDeployRecorded, vfs.TypeDeployActivated}) {
		t.Errorf("events %v, want the name claimed, one deploy recorded and activated", got)
	}
	for _, c := range []struct{ host, path, want string }{
		{"hello.localhost", "/", "<h1>hello</h1>"},
		{"hello.localhost", "/about", "<p>about</p>"},
		{"hello.localhost", "/docs/", "<p>docs</p>"},
		{"hello.localhost", "/css/site.css", "body { color: red }"},
		{"HELLO.LocalHost.", "/", "<h1>hello</h1>"},
	} {
		r := e.site(t, c.host, c.path)
		if r.status != 200 || r.body != c.want {
			t.Errorf("%s%s: %d %q, want %q", c.host, c.path, r.status, r.body, c.want)
		}
	}
	if r := e.site(t, "hello.localhost", "/css/site.css"); r.header.Get("Content-Type") != "text/css; charset=utf-8" || r.header.Get("ETag") == "" {
		t.Errorf("css headers: %v", r.header)
	}
	// Another app's name: nothing there.
	wantStatus(t, "other.localhost", e.site(t, "other.localhost", "/"), http.StatusNotFound)
	// The API on the listener's address, and on localhost, as before.
	wantStatus(t, "/healthz", e.do(t, "GET", "", "/healthz", nil, false), 200)
	wantStatus(t, "localhost/healthz", e.do(t, "GET", "localhost:"+e.port, "/healthz", nil, false), 200)
	wantStatus(t, "/v1/apps without token", e.do(t, "GET", "", AppsPath, nil, false), http.StatusUnauthorized)
	// The site's host never reaches the API.
	if r := e.do(t, "GET", "hello.localhost:"+e.port, "/v1/apps", nil, true); r.status != http.StatusNotFound || strings.Contains(r.body, "hello") {
		t.Errorf("hello.localhost/v1/apps: %d %s, want the site's 404", r.status, r.body)
	}

	var list struct{ Apps []App }
	json.Unmarshal([]byte(wantStatus(t, "list", e.api(t, "GET", AppsPath, nil), 200).body), &list)
	if len(list.Apps) != 1 || list.Apps[0].Name != "hello" || list.Apps[0].Live == "" || list.Apps[0].Deploys != 1 || list.Apps[0].URL != "http://hello.localhost:"+e.port+"/" {
		t.Errorf("list: %+v", list.Apps)
	}
}

// A redeploy that changes one file of many uploads one blob, and the
// server answers from the new deploy as soon as the finalise returns.
func TestRedeployUploadsOneBlob(t *testing.T) {
	e := start(t, t.TempDir(), nil, Config{})
	files := map[string]string{}
	for i := range 200 {
		files[fmt.Sprintf("page/%03d.html", i)] = fmt.Sprintf("<p>page %d</p>", i)
	}
	if _, n := e.deploy(t, "big", files); n != 200 {
		t.Fatalf("first deploy uploaded %d, want 200", n)
	}
	files["page/007.html"] = "<p>page 7, changed</p>"
	if _, n := e.deploy(t, "big", files); n != 1 {
		t.Errorf("redeploy after one change uploaded %d blobs, want 1", n)
	}
	if r := e.site(t, "big.localhost", "/page/007.html"); r.body != "<p>page 7, changed</p>" {
		t.Errorf("after the redeploy: %q", r.body)
	}
	if _, n := e.deploy(t, "big", files); n != 0 {
		t.Errorf("the same deploy again uploaded %d blobs, want 0", n)
	}
}

// Rollback makes the previous deploy live, or the one named; delete is
// a tombstone that keeps the history, and a rollback brings it back.
func TestRollbackHistoryDelete(t *testing.T) {
	e := start(t, t.TempDir(), nil, Config{})
	v1, _ := e.deploy(t, "blog", map[string]string{"index.html": "v1"})
	wantStatus(t, "rollback of the first deploy", e.api(t, "POST", RollbackPath("blog"), RollbackRequest{}), http.StatusConflict)
	v2, _ := e.deploy(t, "blog", map[string]string{"index.html": "v2"})
	e.newEvents(t)
	wantStatus(t, "rollback", e.api(t, "POST", RollbackPath("blog"), RollbackRequest{}), 200)
	if r := e.site(t, "blog.localhost", "/"); r.body != "v1" {
		t.Errorf("after rollback: %q, want v1", r.body)
	}
	if got := types(e.newEvents(t)); !slices.Equal(got, []string{vfs.TypeDeployActivated}) {
		t.Errorf("rollback appended %v, want one activation", got)
	}
	wantStatus(t, "rollback --to v2", e.api(t, "POST", RollbackPath("blog"), RollbackRequest{To: v2}), 200)
	if r := e.site(t, "blog.localhost", "/"); r.body != "v2" {
		t.Errorf("after rollback --to v2: %q", r.body)
	}
	var h struct{ Deploys []vfs.Deploy }
	json.Unmarshal([]byte(wantStatus(t, "history", e.api(t, "GET", DeploysPath("blog"), nil), 200).body), &h)
	if len(h.Deploys) != 2 || h.Deploys[0].ID != v2 || !h.Deploys[0].Live || h.Deploys[1].ID != v1 {
		t.Errorf("history: %+v", h.Deploys)
	}

	wantStatus(t, "delete", e.api(t, "DELETE", AppPath("blog"), nil), 200)
	wantStatus(t, "deleted app served", e.site(t, "blog.localhost", "/"), http.StatusNotFound)
	if got := types(e.newEvents(t)); !slices.Equal(got, []string{vfs.TypeDeployActivated, vfs.TypeSiteDeleted}) {
		t.Errorf("events %v, want the activation and one tombstone", got)
	}
	var a App
	json.Unmarshal([]byte(wantStatus(t, "show", e.api(t, "GET", AppPath("blog"), nil), 200).body), &a)
	if !a.Deleted || a.Live != "" || a.Deploys != 2 {
		t.Errorf("deleted app: %+v", a)
	}
	wantStatus(t, "history after delete", e.api(t, "GET", DeploysPath("blog"), nil), 200)
	wantStatus(t, "rollback without --to after delete", e.api(t, "POST", RollbackPath("blog"), RollbackRequest{}), http.StatusConflict)
	wantStatus(t, "rollback --to v1 after delete", e.api(t, "POST", RollbackPath("blog"), RollbackRequest{To: v1}), 200)
	if r := e.site(t, "blog.localhost", "/"); r.body != "v1" {
		t.Errorf("brought back: %q, want v1", r.body)
	}
}

// An alias serves the app at ALIAS.localhost; names are claimed once.
func TestAliases(t *testing.T) {
	e := start(t, t.TempDir(), nil, Config{})
	e.deploy(t, "blog", map[string]string{"index.html": "blog"})
	e.deploy(t, "shop", map[string]string{"index.html": "shop"})
	e.newEvents(t)
	wantStatus(t, "alias add", e.api(t, "POST", AliasesPath("blog"), AliasRequest{Alias: "www"}), http.StatusCreated)
	if got := types(e.newEvents(t)); !slices.Equal(got, []string{TypeNameClaimed, TypeAliasAdded}) {
		t.Errorf("events %v", got)
	}
	if r := e.site(t, "www.localhost", "/"); r.body != "blog" {
		t.Errorf("www.localhost: %d %q, want blog", r.status, r.body)
	}
	wantStatus(t, "the same alias again", e.api(t, "POST", AliasesPath("blog"), AliasRequest{Alias: "www"}), 200)
	wantStatus(t, "alias taken by another app", e.api(t, "POST", AliasesPath("shop"), AliasRequest{Alias: "www"}), http.StatusConflict)
	wantStatus(t, "alias that is an app's name", e.api(t, "POST", AliasesPath("blog"), AliasRequest{Alias: "shop"}), http.StatusConflict)
	wantStatus(t, "alias of itself", e.api(t, "POST", AliasesPath("blog"), AliasRequest{Alias: "blog"}), http.StatusBadRequest)
	wantStatus(t, "bad alias", e.api(t, "POST", AliasesPath("blog"), AliasRequest{Alias: "a.b"}), http.StatusBadRequest)
	wantStatus(t, "alias of an unknown app", e.api(t, "POST", AliasesPath("nope"), AliasRequest{Alias: "x"}), http.StatusNotFound)
	// Deploying to an alias's name is refused: it would shadow it.
	m := manifestOf(map[string]string{"index.html": "blog"})
	wantStatus(t, "deploy to an alias", e.api(t, "POST", DeploysPath("www"), m), http.StatusConflict)
	wantStatus(t, "manifest for an alias", e.api(t, "POST", ManifestPath("www"), m), http.StatusConflict)
	if got := e.newEvents(t); len(got) != 0 {
		t.Errorf("refusals appended %v", types(got))
	}
	var a App
	json.Unmarshal([]byte(e.api(t, "GET", AppPath("blog"), nil).body), &a)
	if !slices.Equal(a.Aliases, []string{"www"}) {
		t.Errorf("aliases %v", a.Aliases)
	}
	wantStatus(t, "alias remove of another app", e.api(t, "DELETE", AliasesPath("shop")+"/www", nil), http.StatusNotFound)
	wantStatus(t, "alias remove", e.api(t, "DELETE", AliasesPath("blog")+"/www", nil), 200)
	wantStatus(t, "www.localhost after remove", e.site(t, "www.localhost", "/"), http.StatusNotFound)
	wantStatus(t, "alias remove again", e.api(t, "DELETE", AliasesPath("blog")+"/www", nil), http.StatusNotFound)
	wantStatus(t, "alias now free for shop", e.api(t, "POST", AliasesPath("shop"), AliasRequest{Alias: "www"}), http.StatusCreated)
	if r := e.site(t, "www.localhost", "/"); r.body != "shop" {
		t.Errorf("www.localhost: %q, want shop", r.body)
	}
}

// A custom domain is recorded, validated, and served by Host on the
// kernel's listener; once removed the host reaches the API again.
func TestDomains(t *testing.T) {
	e := start(t, t.TempDir(), nil, Config{})
	e.deploy(t, "blog", map[string]string{"index.html": "blog"})
	e.deploy(t, "shop", map[string]string{"index.html": "shop"})
	e.newEvents(t)
	wantStatus(t, "domain add", e.api(t, "POST", DomainsPath("blog"), DomainRequest{Domain: "WWW.Example.COM."}), http.StatusCreated)
	evs := e.newEvents(t)
	if len(evs) != 2 || evs[0].Type != TypeNameClaimed || evs[0].Stream != NameStream(kindDomain, "www.example.com") ||
		evs[1].Type != TypeDomainAdded || !strings.Contains(string(evs[1].Data), `"domain":"www.example.com"`) {
		t.Fatalf("events %v", evs)
	}
	for _, host := range []string{"www.example.com", "www.example.com:" + e.port, "WWW.EXAMPLE.COM."} {
		if r := e.do(t, "GET", host, "/", nil, false); r.body != "blog" {
			t.Errorf("Host %s: %d %q, want blog", host, r.status, r.body)
		}
	}
	wantStatus(t, "domain of another app", e.api(t, "POST", DomainsPath("shop"), DomainRequest{Domain: "www.example.com"}), http.StatusConflict)
	wantStatus(t, "IDN", e.api(t, "POST", DomainsPath("shop"), DomainRequest{Domain: "bücher.example"}), http.StatusCreated)
	if r := e.do(t, "GET", "xn--bcher-kva.example", "/", nil, false); r.body != "shop" {
		t.Errorf("the IDN's punycode host: %d %q, want shop", r.status, r.body)
	}
	for _, bad := range []string{"", "example", "127.0.0.1", "[::1]", "*.example.com", "a..b.com", "-a.example.com", "a_b.example.com",
		"x.localhost", "foo.example.com/path", "a b.com", "host.123", strings.Repeat("a", 64) + ".com"} {
		if r := e.api(t, "POST", DomainsPath("blog"), DomainRequest{Domain: bad}); r.status != http.StatusBadRequest {
			t.Errorf("domain %q: %d %s, want 400", bad, r.status, r.body)
		}
	}
	wantStatus(t, "domain of an unknown app", e.api(t, "POST", DomainsPath("nope"), DomainRequest{Domain: "a.example.com"}), http.StatusNotFound)
	if got := e.newEvents(t); len(got) != 2 { // the IDN's claim and binding
		t.Errorf("refusals appended: %v", types(got))
	}
	wantStatus(t, "domain remove", e.api(t, "DELETE", DomainsPath("blog")+"/www.example.com", nil), 200)
	// An unbound host reaches the API: /healthz answers, "/" is the API's 404.
	wantStatus(t, "unbound host /healthz", e.do(t, "GET", "www.example.com", "/healthz", nil, false), 200)
	if r := e.do(t, "GET", "www.example.com", "/", nil, false); r.body == "blog" {
		t.Errorf("removed domain still serves the app")
	}
}

// The Host header is read strictly: garbage under .localhost is 400 and
// reaches nothing; paths cannot leave the app.
func TestHostsAreStrict(t *testing.T) {
	e := start(t, t.TempDir(), nil, Config{})
	e.deploy(t, "blog", map[string]string{"index.html": "blog"})
	e.deploy(t, "other", map[string]string{"secret.html": "secret"})
	for _, host := range []string{"a.blog.localhost", "_x.localhost", "-x.localhost", "blog..localhost", strings.Repeat("a", 64) + ".localhost"} {
		if r := e.do(t, "GET", host, "/", nil, false); r.status != http.StatusBadRequest {
			t.Errorf("Host %q: %d %q, want 400", host, r.status, r.body)
		}
	}
	for _, path := range []string{"/../other/secret.html", "/%2e%2e/other/secret.html", "/..%2fother%2fsecret.html", "/secret.html"} {
		if r := e.site(t, "blog.localhost", path); r.status/100 != 4 || strings.Contains(r.body, "secret") {
			t.Errorf("blog.localhost%s: %d %q, want 4xx", path, r.status, r.body)
		}
	}
	// IP hosts and bare localhost are the API.
	for _, host := range []string{"127.0.0.1:" + e.port, "localhost", "[::1]:" + e.port, "LOCALHOST."} {
		wantStatus(t, "Host "+host, e.do(t, "GET", host, "/healthz", nil, false), 200)
	}
}

func TestParseHost(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"Blog.LocalHost:8080", "blog.localhost", true},
		{"blog.localhost.", "blog.localhost", true},
		{"[::1]:80", "::1", true},
		{"example.com", "example.com", true},
		{"", "", false},
		{"a:b:c", "a:b:c", false}, // not a host:port, not bracketed
		{"bad host", "", false},
		{"a/b", "", false},
		{"ü.localhost", "", false},
		{"x.localhost:", "x.localhost", true},
		{"x.localhost:x", "", false},
		{"x.localhost:123456", "", false},
	} {
		got, ok := ParseHost(c.in)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("ParseHost(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

// A file larger than the API's other bodies uploads: the blob route has
// its own limit (Config.MaxUploadBytes).
func TestUploadLargerThanAPIBodies(t *testing.T) {
	e := start(t, t.TempDir(), func(k *kernel.Kernel) { k.MaxBodyBytes = 64 << 10 }, Config{})
	big := strings.Repeat("0123456789", 20<<10) // 200 KiB
	e.deploy(t, "media", map[string]string{"video.bin": big})
	if r := e.site(t, "media.localhost", "/video.bin"); r.status != 200 || r.body != big {
		t.Errorf("video.bin: %d, %d bytes, want the %d uploaded", r.status, len(r.body), len(big))
	}
}

// A name is claimed once: racing an alias and a first deploy of the same
// name, exactly one wins, and the name serves what won.
func TestNameClaimedOnce(t *testing.T) {
	e := start(t, t.TempDir(), nil, Config{})
	e.deploy(t, "blog", map[string]string{"index.html": "blog"})
	files := map[string]string{"index.html": "new app"}
	m := manifestOf(files)
	e.upload(t, "x", files, e.missing(t, "x", m))
	for i := range 5 {
		name := fmt.Sprintf("race%d", i)
		results := make(chan int, 2)
		go func() { results <- e.api(t, "POST", AliasesPath("blog"), AliasRequest{Alias: name}).status }()
		go func() { results <- e.api(t, "POST", DeploysPath(name), m).status }()
		a, b := <-results, <-results
		won := 0
		for _, s := range []int{a, b} {
			if s == http.StatusCreated {
				won++
			} else if s != http.StatusConflict {
				t.Errorf("%s: status %d, want 201 or 409", name, s)
			}
		}
		if won != 1 {
			t.Errorf("%s: %d claims won (%d, %d), want exactly 1", name, won, a, b)
		}
		if r := e.site(t, name+".localhost", "/"); r.status != 200 || (r.body != "blog" && r.body != "new app") {
			t.Errorf("%s.localhost: %d %q", name, r.status, r.body)
		}
	}
}
