package apps

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Readers hammering an app by its Host during deploys and rollbacks see
// every response whole and from one deploy: each file is its deploy's
// marker repeated over several chunks, so a mixed or cut answer shows.
func TestHostSwapIsAtomicPerRequest(t *testing.T) {
	e := start(t, t.TempDir(), nil, Config{})
	const size = 600 << 10 // three chunks of the vfs projection
	content := func(d int, f string) string {
		marker := fmt.Sprintf("<deploy %02d file %s>", d, f)
		return strings.Repeat(marker, size/len(marker))
	}
	site := func(d int) map[string]string {
		return map[string]string{"index.html": content(d, "index"), "big.txt": content(d, "big")}
	}
	e.deploy(t, "swap", site(0))

	var stop atomic.Bool
	var checked atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{DisableCompression: true}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			path := []string{"/", "/big.txt"}[r%2]
			file := []string{"index", "big"}[r%2]
			for !stop.Load() {
				req, _ := http.NewRequest("GET", e.base+path, nil)
				req.Host = "swap.localhost:" + e.port
				resp, err := c.Do(req)
				if err != nil {
					errs <- err.Error()
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					errs <- fmt.Sprintf("%s: %d %v", path, resp.StatusCode, err)
					return
				}
				whole := false
				for d := range 6 {
					if string(b) == content(d, file) {
						whole = true
					}
				}
				if !whole {
					errs <- fmt.Sprintf("%s: a body of %d bytes that is no one deploy's file (starts %q)", path, len(b), clip(string(b)))
					return
				}
				checked.Add(1)
			}
		}()
	}
	for d := 1; d <= 5; d++ {
		e.deploy(t, "swap", site(d))
		wantStatus(t, "rollback", e.api(t, "POST", RollbackPath("swap"), RollbackRequest{}), 200)
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
	if checked.Load() == 0 {
		t.Error("no response was checked")
	}
}
