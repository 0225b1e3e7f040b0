package vfs

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	_ "modernc.org/sqlite"
)

// markedSite is a site whose every file holds only its deploy's marker
// byte: a page, an asset of several chunks (with variants) and a page
// reached through the fallback.
func markedSite(marker byte) map[string]string {
	m := string(marker)
	return map[string]string{
		"index.html":  strings.Repeat(m, 5000),
		"big.txt":     strings.Repeat(m, 2*ChunkBytes+123),
		"docs/a.html": strings.Repeat(m, 700),
		"deploy.txt":  m,
	}
}

// While deploys are activated back and forth, every response a reader
// gets comes whole from one deploy.
func TestAtomicSwapUnderReaders(t *testing.T) {
	e := start(t, t.TempDir(), Config{CacheBytes: 1 << 20})
	ctx := context.Background()
	ids := map[byte]string{}
	for _, mk := range []byte{'A', 'B'} {
		m := e.manifest(t, markedSite(mk))
		m.Fallback = "index.html"
		ids[mk] = e.deploy(t, "blog", m)
	}
	paths := []string{"/", "/big.txt", "/docs/a", "/deploy.txt", "/spa/route", "/big.txt#range"}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[byte]int{}
	var bad []string
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	base := e.srv.URL
	// The readers stop before the test ends, also when it fails.
	defer func() { stop.Store(true); wg.Wait() }()
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				p := paths[(i+r)%len(paths)]
				req, _ := http.NewRequest("GET", base+strings.TrimSuffix(p, "#range"), nil)
				if strings.HasSuffix(p, "#range") {
					req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", ChunkBytes-50, 2*ChunkBytes+50))
				}
				if i%3 == 0 {
					req.Header.Set("Accept-Encoding", "gzip")
				}
				resp, err := client.Do(req)
				if err != nil {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s: %v", p, err))
					mu.Unlock()
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				body := string(b)
				if err == nil && resp.Header.Get("Content-Encoding") == "gzip" {
					var zr *gzip.Reader
					if zr, err = gzip.NewReader(bytes.NewReader(b)); err == nil {
						b, err = io.ReadAll(zr)
						body = string(b)
					}
				}
				mu.Lock()
				switch {
				case err != nil || (resp.StatusCode != 200 && resp.StatusCode != 206) || body == "":
					bad = append(bad, fmt.Sprintf("%s: %d %v", p, resp.StatusCode, err))
				case strings.Count(body, body[:1]) != len(body) || (body[0] != 'A' && body[0] != 'B'):
					bad = append(bad, fmt.Sprintf("%s: a mixed response (%d bytes)", p, len(body)))
				default:
					seen[body[0]]++
				}
				mu.Unlock()
			}
		}(r)
	}
	for i := 0; i < 30; i++ {
		mk := byte('A' + i%2)
		if err := e.s.Activate(ctx, "blog", ids[mk]); err != nil {
			t.Fatal(err)
		}
		// Once Activate returns, every request sees the new deploy.
		if _, body := e.get(t, "GET", "/deploy.txt", nil); body != string(mk) {
			t.Fatalf("after activating %c: %q", mk, body)
		}
	}
	stop.Store(true)
	wg.Wait()
	for _, b := range bad {
		t.Error(b)
	}
	if seen['A'] == 0 || seen['B'] == 0 {
		t.Fatalf("readers saw %v: want both deploys", seen)
	}
	t.Logf("responses: %v", seen)
}

// The projection rebuilt from the log and the blobs has the same rows.
func TestRebuildGivesTheSameRows(t *testing.T) {
	e := start(t, t.TempDir(), Config{})
	ctx := context.Background()
	m := e.manifest(t, site)
	m.NotFound = "404.html"
	v1 := e.deploy(t, "blog", m)
	e.deploy(t, "blog", e.manifest(t, markedSite('B')))
	e.deploy(t, "docs", e.manifest(t, markedSite('C')))
	if err := e.s.Activate(ctx, "blog", v1); err != nil {
		t.Fatal(err)
	}
	if err := e.s.Delete(ctx, "docs"); err != nil {
		t.Fatal(err)
	}
	last, err := e.k.Log().LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var live map[string][]string
	if err := e.s.read(ctx, true, func(ctx context.Context, tx *sql.Tx) error {
		live, err = dump(ctx, tx)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "vfs-rebuilt.db")
	if err := e.k.Projections().BuildAsOf(ctx, projectionName, last, out); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", out)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	rebuilt, err := dump(ctx, tx)
	if err != nil {
		t.Fatal(err)
	}
	if len(live["chunks"]) == 0 || len(live["files"]) == 0 {
		t.Fatalf("nothing to compare: %v", live)
	}
	if !reflect.DeepEqual(live, rebuilt) {
		for tb := range live {
			if !reflect.DeepEqual(live[tb], rebuilt[tb]) {
				t.Errorf("table %s differs: %d rows live, %d rebuilt", tb, len(live[tb]), len(rebuilt[tb]))
			}
		}
	}
}

// dump returns every row of the projection's tables, in key order.
func dump(ctx context.Context, tx *sql.Tx) (map[string][]string, error) {
	out := map[string][]string{}
	for _, tb := range tablesV1() {
		rows, err := tx.QueryContext(ctx, "SELECT * FROM "+tb.Name+" ORDER BY 1, 2")
		if err != nil {
			return nil, err
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return nil, err
			}
			out[tb.Name] = append(out[tb.Name], fmt.Sprintf("%q", vals))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}
