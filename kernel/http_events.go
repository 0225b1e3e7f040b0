package kernel

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
)

// pingEvery is how often a live stream with nothing to send pings, so
// that proxies and clients keep it open.
const pingEvery = 15 * time.Second

func (a *api) registerEventRoutes() {
	a.handle("POST /v1/events", a.appendEvents)
	a.handle("GET /v1/events", a.readEvents)
	a.handle("GET /v1/events/live", a.perClientStreams(a.liveEvents))
	a.handle("GET /v1/streams/{stream}", a.readStream)
}

// AppendRequest is the body of POST /v1/events. Its own event type keeps
// the fields the log sets (seq, version, time) out of what clients send.
type AppendRequest struct {
	Events []AppendEvent `json:"events"`
	// Expect maps a stream to the version it must be at; 0: must not exist.
	Expect map[string]uint64 `json:"expect"`
}

// AppendEvent is one event of an AppendRequest.
type AppendEvent struct {
	ID     string            `json:"id"`
	Stream string            `json:"stream"`
	Type   string            `json:"type"`
	Schema int               `json:"schema"`
	Data   json.RawMessage   `json:"data"`
	Meta   eventlog.Metadata `json:"meta"`
}

func (a *api) appendEvents(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	var req AppendRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if len(req.Events) == 0 {
		return invalidf(`"events" is missing or empty: send {"events":[{"stream":"orders.1","type":"orders.created","data":{}}]}`)
	}
	events := make([]eventlog.Event, len(req.Events))
	for i, e := range req.Events {
		events[i] = eventlog.Event{ID: e.ID, Stream: e.Stream, Type: e.Type, Schema: e.Schema, Data: e.Data, Meta: e.Meta}
	}
	streams := make([]string, 0, len(req.Expect))
	for s := range req.Expect {
		streams = append(streams, s)
	}
	sort.Strings(streams) // the same request gets the same error
	expect := make([]eventlog.Expectation, len(streams))
	for i, s := range streams {
		expect[i] = eventlog.ExpectVersion(s, req.Expect[s])
	}
	res, err := a.log.Append(r.Context(), events, expect...)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (a *api) readStream(w http.ResponseWriter, r *http.Request) error {
	q, err := parseQuery(r, "from", "limit")
	if err != nil {
		return err
	}
	from, err := uintParam(q, "from", 1)
	if err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	stream := r.PathValue("stream")
	page, err := a.log.ReadStreamEntries(r.Context(), stream, from, limit)
	if err != nil {
		return err
	}
	events, cut := boundEntries(page.Events)
	return writeBody(w, struct {
		Stream    string            `json:"stream"`
		Events    []json.RawMessage `json:"events"`
		Omitted   int               `json:"malformed_omitted,omitempty"`
		Truncated bool              `json:"truncated,omitempty"`
	}{stream, events, page.Omitted, cut > 0})
}

func (a *api) readEvents(w http.ResponseWriter, r *http.Request) error {
	q, err := parseQuery(r, "after", "limit", "type", "category")
	if err != nil {
		return err
	}
	after, err := afterParam(q)
	if err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	filter, err := filterParams(q)
	if err != nil {
		return err
	}
	page, err := a.log.Read(r.Context(), after, limit, filter)
	if err != nil {
		return err
	}
	events, cut := boundEntries(page.Events)
	last := page.LastSeq
	if cut > 0 {
		last = page.Events[len(events)-1].Seq // continue right after what was sent
	}
	return writeBody(w, struct {
		Events  []json.RawMessage `json:"events"`
		LastSeq uint64            `json:"last_seq"`
	}{events, last})
}

// maxPageBytes bounds the entries of one read answer: a page stops early
// past it (it always holds at least one entry).
const maxPageBytes = 8 << 20

// boundEntries encodes entries, each on its own, up to maxPageBytes; cut
// is how many were left out. An entry that cannot be encoded (which the
// log's checks should make impossible) is shown as malformed, so that
// one bad entry never spoils the page.
func boundEntries(entries []eventlog.Event) (out []json.RawMessage, cut int) {
	out = make([]json.RawMessage, 0, len(entries))
	size := 0
	for i := range entries {
		if i > 0 && size > maxPageBytes {
			return out, len(entries) - i
		}
		b := encodeEntry(&entries[i])
		size += len(b)
		out = append(out, b)
	}
	return out, 0
}

// perClientStreams caps the live streams each client address holds
// open at Kernel.MaxStreamsPerClient.
func (a *api) perClientStreams(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		key := clientAddr(r, a.k.TrustProxy)
		if !a.live.acquire(key) {
			w.Header().Set("Retry-After", "1")
			return &apiError{kind: ErrRateLimited, msg: fmt.Sprintf(
				"too many live event streams from this address (at most %d open at once): close one, or follow several types and categories in one stream", a.k.MaxStreamsPerClient)}
		}
		defer a.live.release(key)
		return h(w, r)
	}
}

// liveEvents streams events as Server-Sent Events: first those after the
// given position (after=now: the log's last sequence), then new ones as
// they are appended. A message that is not a valid event is sent as an
// event of type "malformed". Once the stream has begun it returns nil:
// there is no status left to send, and errors end it with an error event.
func (a *api) liveEvents(w http.ResponseWriter, r *http.Request) error {
	q, err := parseQuery(r, "after", "type", "category")
	if err != nil {
		return err
	}
	var after uint64
	if q.Get("after") == "now" && len(q["after"]) == 1 {
		// Follow from the log's end, like tail -f.
		if after, err = a.log.LastSeq(r.Context()); err != nil {
			return err
		}
	} else if after, err = afterParam(q); err != nil {
		return err
	}
	// A reconnecting EventSource sends the last id it saw.
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		if after, err = strconv.ParseUint(strings.TrimSpace(v), 10, 64); err != nil || after == math.MaxUint64 {
			return invalidf("header Last-Event-ID %q is not a sequence number that another can follow", v)
		}
	}
	// Validate now: once the stream has begun there is no status to send.
	filter, err := filterParams(q)
	if err != nil {
		return err
	}

	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // long-lived, whatever the server's WriteTimeout
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // proxies must not buffer the stream
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		a.logger.Error("live stream cannot flush", "err", err)
		return nil
	}

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(a.streams, cancel) // server shutdown
	defer stop()

	// Subscribe runs in its own goroutine so that this one can also send
	// pings; all writes happen here, so they never interleave.
	events := make(chan eventlog.Event)
	done := make(chan error, 1)
	go func() {
		done <- a.log.Subscribe(ctx, after, filter, func(e eventlog.Event) error {
			select {
			case events <- e:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	ticker := time.NewTicker(pingEvery)
	defer ticker.Stop()
	for {
		var err error
		select {
		case e := <-events:
			err = writeSSE(w, e)
		case <-ticker.C:
			_, err = io.WriteString(w, ": ping\n\n")
		case err := <-done:
			if ctx.Err() == nil {
				a.sendStreamError(w, r, err)
			}
			return nil
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil { // the client is gone
			cancel()
			<-done
			return nil
		}
	}
}

// writeSSE sends one entry: its event type is the event's type, or
// "malformed" for a message that is not a valid event.
func writeSSE(w io.Writer, e eventlog.Event) error {
	b := encodeEntry(&e) // one line: Marshal compacts the data
	typ := e.Type
	if e.Malformed != nil || typ == "" {
		typ = "malformed"
	}
	_, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Seq, typ, b)
	return err
}

// sendStreamError ends a live stream with an error event, for example at
// a message in the log that is not a valid event.
func (a *api) sendStreamError(w http.ResponseWriter, r *http.Request, err error) {
	_, code, msg := errorStatus(err)
	a.logger.Error("live stream failed", "path", r.URL.Path, "err", err)
	b, _ := json.Marshal(ErrorResponse{Error: ErrorBody{Code: code, Message: msg}})
	fmt.Fprintf(w, "event: error\ndata: %s\n\n", b)
	_ = http.NewResponseController(w).Flush()
}

// encodeEntry is an entry's JSON, a malformed entry when it cannot be
// encoded.
func encodeEntry(e *eventlog.Event) []byte {
	b, err := json.Marshal(e)
	if err == nil {
		return b
	}
	m := eventlog.Event{Seq: e.Seq, Stream: e.Stream, Time: e.Time, Malformed: &eventlog.Malformed{
		Subject: eventlog.SubjectOf(e.Stream), Reason: "cannot be encoded as JSON: " + err.Error()}}
	b, _ = json.Marshal(m)
	return b
}
