package apps

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Apps, aliases and domains survive a restart: the host routes come
// back from the apps projection.
func TestRoutesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir, nil, Config{})
	e.deploy(t, "blog", map[string]string{"index.html": "blog"})
	wantStatus(t, "alias", e.api(t, "POST", AliasesPath("blog"), AliasRequest{Alias: "www"}), http.StatusCreated)
	wantStatus(t, "domain", e.api(t, "POST", DomainsPath("blog"), DomainRequest{Domain: "blog.example.com"}), http.StatusCreated)
	before := e.api(t, "GET", AppsPath, nil).body
	e.close(t)

	e = start(t, dir, nil, Config{})
	for _, host := range []string{"blog.localhost:" + e.port, "www.localhost:" + e.port, "blog.example.com"} {
		if r := e.do(t, "GET", host, "/", nil, false); r.status != 200 || r.body != "blog" {
			t.Errorf("after restart, Host %s: %d %q", host, r.status, r.body)
		}
	}
	after := e.api(t, "GET", AppsPath, nil).body
	// The URLs carry the new port.
	if strings.ReplaceAll(after, e.port, "PORT") != strings.ReplaceAll(before, portOf(t, before), "PORT") {
		t.Errorf("apps after restart:\n%s\nbefore:\n%s", after, before)
	}
}

func portOf(t *testing.T, list string) string {
	var l struct{ Apps []App }
	if err := json.Unmarshal([]byte(list), &l); err != nil || len(l.Apps) == 0 {
		t.Fatalf("list %s: %v", list, err)
	}
	u := strings.TrimSuffix(l.Apps[0].URL, "/")
	return u[strings.LastIndexByte(u, ':')+1:]
}

// The apps projection rebuilt from the log holds the same rows.
func TestProjectionRebuilds(t *testing.T) {
	e := start(t, t.TempDir(), nil, Config{})
	e.deploy(t, "blog", map[string]string{"index.html": "v1"})
	e.deploy(t, "blog", map[string]string{"index.html": "v2"})
	e.deploy(t, "shop", map[string]string{"index.html": "shop"})
	e.api(t, "POST", AliasesPath("blog"), AliasRequest{Alias: "www"})
	e.api(t, "POST", AliasesPath("blog"), AliasRequest{Alias: "old"})
	e.api(t, "DELETE", AliasesPath("blog")+"/old", nil)
	e.api(t, "POST", DomainsPath("shop"), DomainRequest{Domain: "shop.example.com"})
	e.api(t, "DELETE", AppPath("shop"), nil)
	var before, after struct{ Apps []App }
	json.Unmarshal([]byte(e.api(t, "GET", AppsPath, nil).body), &before)
	wantStatus(t, "rebuild", e.api(t, "POST", "/v1/projections/"+projectionName+"/rebuild", nil), http.StatusAccepted)
	deadline := time.Now().Add(time.Minute)
	for {
		var st struct {
			State string `json:"state"`
		}
		json.Unmarshal([]byte(e.api(t, "GET", "/v1/projections/"+projectionName, nil).body), &st)
		if st.State != "rebuilding" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("rebuild did not finish in a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
	json.Unmarshal([]byte(e.api(t, "GET", AppsPath, nil).body), &after)
	if !reflect.DeepEqual(before, after) || len(after.Apps) != 2 {
		t.Errorf("after rebuild:\n%+v\nbefore:\n%+v", after, before)
	}
	if !after.Apps[1].Deleted || !reflect.DeepEqual(after.Apps[0].Aliases, []string{"www"}) || !reflect.DeepEqual(after.Apps[1].Domains, []string{"shop.example.com"}) || after.Apps[0].Deploys != 2 {
		t.Errorf("apps: %+v", after.Apps)
	}
}

// A Host header that is not ASCII, sent raw, never reaches an app or the
// API's routes.
func TestRawHostHeaders(t *testing.T) {
	e := start(t, t.TempDir(), nil, Config{})
	e.deploy(t, "blog", map[string]string{"index.html": "blog"})
	for _, host := range []string{"\xc3\xbc.localhost", "blog.localhost\x00", "a.b.localhost", "blog.localhost:x"} {
		c, err := net.Dial("tcp", e.k.ListenAddr())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("Host %q: %v", host, err)
		}
		b, _ := io.ReadAll(resp.Body)
		c.Close()
		if resp.StatusCode != http.StatusBadRequest || string(b) == "blog" {
			t.Errorf("Host %q: %d %q, want 400", host, resp.StatusCode, b)
		}
	}
}
