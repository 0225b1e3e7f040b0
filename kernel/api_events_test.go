package kernel_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
)

// sseEvent is one Server-Sent Event as a client sees it.
type sseEvent struct {
	id, event, data string
}

// openLive connects to k's /v1/events/live and returns the events as
// they arrive; the channel closes when the stream ends.
func openLive(t *testing.T, ctx context.Context, k *kernel.Kernel, query string, headers map[string]string) <-chan sseEvent {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+k.ListenAddr()+"/v1/events/live"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+k.Token)
	for name, v := range headers {
		req.Header.Set(name, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("live: %d %s", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("live: Content-Type %q", ct)
	}
	out := make(chan sseEvent, 100)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		var e sseEvent
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			field, value, _ := strings.Cut(line, ": ")
			switch {
			case line == "":
				if e != (sseEvent{}) {
					out <- e
				}
				e = sseEvent{}
			case field == "id":
				e.id = value
			case field == "event":
				e.event = value
			case field == "data":
				e.data = value
			}
		}
	}()
	return out
}

// nextEvent waits for the next event on a live stream.
func nextEvent(t *testing.T, ch <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("live stream ended")
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event on the live stream within 10s")
	}
	return sseEvent{}
}

func TestIdempotentRetry(t *testing.T) {
	k := apiKernel(t, nil)
	postEvents(t, k, oneEvent)
	// Fresh IDs: JetStream's dedupe window answers the retry.
	body := `{"events":[{"id":"` + ulid.Make().String() + `","stream":"orders.2","type":"orders.created"},{"id":"` + ulid.Make().String() + `","stream":"orders.1","type":"orders.paid"}]}`
	first := postEvents(t, k, body)
	if first.Duplicate || first.LastSeq != 3 || len(first.Events) != 2 {
		t.Fatalf("first append: %+v", first)
	}
	for range 2 {
		again := postEvents(t, k, body)
		if !again.Duplicate || again.LastSeq != first.LastSeq || fmt.Sprint(again.Events) != fmt.Sprint(first.Events) {
			t.Fatalf("retry: %+v, first: %+v", again, first)
		}
	}
	// IDs older than the window: the log finds them in their stream,
	// before checking the expectation.
	old := `{"events":[{"id":"` + ulid1 + `","stream":"orders.3","type":"orders.created"}],"expect":{"orders.3":0}}`
	first = postEvents(t, k, old)
	again := postEvents(t, k, old)
	if first.Duplicate || !again.Duplicate || fmt.Sprint(again.Events) != fmt.Sprint(first.Events) {
		t.Fatalf("retry of an old id: %+v, first: %+v", again, first)
	}
	status, resp, _ := request(t, k, "POST", "/v1/events", old, nil)
	if status != 200 || !strings.Contains(resp, `"duplicate":true`) || !strings.Contains(resp, `"seq":4`) {
		t.Fatalf("raw retry: %d %s", status, resp)
	}
	if n := logLength(t, k); n != 4 {
		t.Fatalf("%d events after the retries, want 4", n)
	}
}

func TestLiveEvents(t *testing.T) {
	k := apiKernel(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	postEvents(t, k, oneEvent)
	live := openLive(t, ctx, k, "?after=0", nil)
	e := nextEvent(t, live)
	if e.id != "1" || e.event != "orders.created" || !strings.Contains(e.data, `"data":{"total":12}`) {
		t.Fatalf("first event: %+v", e)
	}
	postEvents(t, k, `{"events":[{"stream":"orders.1","type":"orders.paid","data":{"a":"line\nbreak"}},{"stream":"stock.1","type":"stock.reserved"}]}`)
	for _, want := range []string{"2 orders.paid", "3 stock.reserved"} {
		e := nextEvent(t, live)
		var ev eventlog.Event
		if err := json.Unmarshal([]byte(e.data), &ev); err != nil {
			t.Fatalf("event data %q: %v", e.data, err)
		}
		if got := e.id + " " + e.event; got != want || fmt.Sprint(ev.Seq) != e.id || ev.Type != e.event {
			t.Fatalf("got %q (%+v), want %q", got, ev, want)
		}
	}
	cancel()

	// Reconnecting with Last-Event-ID resumes after it, whatever after says.
	postEvents(t, k, `{"events":[{"stream":"orders.1","type":"orders.shipped"}]}`)
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	live = openLive(t, ctx2, k, "?after=0", map[string]string{"Last-Event-ID": "3"})
	if e := nextEvent(t, live); e.id != "4" || e.event != "orders.shipped" {
		t.Fatalf("after reconnect: %+v", e)
	}

	// Filters apply to history and to new events.
	ctx3, cancel3 := context.WithCancel(context.Background())
	defer cancel3()
	live = openLive(t, ctx3, k, "?category=stock&type=stock.released&type=stock.reserved", nil)
	postEvents(t, k, `{"events":[{"stream":"orders.1","type":"orders.closed"},{"stream":"stock.1","type":"stock.released"}]}`)
	if e := nextEvent(t, live); e.id != "3" {
		t.Fatalf("filtered history: %+v", e)
	}
	if e := nextEvent(t, live); e.id != "6" || e.event != "stock.released" {
		t.Fatalf("filtered live: %+v", e)
	}
}

// Close ends the live streams it serves: a client following the log
// does not hold the shutdown up (Close would return the HTTP server's
// missed deadline), gets nothing more, and sees its stream end.
func TestCloseEndsLiveStreams(t *testing.T) {
	k := apiKernel(t, nil)
	postEvents(t, k, oneEvent)
	live := openLive(t, context.Background(), k, "?after=0", nil)
	nextEvent(t, live)
	if err := k.Close(context.Background()); err != nil {
		t.Fatalf("close with a live client: %v", err)
	}
	select {
	case _, ok := <-live:
		if ok {
			t.Fatal("event after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the live stream is still open after Close")
	}
}

// A message that is not an event (published straight into NATS, around
// the kernel) must not pass as one, and must not stop a reader: reads
// show it as a malformed entry and go on, and so does a live stream.
func TestMalformedMessageInLog(t *testing.T) {
	// The kernel's log goes to a file, which the test reads without
	// racing the kernel's writes.
	logFile := filepath.Join(t.TempDir(), "kernel.log")
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	k := apiKernel(t, func(c *kernel.Kernel) {
		c.NATSListen, c.NATSWritable = "127.0.0.1:0", true
		c.Logger = slog.New(slog.NewTextHandler(f, nil))
	})
	postEvents(t, k, oneEvent)
	nc, err := nats.Connect(k.Log().ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Request(eventlog.SubjectOf("rogue.1"), []byte(`{"x":1}`), 5*time.Second); err != nil {
		t.Fatalf("publish into the stream: %v", err)
	}
	after := postEvents(t, k, oneEvent).LastSeq

	status, body, _ := request(t, k, "GET", "/v1/events?after=0", "", nil)
	if status != 200 || !strings.Contains(body, `{"stream":"rogue.1","time":"`) || !strings.Contains(body, `"seq":2,"malformed":{"subject":"`+eventlog.SubjectOf("rogue.1")+`","reason":"bad or missing id, type, version"`) ||
		!strings.Contains(body, `"data_base64":"eyJ4IjoxfQ=="`) || !strings.Contains(body, fmt.Sprintf(`"seq":%d,"version":2`, after)) {
		t.Fatalf("read: %d %s", status, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	live := openLive(t, ctx, k, "?after=0&category=orders&category=rogue", nil)
	if e := nextEvent(t, live); e.id != "1" {
		t.Fatalf("first: %+v", e)
	}
	if e := nextEvent(t, live); e.id != "2" || e.event != "malformed" || !strings.Contains(e.data, `"reason":"bad or missing id, type, version"`) {
		t.Fatalf("want a malformed entry, got %+v", e)
	}
	if e := nextEvent(t, live); e.id != fmt.Sprint(after) || e.event != "orders.created" {
		t.Fatalf("the stream did not go on: %+v", e)
	}
	logged, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logged), "not a valid event") {
		t.Errorf("the kernel's log does not mention the bad message:\n%s", logged)
	}
}

func TestConcurrentExpectations(t *testing.T) {
	k := apiKernel(t, nil)
	// Two clients race to create each stream: exactly one of each pair wins.
	statuses := make(chan int, 20)
	for i := range 20 {
		go func() {
			body := fmt.Sprintf(`{"events":[{"stream":"seat.%d","type":"seat.booked"}],"expect":{"seat.%d":0}}`, i%10, i%10)
			req, _ := http.NewRequest("POST", "http://"+k.ListenAddr()+"/v1/events", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+k.Token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				statuses <- -1 // no t.Fatal outside the test's goroutine
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	counts := map[int]int{}
	for range 20 {
		counts[<-statuses]++
	}
	if counts[200] != 10 || counts[409] != 10 {
		t.Fatalf("statuses %v, want 10 x 200 and 10 x 409", counts)
	}
	if n := logLength(t, k); n != 10 {
		t.Fatalf("%d events, want 10", n)
	}
	if status, body, _ := request(t, k, "GET", "/readyz", "", nil); status != http.StatusOK {
		t.Fatalf("readyz %d %s", status, body)
	}
}
