package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
)

const (
	requestTimeout = time.Minute // for everything but tail
	maxSSELine     = 16 << 20    // an event line holds up to 1 MiB of data plus its envelope
)

// serverFlags say how a client command finds the server.
type serverFlags struct {
	addr  string
	token string
	data  string
}

// client talks to a running fazt server.
type client struct {
	base  string
	token string
	hc    *http.Client
}

// serverError is an error response from the server.
type serverError struct {
	Status  int
	Code    string
	Message string
}

func (e *serverError) Error() string { return fmt.Sprintf("%s (%s)", safe(e.Message), safe(e.Code)) }

// connect finds the server: flags, then FAZT_ADDR/FAZT_TOKEN, then the
// data directory's serve.json and token files.
func (a *app) connect(f serverFlags) (*client, error) {
	addr := f.addr
	if addr == "" {
		addr = a.getenv("FAZT_ADDR")
	}
	token := f.token
	if token == "" {
		token = a.getenv("FAZT_TOKEN")
	}
	dir := f.data
	if dir == "" {
		dir = a.envOr("FAZT_DATA", defaultData)
	}
	noServer := fmt.Errorf("no running server found in %s: start one with `fazt serve --data %s` or pass --addr and --token", dir, dir)
	if addr == "" {
		st, err := readState(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, noServer
		}
		if err != nil {
			return nil, err
		}
		addr = st.Addr
	}
	if token == "" {
		b, err := os.ReadFile(filepath.Join(dir, kernel.TokenFile))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no API token: pass --token, set FAZT_TOKEN, or pass --data with the server's data directory (%s has no token file)", dir)
		}
		if err != nil {
			return nil, fmt.Errorf("read token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr // FAZT_ADDR may hold serve's host:port
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("server address %q: want a URL like http://127.0.0.1:8080", addr)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	return &client{base: strings.TrimSuffix(addr, "/"), token: token, hc: &http.Client{Transport: tr}}, nil
}

func (c *client) close() { c.hc.CloseIdleConnections() }

// do sends a request and returns the response when it is a success; an
// error response becomes a *serverError.
func (c *client) do(ctx context.Context, method, path string, q url.Values, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("cannot reach the fazt server at %s (is `fazt serve` running?): %w", c.base, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var er kernel.ErrorResponse
	if json.Unmarshal(b, &er) == nil && er.Error.Code != "" {
		return nil, &serverError{Status: resp.StatusCode, Code: er.Error.Code, Message: er.Error.Message}
	}
	return nil, &serverError{Status: resp.StatusCode, Code: strconv.Itoa(resp.StatusCode), Message: fmt.Sprintf("server answered %s: %s", resp.Status, strings.TrimSpace(string(b)))}
}

// call does a request with a timeout and decodes the JSON answer into out.
// raw, when not nil, receives the answer's bytes.
func (c *client) call(ctx context.Context, method, path string, q url.Values, body, out any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := c.do(ctx, method, path, q, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return nil, fmt.Errorf("unreadable answer from the server: %w", err)
		}
	}
	return b, nil
}

func (a *app) eventsCmd() *cobra.Command {
	var sf serverFlags
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Append, read and follow events on a running server",
		Long: `The events commands talk to a running fazt server over HTTP. They find it
with --addr and --token, else FAZT_ADDR and FAZT_TOKEN, else the data
directory (--data, FAZT_DATA, ./fazt-data) that "fazt serve --data"
uses. In "events append", --data is the event's data: give the data
directory there with FAZT_DATA or --data-dir.`,
		Args: cobra.NoArgs, // an unknown subcommand is an error, not help
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	addServerFlags(cmd.PersistentFlags(), &sf)
	cmd.AddCommand(a.appendCmd(&sf), a.readCmd(&sf), a.tailCmd(&sf))
	return cmd
}

func (a *app) appendCmd(sf *serverFlags) *cobra.Command {
	var (
		ev        kernel.AppendEvent
		data      string
		expect    uint64
		expectNew bool
		asJSON    bool
	)
	cmd := &cobra.Command{
		Use:   "append --stream S --type T [--data JSON]",
		Short: "Append one event",
		Example: `  fazt events append --stream orders.1 --type orders.created --data '{"total":12}' --expect-new
  echo '{"total":12}' | fazt events append --stream orders.1 --type orders.paid --data - --expect 1`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			if data == "-" {
				b, err := io.ReadAll(io.LimitReader(a.stdin, kernel.DefaultMaxBodyBytes+1))
				if err != nil {
					return fmt.Errorf("read data from stdin: %w", err)
				}
				data = string(b)
			}
			data = strings.TrimSpace(data)
			if !json.Valid([]byte(data)) {
				return usagef(cmd, "--data is not valid JSON: %.80q", data)
			}
			ev.Data = json.RawMessage(data)
			req := kernel.AppendRequest{Events: []kernel.AppendEvent{ev}}
			if cmd.Flags().Changed("expect") {
				req.Expect = map[string]uint64{ev.Stream: expect}
			} else if expectNew {
				req.Expect = map[string]uint64{ev.Stream: 0}
			}
			c, err := a.connect(*sf)
			if err != nil {
				return err
			}
			defer c.close()
			var res eventlog.Result
			raw, err := c.call(cmd.Context(), http.MethodPost, "/v1/events", nil, req, &res)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printRaw(raw)
			}
			if len(res.Events) != 1 {
				return fmt.Errorf("the server answered %d positions for one event", len(res.Events))
			}
			p := res.Events[0]
			note := ""
			if res.Duplicate {
				note = " (already in the log: nothing written)"
			}
			_, err = fmt.Fprintf(a.stdout, "appended %s version %d at seq %d%s\n", safe(p.Stream), p.Version, p.Seq, note)
			return err
		}),
	}
	f := cmd.Flags()
	f.StringVar(&ev.Stream, "stream", "", "stream to append to, like orders.1 (required)")
	f.StringVar(&ev.Type, "type", "", "event type, like orders.created (required)")
	f.StringVar(&data, "data", "{}", "event data as JSON; - reads it from stdin")
	// --data is the event's data here; this shadows the deprecated alias.
	f.StringVar(&sf.data, "data-dir", "", "data directory of a local server, to find it (env FAZT_DATA; default ./fazt-data)")
	f.StringVar(&ev.ID, "id", "", "event ULID, to make retries idempotent (default: the server makes one)")
	f.Uint64Var(&expect, "expect", 0, "append only if the stream is at this version (0: only if it does not exist)")
	f.BoolVar(&expectNew, "expect-new", false, "append only if the stream does not exist yet")
	f.BoolVar(&asJSON, "json", false, "print the server's JSON answer")
	_ = cmd.MarkFlagRequired("stream")
	_ = cmd.MarkFlagRequired("type")
	cmd.MarkFlagsMutuallyExclusive("expect", "expect-new")
	return cmd
}

func (a *app) readCmd(sf *serverFlags) *cobra.Command {
	var (
		from   uint64
		limit  int
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "read STREAM",
		Short: "Print the events of one stream",
		Long: `Read prints one line per event: seq, version, time, type and data.
A message on the stream's subject that is not a valid event (written into
NATS around the kernel) is printed as "! seq N malformed: reason" and is
not part of the stream's versions.`,
		Args: cobra.ExactArgs(1),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			c, err := a.connect(*sf)
			if err != nil {
				return err
			}
			defer c.close()
			q := url.Values{"from": {strconv.FormatUint(from, 10)}, "limit": {strconv.Itoa(limit)}}
			var res struct {
				Stream    string           `json:"stream"`
				Events    []eventlog.Event `json:"events"`
				Omitted   int              `json:"malformed_omitted"`
				Truncated bool             `json:"truncated"`
			}
			raw, err := c.call(cmd.Context(), http.MethodGet, "/v1/streams/"+url.PathEscape(args[0]), q, nil, &res)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printRaw(raw)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 8, 2, ' ', 0)
			for _, e := range res.Events {
				if e.Malformed != nil {
					fmt.Fprintf(tw, "%s\n", malformedLine(&e))
					continue
				}
				fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\n", e.Seq, e.Version, formatTime(e.Time), safe(e.Type), jsonSafe(e.Data))
			}
			if res.Omitted > 0 {
				fmt.Fprintf(tw, "! %d more malformed messages in this page are not shown\n", res.Omitted)
			}
			if res.Truncated {
				fmt.Fprintf(tw, "! the page was cut at the server's size limit: read on with --from\n")
			}
			return tw.Flush()
		}),
	}
	f := cmd.Flags()
	f.Uint64Var(&from, "from", 1, "first version to print")
	f.IntVar(&limit, "limit", kernel.DefaultReadLimit, fmt.Sprintf("most events to print (at most %d)", kernel.MaxReadLimit))
	f.BoolVar(&asJSON, "json", false, "print the server's JSON answer")
	return cmd
}

func (a *app) tailCmd(sf *serverFlags) *cobra.Command {
	var (
		after      uint64
		types      []string
		categories []string
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Follow the log: print events as they are appended, until interrupted",
		Long: `Tail follows the log like tail -f: it prints new events as they are
appended, one line each: seq, stream, version, time, type and data.
--after N prints the events after seq N first (--after 0: the whole log).
A message that is not a valid event (written into NATS around the kernel)
is printed as "! seq N malformed: reason", and tail goes on. With --json it
prints one entry JSON per line.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			c, err := a.connect(*sf)
			if err != nil {
				return err
			}
			defer c.close()
			from := "now"
			if cmd.Flags().Changed("after") {
				from = strconv.FormatUint(after, 10)
			}
			return a.tail(cmd.Context(), c, from, types, categories, asJSON)
		}),
	}
	f := cmd.Flags()
	f.Uint64Var(&after, "after", 0, "print the events after this seq first (0: the whole log; default: only new ones)")
	f.StringArrayVar(&types, "type", nil, "only events of this type (repeatable)")
	f.StringArrayVar(&categories, "category", nil, "only events of streams in this category (repeatable)")
	f.BoolVar(&asJSON, "json", false, "print each event as one line of JSON")
	return cmd
}

// tail follows /v1/events/live from after (a seq, or "now"). It returns
// nil when ctx ends.
func (a *app) tail(ctx context.Context, c *client, after string, types, categories []string, asJSON bool) error {
	q := url.Values{"after": {after}}
	for _, t := range types {
		q.Add("type", t)
	}
	for _, cat := range categories {
		q.Add("category", cat)
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/events/live", q, nil)
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	last, _ := strconv.ParseUint(after, 10, 64)
	var event string
	var data []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), maxSSELine)
	for sc.Scan() {
		line := sc.Text()
		if line != "" {
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				event = value
			case "data":
				data = append(data, value)
			} // "" is a comment (": ping"); id is in the event itself
			continue
		}
		// A blank line dispatches the event.
		if len(data) == 0 {
			event = ""
			continue
		}
		payload := strings.Join(data, "\n")
		kind := event
		event, data = "", nil
		if kind == "error" {
			var er kernel.ErrorResponse
			if json.Unmarshal([]byte(payload), &er) != nil || er.Error.Code == "" {
				return fmt.Errorf("the server ended the event stream with an error: %s", safe(payload))
			}
			return &serverError{Code: er.Error.Code, Message: er.Error.Message}
		}
		var e eventlog.Event
		if err := json.Unmarshal([]byte(payload), &e); err != nil {
			return fmt.Errorf("unreadable event after seq %d: %w", last, err)
		}
		last = e.Seq
		switch {
		case asJSON:
			_, err = fmt.Fprintf(a.stdout, "%s\n", jsonSafe([]byte(payload)))
		case e.Malformed != nil || kind == "malformed":
			_, err = fmt.Fprintln(a.stdout, malformedLine(&e))
		default:
			_, err = fmt.Fprintf(a.stdout, "%d  %s  %d  %s  %s  %s\n", e.Seq, safe(e.Stream), e.Version, formatTime(e.Time), safe(e.Type), jsonSafe(e.Data))
		}
		if err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil // interrupted: the normal way to stop
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("event stream broke after seq %d: %w; resume with --after %d", last, err, last)
	}
	return fmt.Errorf("the server ended the event stream after seq %d; resume with --after %d", last, last)
}

// malformedLine shows an entry that is not a valid event.
func malformedLine(e *eventlog.Event) string {
	reason, subject := "not a valid event", ""
	if e.Malformed != nil {
		reason, subject = e.Malformed.Reason, e.Malformed.Subject
	}
	return fmt.Sprintf("! seq %d malformed: %s (%s, written around the kernel)", e.Seq, safe(reason), safe(subject))
}

func formatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// printRaw prints a server's JSON answer as it came, for --json (with
// the characters that could drive a terminal as JSON escapes).
func (a *app) printRaw(raw []byte) error {
	_, err := fmt.Fprintf(a.stdout, "%s\n", jsonSafe(bytes.TrimSpace(raw)))
	return err
}

// get fetches path from the server f finds and decodes the answer into
// out; raw is the answer as it came, for --json.
func (a *app) get(ctx context.Context, f serverFlags, path string, out any) (raw []byte, err error) {
	return a.once(ctx, f, http.MethodGet, path, nil, out)
}

// post sends body to path on the server f finds, ignoring the answer.
func (a *app) post(ctx context.Context, f serverFlags, path string, body any) error {
	_, err := a.once(ctx, f, http.MethodPost, path, body, nil)
	return err
}

// once is one call on a connection of its own.
func (a *app) once(ctx context.Context, f serverFlags, method, path string, body, out any) ([]byte, error) {
	c, err := a.connect(f)
	if err != nil {
		return nil, err
	}
	defer c.close()
	return c.call(ctx, method, path, nil, body, out)
}
