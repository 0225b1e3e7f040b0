package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/kernel/kerneltest"
	"github.com/fazt-sh/fazt/kernel/vfs"
	"github.com/fazt-sh/fazt/verticals/apps"
)

// writeTree writes files (path → content) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// getHost GETs path from the server with a Host header.
func getHost(t *testing.T, s *testServer, host, path string) (int, string) {
	t.Helper()
	status, body, _ := kerneltest.Client{Base: s.addr}.Do(t, "GET", path, nil, map[string]string{"Host": host})
	return status, body
}

func port(s *testServer) string { return s.addr[strings.LastIndexByte(s.addr, ':')+1:] }

// fazt deploy sends a folder, leaving out dotfiles and .faztignore's
// patterns; the site is live at the URL it prints; a redeploy that
// changes one file uploads one.
func TestDeployCLI(t *testing.T) {
	s := startServer(t, t.TempDir())
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"index.html":      "<h1>home</h1>",
		"css/site.css":    "body{}",
		"404.html":        "nothing here",
		".env":            "SECRET=1",
		".git/config":     "[core]",
		"drafts/post.md":  "draft",
		"notes.tmp":       "tmp",
		"keep/.hidden":    "x",
		"keep/shown.txt":  "shown",
		".faztignore":     "# comment\ndrafts/\n*.tmp\n",
		"sub/.faztignore": "ignored: only the top one counts",
	})
	if err := os.Symlink(filepath.Join(dir, "css", "site.css"), filepath.Join(dir, "link.css")); err != nil {
		t.Fatal(err)
	}
	host := "hello.localhost:" + port(s)
	out, errOut, err := fazt(t, nil, "", "deploy", dir, "--app", "hello", "--data", s.dir)
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "deployed hello: 5 files, 4 uploaded") || !strings.HasSuffix(out, "\nhttp://"+host+"/\n") {
		t.Errorf("deploy output:\n%s", out)
	}
	if errOut != "" {
		t.Errorf("stderr without a terminal: %q, want nothing", errOut)
	}
	for path, want := range map[string]string{"/": "<h1>home</h1>", "/css/site.css": "body{}", "/link.css": "body{}", "/keep/shown.txt": "shown"} {
		if status, body := getHost(t, s, host, path); status != 200 || body != want {
			t.Errorf("%s: %d %q, want %q", path, status, body, want)
		}
	}
	for _, path := range []string{"/.env", "/.git/config", "/drafts/post.md", "/notes.tmp", "/keep/.hidden", "/sub/.faztignore"} {
		if status, body := getHost(t, s, host, path); status != 404 || body != "nothing here" {
			t.Errorf("%s: %d %q, want the site's 404.html", path, status, body)
		}
	}
	writeTree(t, dir, map[string]string{"index.html": "<h1>home, again</h1>"})
	out, _, err = fazt(t, nil, "", "deploy", dir, "--app", "hello", "--data", s.dir)
	if err != nil || !strings.Contains(out, "5 files, 1 uploaded") {
		t.Errorf("redeploy: %v\n%s", err, out)
	}
	if _, body := getHost(t, s, host, "/"); body != "<h1>home, again</h1>" {
		t.Errorf("after the redeploy: %q", body)
	}

	// apps list, history, rollback, delete.
	out, _, err = fazt(t, nil, "", "apps", "list", "--data", s.dir)
	if err != nil || !strings.Contains(out, "hello") || !strings.Contains(out, "http://"+host+"/") {
		t.Errorf("apps list: %v\n%s", err, out)
	}
	out, _, err = fazt(t, nil, "", "apps", "history", "hello", "--json", "--data", s.dir)
	var h struct{ Deploys []vfs.Deploy }
	if err != nil || json.Unmarshal([]byte(out), &h) != nil || len(h.Deploys) != 2 || !h.Deploys[0].Live {
		t.Fatalf("apps history --json: %v\n%s", err, out)
	}
	out, _, err = fazt(t, nil, "", "apps", "history", "hello", "--data", s.dir)
	if err != nil || !strings.Contains(out, "* ") || !strings.Contains(out, h.Deploys[1].ID) {
		t.Errorf("apps history: %v\n%s", err, out)
	}
	out, _, err = fazt(t, nil, "", "apps", "rollback", "hello", "--data", s.dir)
	if err != nil || !strings.Contains(out, "hello now serves deploy "+h.Deploys[1].ID) {
		t.Errorf("apps rollback: %v\n%s", err, out)
	}
	if _, body := getHost(t, s, host, "/"); body != "<h1>home</h1>" {
		t.Errorf("after rollback: %q", body)
	}
	if _, _, err = fazt(t, nil, "", "apps", "rollback", "hello", "--to", h.Deploys[0].ID, "--data", s.dir); err != nil {
		t.Errorf("apps rollback --to: %v", err)
	}
	if _, body := getHost(t, s, host, "/"); body != "<h1>home, again</h1>" {
		t.Errorf("after rollback --to: %q", body)
	}

	// Aliases and domains.
	if out, _, err = fazt(t, nil, "", "apps", "alias", "add", "hello", "hi", "--data", s.dir); err != nil || out != "alias hi now serves hello\n" {
		t.Errorf("alias add: %v %q", err, out)
	}
	if _, body := getHost(t, s, "hi.localhost:"+port(s), "/"); body != "<h1>home, again</h1>" {
		t.Errorf("hi.localhost: %q", body)
	}
	if out, _, err = fazt(t, nil, "", "apps", "domain", "add", "hello", "WWW.Example.org", "--data", s.dir); err != nil || out != "domain www.example.org now serves hello\n" {
		t.Errorf("domain add: %v %q", err, out)
	}
	if _, body := getHost(t, s, "www.example.org", "/"); body != "<h1>home, again</h1>" {
		t.Errorf("www.example.org: %q", body)
	}
	_, _, err = fazt(t, nil, "", "apps", "domain", "add", "hello", "not a domain", "--data", s.dir)
	var se *serverError
	if !errors.As(err, &se) || se.Status != 400 {
		t.Errorf("domain add garbage: %v, want the server's 400", err)
	}
	for _, args := range [][]string{{"alias", "remove", "hello", "hi"}, {"domain", "remove", "hello", "www.example.org"}} {
		if _, _, err := fazt(t, nil, "", append(append([]string{"apps"}, args...), "--data", s.dir)...); err != nil {
			t.Errorf("apps %v: %v", args, err)
		}
	}
	if status, _ := getHost(t, s, "hi.localhost:"+port(s), "/"); status != 404 {
		t.Errorf("hi.localhost after alias remove: %d, want 404", status)
	}

	if out, _, err = fazt(t, nil, "", "apps", "delete", "hello", "--data", s.dir); err != nil || !strings.Contains(out, "deleted hello") {
		t.Errorf("apps delete: %v %q", err, out)
	}
	if status, _ := getHost(t, s, host, "/"); status != 404 {
		t.Errorf("deleted app: %d, want 404", status)
	}
	out, _, _ = fazt(t, nil, "", "apps", "list", "--json", "--data", s.dir)
	var list struct{ Apps []apps.App }
	if json.Unmarshal([]byte(out), &list) != nil || len(list.Apps) != 1 || !list.Apps[0].Deleted || list.Apps[0].Deploys != 2 {
		t.Errorf("apps list --json after delete: %s", out)
	}
}

// What fazt deploy refuses, before sending anything.
func TestDeployCLIRefuses(t *testing.T) {
	s := startServer(t, t.TempDir())
	outside := t.TempDir()
	writeTree(t, outside, map[string]string{"secret.txt": "secret"})
	leaks := t.TempDir()
	writeTree(t, leaks, map[string]string{"index.html": "x"})
	if err := os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(leaks, "secret.txt")); err != nil {
		t.Fatal(err)
	}
	dirLink := t.TempDir()
	writeTree(t, dirLink, map[string]string{"index.html": "x"})
	if err := os.Symlink(outside, filepath.Join(dirLink, "out")); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	writeTree(t, empty, map[string]string{".only-dotfiles": "x"})
	for _, c := range []struct {
		args  []string
		usage bool
		says  string
	}{
		{[]string{"deploy", leaks, "--app", "a"}, false, "a symlink that leaves"},
		{[]string{"deploy", dirLink, "--app", "a"}, false, "a symlink that leaves"},
		{[]string{"deploy", empty, "--app", "a"}, false, "no files to deploy"},
		{[]string{"deploy", filepath.Join(empty, "nope"), "--app", "a"}, false, "no such file"},
		{[]string{"deploy", leaks}, true, `"app" not set`},
		{[]string{"deploy", leaks, "--app", "Bad_Name"}, true, "app names are"},
		{[]string{"deploy", leaks, "--app", "a", "--jobs", "0"}, true, "--jobs"},
		{[]string{"deploy", dirLink, "--app", "a", "--spa"}, false, "a symlink that leaves"},
	} {
		_, _, err := fazt(t, nil, "", append(c.args, "--data", s.dir)...)
		var u *usageError
		if err == nil || errors.As(err, &u) != c.usage || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%v: %v, want a usage error %v saying %q", c.args, err, c.usage, c.says)
		}
	}
	out, _, err := fazt(t, nil, "", "apps", "list", "--data", s.dir)
	if err != nil || !strings.Contains(out, "no apps yet") {
		t.Errorf("after refusals, apps list: %v %q", err, out)
	}
	// An unknown app: the server's 404, said plainly.
	_, _, err = fazt(t, nil, "", "apps", "history", "nope", "--data", s.dir)
	var se *serverError
	if !errors.As(err, &se) || se.Status != 404 {
		t.Errorf("history of an unknown app: %v", err)
	}
}

// The sample site of the README's quickstart deploys and serves.
func TestDeploySample(t *testing.T) {
	s := startServer(t, t.TempDir())
	out, _, err := fazt(t, nil, "", "deploy", filepath.Join("..", "..", "verticals", "apps", "sample"), "--app", "hello", "--data", s.dir)
	if err != nil || !strings.Contains(out, "http://hello.localhost:"+port(s)+"/") {
		t.Fatalf("deploy the sample: %v\n%s", err, out)
	}
	host := "hello.localhost:" + port(s)
	if status, body := getHost(t, s, host, "/"); status != 200 || !strings.Contains(body, "Hello from Fazt") {
		t.Errorf("sample /: %d %q", status, body)
	}
	if status, body := getHost(t, s, host, "/about"); status != 200 || !strings.Contains(body, "About") {
		t.Errorf("sample /about: %d", status)
	}
	if status, body := getHost(t, s, host, "/nope"); status != 404 || !strings.Contains(body, "Not found") {
		t.Errorf("sample /nope: %d, want its 404.html", status)
	}
}

// A deploy interrupted after half its uploads, run again with fazt
// deploy, uploads only the rest.
func TestDeployCLIResumes(t *testing.T) {
	s := startServer(t, t.TempDir())
	dir := t.TempDir()
	files := map[string]string{}
	for _, n := range []string{"a", "b", "c", "d", "e", "f"} {
		files[n+".txt"] = "file " + n
	}
	writeTree(t, dir, files)
	for _, n := range []string{"a", "b", "c"} {
		c := files[n+".txt"]
		if status, body, _ := s.do(t, "PUT", apps.BlobPath("site", vfs.Hash([]byte(c))), strings.NewReader(c), nil); status != 200 {
			t.Fatalf("upload %s: %d %s", n, status, body)
		}
	}
	if status, _ := getHost(t, s, "site.localhost:"+port(s), "/a.txt"); status != 404 {
		t.Errorf("blobs alone serve something: %d", status)
	}
	out, _, err := fazt(t, nil, "", "deploy", dir, "--app", "site", "--data", s.dir)
	if err != nil || !strings.Contains(out, "deployed site: 6 files, 3 uploaded") {
		t.Fatalf("deploy after half the uploads: %v\n%s", err, out)
	}
	if _, body := getHost(t, s, "site.localhost:"+port(s), "/f.txt"); body != "file f" {
		t.Errorf("f.txt: %q", body)
	}
}
