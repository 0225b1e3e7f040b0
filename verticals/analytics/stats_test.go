package analytics

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/eventlog"
)

// A halted projection cannot answer for the log's tail: the admin reads
// answer 503 at once, saying where the projection stands and why.
func TestReadsUnavailableWhenHalted(t *testing.T) {
	e := startDefault(t)
	e.createSite(t, "blog", "blog.example.com")
	e.hit(t, "198.51.100.1", chromeUA, "blog", "https://blog.example.com/", "")
	if st := e.stats(t, "blog", "?from=2025-03-10&to=2025-03-10"); st.Views != 1 {
		t.Fatalf("views %d before the halt, want 1", st.Views)
	}

	// The schema's pattern admits a day the fold cannot parse.
	data, _ := json.Marshal(PageviewRecorded{Site: "blog", Path: "/", UAClass: "desktop", Visitor: strings.Repeat("a", 32), At: "2025-13-45T10:00:00Z"})
	res, err := e.k.Append(context.Background(), []eventlog.Event{{Stream: SiteStream("blog"), Type: TypePageviewRecorded, Schema: current, Data: data}})
	if err != nil {
		t.Fatal(err)
	}
	bad := res.LastSeq
	for _, path := range []string{"/v1/analytics/blog/stats", "/v1/analytics/sites"} {
		status, _, body := e.do(t, "GET", path, nil, "", true)
		var eb struct {
			Error struct{ Code, Message string }
		}
		if status != http.StatusServiceUnavailable || json.Unmarshal([]byte(body), &eb) != nil || eb.Error.Code != "unavailable" ||
			!strings.Contains(eb.Error.Message, fmt.Sprintf("projection analytics is behind: version %d at seq %d (halted), want version %d at seq %d", current, bad-1, current, bad)) ||
			!strings.Contains(eb.Error.Message, fmt.Sprintf("halted at seq %d", bad)) {
			t.Errorf("GET %s with the projection halted: %d %s", path, status, body)
		}
	}
}
