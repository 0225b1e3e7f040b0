package vfs_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/vfs"
)

// Deploy a site of two files, serve it, roll back.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "vfs-example")
	defer os.RemoveAll(dir)
	k := kernel.New(dir)
	k.Addr, k.Logger = "127.0.0.1:0", slog.New(slog.DiscardHandler)
	svc, err := vfs.Register(k, vfs.Config{})
	if err != nil {
		panic(err)
	}
	if err := k.Open(ctx); err != nil {
		panic(err)
	}
	defer k.Close(ctx)

	deploy := func(files map[string]string) string {
		m := vfs.Manifest{Files: map[string]vfs.File{}}
		var hashes []string
		for p, c := range files {
			h := vfs.Hash([]byte(c))
			m.Files[p] = vfs.File{SHA256: h, Size: int64(len(c))}
			hashes = append(hashes, h)
		}
		// Upload only what the server lacks.
		missing, err := svc.Missing(ctx, hashes)
		if err != nil {
			panic(err)
		}
		for _, h := range missing {
			for _, c := range files {
				if vfs.Hash([]byte(c)) == h {
					if err := svc.PutBlob(ctx, h, strings.NewReader(c)); err != nil {
						panic(err)
					}
				}
			}
		}
		id, err := svc.Deploy(ctx, "blog", m)
		if err != nil {
			panic(err)
		}
		return id
	}
	first := deploy(map[string]string{"index.html": "<h1>v1</h1>", "about.html": "about"})
	deploy(map[string]string{"index.html": "<h1>v2</h1>", "about.html": "about"})

	srv := httptest.NewServer(svc.SiteHandler("blog"))
	defer srv.Close()
	get := func(path string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			panic(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(path, resp.StatusCode, resp.Header.Get("Content-Type"), string(b))
	}
	get("/")
	get("/about")
	if err := svc.Activate(ctx, "blog", first); err != nil {
		panic(err)
	}
	get("/")
	hist, _ := svc.History(ctx, "blog")
	fmt.Println(len(hist), "deploys, live:", hist[1].Live)
	// Output:
	// / 200 text/html; charset=utf-8 <h1>v2</h1>
	// /about 200 text/html; charset=utf-8 about
	// / 200 text/html; charset=utf-8 <h1>v1</h1>
	// 2 deploys, live: true
}
