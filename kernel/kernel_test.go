package kernel_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/kerneltest"
	"github.com/fazt-sh/fazt/kernel/reactor"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
)

var quiet = slog.New(slog.DiscardHandler)

// newKernel returns an unopened kernel on dir and a free port, quiet,
// with its tunables changed by tune (nil: none). Every test of the
// package makes its kernels here.
func newKernel(t *testing.T, dir string, tune func(*kernel.Kernel)) *kernel.Kernel {
	t.Helper()
	k := kernel.New(dir)
	k.Addr, k.Logger = "127.0.0.1:0", quiet
	if tune != nil {
		tune(k)
	}
	return k
}

func open(t *testing.T, k *kernel.Kernel) {
	t.Helper()
	if err := k.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := k.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
}

// call sends a request; token "" sends none.
func call(t *testing.T, k *kernel.Kernel, method, path, token, body string) (int, string, http.Header) {
	t.Helper()
	return kerneltest.Client{Base: "http://" + k.ListenAddr(), Token: token}.Do(t, method, path, strings.NewReader(body), nil)
}

// counter is a projection counting events of type typ per stream; it
// fails on the events of stream fail.
func counter(typ string, fail string) projections.Projection {
	return projections.Projection{
		Name: "counts", Version: 1,
		Tables: []schemas.Table{{Name: "counts", Columns: []schemas.Column{
			{Name: "stream", Type: "TEXT", PrimaryKey: true}, {Name: "n", Type: "INTEGER", NotNull: true}}}},
		Filter: eventlog.Filter{Types: []string{typ}},
		Apply: func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
			if e.Stream == fail {
				return fmt.Errorf("cannot count %s", e.Stream)
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO counts VALUES (?, 1) ON CONFLICT (stream) DO UPDATE SET n = n + 1`, e.Stream)
			return err
		},
	}
}

func TestReadyOnlyWhenProjectionsCaughtUp(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	// Fill the log with a kernel that has no projection.
	k := newKernel(t, dir, nil)
	if err := k.RegisterEvent("t.hit", 1, []byte(`{"type":"object"}`)); err != nil {
		t.Fatal(err)
	}
	if err := k.Open(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 300
	for i := 0; i < n; i += 100 {
		var events []eventlog.Event
		for j := 0; j < 100; j++ {
			events = append(events, eventlog.Event{Stream: fmt.Sprintf("t.%d", j%7), Type: "t.hit", Data: []byte(`{}`)})
		}
		if _, err := k.Append(ctx, events); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// A new critical projection must be back-filled: not ready until it
	// is.
	k = newKernel(t, dir, nil)
	k.RegisterEvent("t.hit", 1, []byte(`{"type":"object"}`))
	p := counter("t.hit", "")
	p.Critical = true
	// It folds nothing until the test has seen it catching up.
	gate := make(chan struct{})
	apply := p.Apply
	p.Apply = func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		return apply(ctx, tx, e)
	}
	if err := k.RegisterProjection(p); err != nil {
		t.Fatal(err)
	}
	open(t, k)
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release) // before Close, should the test stop early
	status, body, _ := call(t, k, "GET", "/readyz", "", "")
	if status != http.StatusServiceUnavailable || !strings.Contains(body, `"catching_up"`) || !strings.Contains(body, "counts") {
		t.Fatalf("readyz while catching up: %d %s", status, body)
	}
	// The admin API already answers, so progress can be watched.
	if status, body, _ := call(t, k, "GET", "/v1/projections/counts", k.Token, ""); status != http.StatusOK {
		t.Fatalf("projection status while catching up: %d %s", status, body)
	}
	release()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := k.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	if status, body, _ := call(t, k, "GET", "/readyz", "", ""); status != http.StatusOK {
		t.Fatalf("readyz after catching up: %d %s", status, body)
	}
	res, err := k.Query(ctx, "counts", "SELECT sum(n) FROM counts", nil, projections.QueryOptions{})
	if err != nil || fmt.Sprint(res.Rows) != fmt.Sprint([][]any{{int64(n)}}) {
		t.Fatalf("counted %v, %v; want %d", res.Rows, err, n)
	}
}

func TestRoutes(t *testing.T) {
	k := newKernel(t, t.TempDir(), func(c *kernel.Kernel) { c.PublicRate, c.PublicBurst, c.PublicBodyBytes = 0.001, 3, 16 })
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			k.WriteError(w, r, err)
			return
		}
		kernel.WriteJSON(w, http.StatusOK, map[string]string{"got": string(b)})
	})
	if err := k.HandlePublic("POST /hook", echo); err != nil {
		t.Fatal(err)
	}
	if err := k.Handle("POST /v1/echo", echo); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ pattern, want string }{
		{"POST /echo", "admin routes live under /v1/"},
		{"/v1/x", "want \"METHOD /path\""},
		{"POST /v1/echo", "conflicts"},
	} {
		err := k.Handle(bad.pattern, echo)
		if !errors.Is(err, eventlog.ErrInvalid) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Handle(%q) = %v; want ErrInvalid saying %q", bad.pattern, err, bad.want)
		}
	}
	// A bad registration fails Open: a vertical cannot half-register.
	if err := k.Open(context.Background()); err == nil || !strings.Contains(err.Error(), "registration") {
		t.Fatalf("Open after failed registrations: %v", err)
	}

	k = newKernel(t, t.TempDir(), func(c *kernel.Kernel) { c.PublicRate, c.PublicBurst, c.PublicBodyBytes = 0.001, 3, 16 })
	k.HandlePublic("POST /hook", echo)
	k.Handle("POST /v1/echo", echo)
	open(t, k)
	if err := k.Handle("POST /v1/late", echo); err == nil {
		t.Fatal("Handle after Open worked; want an error")
	}
	if status, body, _ := call(t, k, "POST", "/v1/echo", "", "hi"); status != http.StatusUnauthorized {
		t.Fatalf("admin route without the token: %d %s", status, body)
	}
	if status, body, _ := call(t, k, "POST", "/v1/echo", k.Token, "hi"); status != http.StatusOK || !strings.Contains(body, `"got":"hi"`) {
		t.Fatalf("admin route with the token: %d %s", status, body)
	}
	if status, body, _ := call(t, k, "POST", "/hook", "", strings.Repeat("x", 17)); status != http.StatusRequestEntityTooLarge || !strings.Contains(body, "16 bytes") {
		t.Fatalf("public body over the limit: %d %s", status, body)
	}
	// The burst of 3 is spent by the call above and two more; then 429.
	for i := 0; i < 2; i++ {
		if status, body, _ := call(t, k, "POST", "/hook", "", "ok"); status != http.StatusOK {
			t.Fatalf("public call %d: %d %s", i, status, body)
		}
	}
	status, body, h := call(t, k, "POST", "/hook", "", "ok")
	if status != http.StatusTooManyRequests || h.Get("Retry-After") == "" || !strings.Contains(body, `"rate_limited"`) {
		t.Fatalf("public call past the burst: %d %s %v", status, body, h)
	}
	// Admin routes are not rate limited.
	if status, _, _ := call(t, k, "POST", "/v1/echo", k.Token, "hi"); status != http.StatusOK {
		t.Fatalf("admin route after the public limit: %d", status)
	}
}

// seats is a decider state: who holds a seat.
type seats struct{ taken map[string]string }

func bookSeat(seat, who string) kernel.Decider[seats] {
	return kernel.Decider[seats]{
		Init: func() seats { return seats{taken: map[string]string{}} },
		Evolve: func(s seats, e eventlog.Event) (seats, error) {
			var d struct{ Seat, Who string }
			if err := json.Unmarshal(e.Data, &d); err != nil {
				return s, err
			}
			s.taken[d.Seat] = d.Who
			return s, nil
		},
		Decide: func(s seats, _ uint64) ([]eventlog.Event, error) {
			if len(s.taken) >= 10 {
				return nil, kernel.Refusef("sold out")
			}
			if by, ok := s.taken[seat]; ok {
				return nil, kernel.Refusef("seat %s is taken by %s", seat, by)
			}
			return []eventlog.Event{{Type: "show.booked", Data: []byte(fmt.Sprintf(`{"seat":%q,"who":%q}`, seat, who))}}, nil
		},
		Attempts: 100,
	}
}

func TestDecide(t *testing.T) {
	k := newKernel(t, t.TempDir(), func(c *kernel.Kernel) { c.NoHTTP = true })
	k.RegisterEvent("show.booked", 1, []byte(`{"type":"object"}`))
	open(t, k)
	ctx := context.Background()

	// 30 buyers race for 10 seats of a show, two of them for the same
	// seat: exactly 10 bookings land, the rest are refused for a reason.
	var wg sync.WaitGroup
	var mu sync.Mutex
	booked, refused := 0, map[string]int{}
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seat := fmt.Sprint(i)
			if i == 1 {
				seat = "0"
			}
			d, err := kernel.Decide(ctx, k, "show.1", bookSeat(seat, fmt.Sprint("buyer", i)))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				booked++
				if len(d.Events) != 1 || d.Events[0].Seq == 0 || d.Events[0].Version != d.Version+1 {
					t.Errorf("decision %+v", d)
				}
			case errors.Is(err, kernel.ErrRefused):
				refused[strings.Fields(err.Error())[0]]++
			default:
				t.Errorf("buyer %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	events, err := k.ReadStream(ctx, "show.1", 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	if booked != 10 || len(events) != 10 || refused["sold"]+refused["seat"] != 20 {
		t.Fatalf("booked %d, %d events, refused %v", booked, len(events), refused)
	}
	taken := map[string]bool{}
	for _, e := range events {
		var d struct{ Seat string }
		json.Unmarshal(e.Data, &d)
		if taken[d.Seat] {
			t.Fatalf("seat %s booked twice", d.Seat)
		}
		taken[d.Seat] = true
	}

	// Nothing to decide appends nothing; a bad decider is refused.
	d, err := kernel.Decide(ctx, k, "show.2", kernel.Decider[int]{
		Evolve: func(s int, _ eventlog.Event) (int, error) { return s + 1, nil },
		Decide: func(int, uint64) ([]eventlog.Event, error) { return nil, nil },
	})
	if err != nil || d.Result.LastSeq != 0 || d.Version != 0 {
		t.Fatalf("empty decision: %+v %v", d, err)
	}
	if _, err := kernel.Decide(ctx, k, "show.2", kernel.Decider[int]{}); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("decider without functions: %v", err)
	}
}

// With a single attempt, rivals that lose the race get the conflict.
func TestDecideGivesUp(t *testing.T) {
	k := newKernel(t, t.TempDir(), func(c *kernel.Kernel) { c.NoHTTP = true })
	k.RegisterEvent("show.booked", 1, []byte(`{"type":"object"}`))
	open(t, k)
	ctx := context.Background()
	var wg sync.WaitGroup
	var conflicts, ok int
	var mu sync.Mutex
	start := make(chan struct{})
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := bookSeat(fmt.Sprint(i), "x")
			d.Attempts = 1
			<-start
			_, err := kernel.Decide(ctx, k, "show.9", d)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, eventlog.ErrConflict):
				conflicts++
			default:
				t.Errorf("%v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	events, _ := k.ReadStream(ctx, "show.9", 1, 100)
	if ok < 1 || ok+conflicts != 8 || len(events) != ok {
		t.Fatalf("%d ok, %d conflicts, %d events", ok, conflicts, len(events))
	}
}

// Each attempt folds the stream from a fresh state: what the first,
// conflicting attempt put into a map (in Evolve and in Decide) is not
// seen by the retry.
func TestDecideRetryStartsClean(t *testing.T) {
	k := newKernel(t, t.TempDir(), func(c *kernel.Kernel) { c.NoHTTP = true })
	k.RegisterEvent("tally.added", 1, []byte(`{"type":"object"}`))
	open(t, k)
	ctx := context.Background()
	add := func(who string) eventlog.Event {
		return eventlog.Event{Stream: "tally.1", Type: "tally.added", Data: []byte(fmt.Sprintf(`{"who":%q}`, who))}
	}
	if _, err := k.Append(ctx, []eventlog.Event{add("ann")}); err != nil {
		t.Fatal(err)
	}
	var seen []map[string]int
	d, err := kernel.Decide(ctx, k, "tally.1", kernel.Decider[map[string]int]{
		Init: func() map[string]int { return map[string]int{} },
		Evolve: func(s map[string]int, e eventlog.Event) (map[string]int, error) {
			var d struct{ Who string }
			err := json.Unmarshal(e.Data, &d)
			s[d.Who]++
			return s, err
		},
		Decide: func(s map[string]int, _ uint64) ([]eventlog.Event, error) {
			seen = append(seen, maps.Clone(s))
			if len(seen) == 1 {
				// A rival writes between this attempt's load and its append.
				if _, err := k.Append(ctx, []eventlog.Event{add("bob")}); err != nil {
					return nil, err
				}
			}
			s["decided"]++ // a decider scribbling on its state
			return []eventlog.Event{add("cat")}, nil
		},
	})
	want := []map[string]int{{"ann": 1}, {"ann": 1, "bob": 1}}
	if err != nil || d.Attempts != 2 || !reflect.DeepEqual(seen, want) {
		t.Fatalf("attempts saw %v, want %v (decision %+v, %v)", seen, want, d, err)
	}
	events, err := k.ReadStream(ctx, "tally.1", 1, 10)
	if err != nil || len(events) != 3 || !strings.Contains(string(events[2].Data), "cat") {
		t.Fatalf("stream after the decision: %v %v", events, err)
	}
}

// DiagnoseStopped says what it cannot read or write, without writing.
func TestDiagnoseStoppedPermissions(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("permissions do not stop root")
	}
	dir := t.TempDir()
	models := filepath.Join(dir, "projections", "orders")
	if err := os.MkdirAll(models, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(models, "000001.db"), []byte("x"), 0o000); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o500)
	defer os.Chmod(dir, 0o700)
	seen := map[string]kernel.Check{}
	for _, c := range kernel.DiagnoseStopped(context.Background(), dir) {
		seen[c.Name] = c
	}
	if c := seen["data directory"]; c.Status != kernel.CheckFail || !strings.Contains(c.Detail, "is not writable") {
		t.Errorf("a read-only data directory: %+v", c)
	}
	if c := seen["read models"]; c.Status != kernel.CheckFail || !strings.Contains(c.Detail, "1 cannot be read") || !strings.Contains(c.Detail, "000001.db") || c.Fix == "" {
		t.Errorf("an unreadable read model: %+v", c)
	}
}

func TestDoctor(t *testing.T) {
	k := newKernel(t, t.TempDir(), nil)
	k.RegisterEvent("t.hit", 1, []byte(`{"type":"object"}`))
	k.RegisterProjection(counter("t.hit", "t.bad"))
	open(t, k)
	ctx := context.Background()
	res, err := k.Append(ctx, []eventlog.Event{{Stream: "t.good", Type: "t.hit", Data: []byte(`{}`)}, {Stream: "t.bad", Type: "t.hit", Data: []byte(`{}`)}})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := k.Projections().WaitFor(wctx, "counts", res.LastSeq); !errors.Is(err, projections.ErrHalted) {
		t.Fatalf("WaitFor: %v; want the projection halted", err)
	}
	status, body, _ := call(t, k, "GET", "/v1/doctor", k.Token, "")
	if status != http.StatusOK {
		t.Fatalf("doctor: %d %s", status, body)
	}
	var out struct{ Checks []kernel.Check }
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	got := map[string]kernel.Check{}
	for _, c := range out.Checks {
		got[c.Name] = c
	}
	// The test's temp dir is group-readable: a warning that says what to do.
	if c := got["data directory"]; c.Status != kernel.CheckWarn || !strings.HasPrefix(c.Fix, "chmod 700 ") {
		t.Errorf("check data directory: %+v; want a warning to chmod 700", c)
	}
	for _, name := range []string{"API token", "event stream FAZT_EVENTS", "SQLite"} {
		if got[name].Status != kernel.CheckOK {
			t.Errorf("check %q: %+v; want ok", name, got[name])
		}
	}
	c := got["projection counts"]
	if c.Status != kernel.CheckFail || !strings.Contains(c.Detail, "cannot count t.bad") ||
		!strings.Contains(c.Fix, "fazt projections retry counts") || !strings.Contains(c.Fix, fmt.Sprintf("--seq %d", res.LastSeq)) {
		t.Fatalf("halted projection check: %+v", c)
	}
	// The projection is not critical: the node stays ready, and says
	// what it runs without (TestReadinessCritical has the critical case).
	if !strings.Contains(c.Detail, "not critical: the node stays ready") {
		t.Fatalf("halted projection check: %+v", c)
	}
	if status, body, _ := call(t, k, "GET", "/readyz", "", ""); status != http.StatusOK || !strings.Contains(body, `"degraded":["counts (halted at seq`) {
		t.Fatalf("readyz with a halted projection that is not critical: %d %s", status, body)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	k := newKernel(t, t.TempDir(), nil)
	k.RegisterEvent("t.hit", 1, []byte(`{"type":"object"}`))
	ctx := context.Background()
	if err := k.Open(ctx); err != nil {
		t.Fatal(err)
	}
	addr := k.ListenAddr()
	if err := k.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Append(ctx, []eventlog.Event{{Stream: "t.1", Type: "t.hit", Data: []byte(`{}`)}}); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("append after Close: %v", err)
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Fatal("HTTP still answers after Close")
	}
	if err := k.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := k.Open(ctx); err == nil {
		t.Fatal("Open after Close worked")
	}
}

// A reactor whose side effect fails parks the event, visibly; retrying
// it over HTTP fails while the cause remains and works once it is fixed.
func TestReactorsOverHTTP(t *testing.T) {
	var broken atomic.Bool
	broken.Store(true)
	k := newKernel(t, t.TempDir(), nil)
	k.RegisterEvent("mail.requested", 1, []byte(`{"type":"object"}`))
	err := k.RegisterReactor(reactor.Reactor{
		Name:   "mailer",
		Filter: eventlog.Filter{Types: []string{"mail.requested"}},
		Handle: func(ctx context.Context, e eventlog.Event, key string) error {
			if broken.Load() {
				return errors.New("smtp: connection refused")
			}
			return nil
		},
		MaxAttempts: 2,
		Backoff:     []time.Duration{10 * time.Millisecond},
		FetchWait:   100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	open(t, k)
	res, err := k.Append(context.Background(), []eventlog.Event{{Stream: "mail.1", Type: "mail.requested", Data: []byte(`{}`)}})
	if err != nil {
		t.Fatal(err)
	}
	seq := res.LastSeq
	var st reactor.Status
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, body, _ := call(t, k, "GET", "/v1/reactors/mailer", k.Token, "")
		if status != http.StatusOK {
			t.Fatalf("reactor status: %d %s", status, body)
		}
		json.Unmarshal([]byte(body), &st)
		if len(st.Parked) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the failing event was not parked: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p := st.Parked[0]; p.Seq != seq || p.Attempts != 2 || !strings.Contains(p.Error, "connection refused") {
		t.Fatalf("parked: %+v", p)
	}
	if status, body, _ := call(t, k, "GET", "/v1/doctor", k.Token, ""); status != http.StatusOK ||
		!strings.Contains(body, `"name":"reactor mailer","status":"warn"`) || !strings.Contains(body, fmt.Sprintf(`POST /v1/reactors/mailer/retry {\"seq\":%d}`, seq)) {
		t.Fatalf("doctor with a parked event: %d %s", status, body)
	}
	if status, body, _ := call(t, k, "GET", "/v1/reactors", k.Token, ""); status != http.StatusOK || !strings.Contains(body, `"name":"mailer"`) {
		t.Fatalf("reactor list: %d %s", status, body)
	}
	body := fmt.Sprintf(`{"seq":%d}`, seq)
	if status, resp, _ := call(t, k, "POST", "/v1/reactors/mailer/retry", k.Token, body); status != http.StatusServiceUnavailable || !strings.Contains(resp, "still parked") {
		t.Fatalf("retry while broken: %d %s", status, resp)
	}
	broken.Store(false)
	status, resp, _ := call(t, k, "POST", "/v1/reactors/mailer/retry", k.Token, body)
	if status != http.StatusOK || !strings.Contains(resp, `"parked":[]`) {
		t.Fatalf("retry once fixed: %d %s", status, resp)
	}
	if status, resp, _ := call(t, k, "POST", "/v1/reactors/mailer/retry", k.Token, body); status != http.StatusNotFound {
		t.Fatalf("retry of an event no longer parked: %d %s", status, resp)
	}
	if status, _, _ := call(t, k, "GET", "/v1/reactors/nope", k.Token, ""); status != http.StatusNotFound {
		t.Fatalf("unknown reactor: %d", status)
	}
	if status, _, _ := call(t, k, "POST", "/v1/reactors/mailer/retry", k.Token, `{}`); status != http.StatusBadRequest {
		t.Fatalf("retry without seq: %d", status)
	}
}

func TestClientIP(t *testing.T) {
	r, _ := http.NewRequest("POST", "/", nil)
	r.RemoteAddr = "127.0.0.1:54321"
	r.Header.Add("X-Forwarded-For", "10.0.0.1, 198.51.100.7")
	if got := kernel.ClientIP(r, false); got != "127.0.0.1" {
		t.Errorf("without trust: %s; want the peer", got)
	}
	if got := kernel.ClientIP(r, true); got != "198.51.100.7" {
		t.Errorf("with trust: %s; want the nearest forwarded address", got)
	}
	r.RemoteAddr = "[2001:db8::1]:443"
	if got := kernel.ClientIP(r, false); got != "2001:db8::1" {
		t.Errorf("IPv6 peer: %s", got)
	}
}
