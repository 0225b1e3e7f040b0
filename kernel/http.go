package kernel

import (
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Bounds of reads: events per page by default and at most.
const (
	DefaultReadLimit = 100
	MaxReadLimit     = 1000
)

// Errors of the HTTP layer itself; errorStatus maps them with the log's.
var (
	errUnauthorized     = errors.New("unauthorized")
	errMethodNotAllowed = errors.New("method not allowed")
)

// apiError is an error with a message for the client, of a kind that
// errorStatus knows (eventlog.ErrInvalid, eventlog.ErrNotFound, ...).
type apiError struct {
	kind error
	msg  string
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.kind }

func invalidf(format string, args ...any) error {
	return &apiError{kind: eventlog.ErrInvalid, msg: fmt.Sprintf(format, args...)}
}

// api is the kernel's HTTP handler: the admin API, the routes verticals
// add, and the open probes.
type api struct {
	k      *Kernel
	log    *eventlog.Log
	reg    *schemas.Registry
	logger *slog.Logger
	token  []byte
	mux    *http.ServeMux
	// public holds the patterns of public routes: no token, rate limited.
	public map[string]bool
	// bodyLimits holds the admin routes' own body limits (HandleBody).
	bodyLimits map[string]int64
	// hosts, when set (Kernel.RouteHost), picks a handler by Host before
	// the routes above see the request.
	hosts   func(*http.Request) http.Handler
	limiter *limiter
	// live counts each client's open live streams.
	live    *perClient
	metrics *prometheus.Registry
	httpm   httpMetrics
	// open is true while the log is open and the server not stopping.
	open atomic.Bool
	// streams is cancelled at shutdown to end live streams.
	streams     context.Context
	stopStreams context.CancelFunc
}

func newAPI(k *Kernel) *api {
	a := &api{k: k, log: k.log, reg: k.reg, logger: k.Logger, mux: http.NewServeMux(), public: map[string]bool{},
		limiter: newLimiter(k.PublicRate, k.PublicBurst), live: newPerClient(k.MaxStreamsPerClient)}
	a.streams, a.stopStreams = context.WithCancel(context.Background())
	a.mux.HandleFunc("GET /healthz", a.healthz)
	a.mux.HandleFunc("GET /readyz", a.readyz)
	a.mux.HandleFunc("GET /readyz/writes", a.readyzWrites)
	a.registerEventRoutes()
	a.registerSchemaRoutes()
	a.handle("GET /v1/doctor", a.doctor)
	a.registerProjectionRoutes()
	a.registerReactorRoutes()
	a.httpm = newHTTPMetrics()
	a.metrics = a.newMetricsRegistry()
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics, promhttp.HandlerOpts{}))
	return a
}

// handlerFunc is a kernel route's handler: an error it returns, before
// it has written anything, is answered by fail with the error's status.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// handle adds one of the kernel's own routes.
func (a *api) handle(pattern string, h handlerFunc) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			a.fail(w, r, err)
		}
	})
}

// route adds a vertical's route; ServeMux panics on a conflict.
func (a *api) route(pattern string, h http.Handler, public bool) {
	a.mux.Handle(pattern, h)
	if public {
		a.public[pattern] = true
	}
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if a.hosts != nil {
		if h := a.hosts(r); h != nil {
			a.serveHost(w, r, h, start)
			return
		}
	}
	_, pattern := a.mux.Handler(r)
	sw := &statusWriter{ResponseWriter: w}
	defer func() { a.httpm.observe(pattern, cmp.Or(sw.status, http.StatusOK), time.Since(start)) }()
	a.serve(sw, r, pattern)
}

func (a *api) serve(w http.ResponseWriter, r *http.Request, pattern string) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	a.limitBodyTime(w, r)
	if a.public[pattern] {
		a.servePublic(w, r)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if r.URL.Path == "/v1" || strings.HasPrefix(r.URL.Path, "/v1/") || r.URL.Path == "/metrics" {
		// Before routing, so that callers without the token learn nothing
		// about which admin routes exist.
		if !a.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fazt"`)
			a.fail(w, r, &apiError{kind: errUnauthorized, msg: "missing or wrong API token: send the header Authorization: Bearer <token>"})
			return
		}
	}
	if pattern == "" {
		a.noRoute(w, r)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/v1/") && !a.open.Load() {
		a.fail(w, r, &apiError{kind: eventlog.ErrUnavailable, msg: "the event log is not open: the server is starting or stopping"})
		return
	}
	limit := a.k.MaxBodyBytes
	if l, ok := a.bodyLimits[pattern]; ok {
		limit = l
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	a.mux.ServeHTTP(w, r)
}

// serveHost serves a request RouteHost's function took: no token, the
// public body limit, and one metrics label for all of them.
func (a *api) serveHost(w http.ResponseWriter, r *http.Request, h http.Handler, start time.Time) {
	sw := &statusWriter{ResponseWriter: w}
	defer func() { a.httpm.observe(HostRoute, cmp.Or(sw.status, http.StatusOK), time.Since(start)) }()
	sw.Header().Set("X-Content-Type-Options", "nosniff")
	a.limitBodyTime(sw, r)
	r.Body = http.MaxBytesReader(sw, r.Body, a.k.PublicBodyBytes)
	h.ServeHTTP(sw, r)
}

// servePublic serves a public route: rate limited per client, with a
// small body limit.
func (a *api) servePublic(w http.ResponseWriter, r *http.Request) {
	if !a.limiter.allow(clientAddr(r, a.k.TrustProxy)) {
		w.Header().Set("Retry-After", "1")
		a.fail(w, r, &apiError{kind: ErrRateLimited, msg: "too many requests from this address: slow down"})
		return
	}
	if !a.open.Load() {
		a.fail(w, r, &apiError{kind: eventlog.ErrUnavailable, msg: "the server is starting or stopping"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, a.k.PublicBodyBytes)
	a.mux.ServeHTTP(w, r)
}

// limitBodyTime gives a request with a body Kernel.BodyTimeout to send
// it: the connection's read deadline, lifted again once the body has
// been read to its end (net/http lifts it too, when it starts watching
// the connection for the client going away), so that a handler
// answering for longer is not cut off: a read failing on the connection
// would cancel the request. Requests without a body get no deadline.
func (a *api) limitBodyTime(w http.ResponseWriter, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return
	}
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(a.k.BodyTimeout)) != nil {
		return // not a connection of the kernel's server
	}
	r.Body = &timedBody{ReadCloser: r.Body, rc: rc, limit: a.k.BodyTimeout}
}

// timedBody lifts the read deadline at the body's end, and turns the
// deadline's error into a *BodyTimeoutError.
type timedBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	limit  time.Duration
	lifted bool
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case errors.Is(err, io.EOF) && !b.lifted:
		b.lifted = true
		_ = b.rc.SetReadDeadline(time.Time{})
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = &BodyTimeoutError{Limit: b.limit}
	}
	return n, err
}

// BodyTimeoutError: a request's body did not arrive within
// Kernel.BodyTimeout. HTTP 408 with code "timeout".
type BodyTimeoutError struct{ Limit time.Duration }

func (e *BodyTimeoutError) Error() string {
	return fmt.Sprintf("the request body did not arrive within %v: send it at once, or smaller", e.Limit)
}

// noRoute answers in JSON what the mux would answer in plain text: 404,
// or 405 with the Allow header.
func (a *api) noRoute(w http.ResponseWriter, r *http.Request) {
	h, _ := a.mux.Handler(r)
	rec := &headerRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	if rec.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", rec.header.Get("Allow"))
		a.fail(w, r, &apiError{kind: errMethodNotAllowed, msg: fmt.Sprintf("method %s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, rec.header.Get("Allow"))})
		return
	}
	a.fail(w, r, &apiError{kind: eventlog.ErrNotFound, msg: fmt.Sprintf("no route %s %s", r.Method, r.URL.Path)})
}

// headerRecorder keeps the status and headers of a response, dropping
// the body.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header         { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (h *headerRecorder) WriteHeader(status int)      { h.status = status }

func (a *api) authorized(r *http.Request) bool {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || len(a.token) == 0 {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), a.token) == 1
}

func (a *api) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz is 200 when the node is ready (Kernel.Readiness), otherwise 503
// with what is missing.
func (a *api) readyz(w http.ResponseWriter, r *http.Request) {
	rd := a.k.Readiness()
	code := http.StatusOK
	if !rd.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, rd)
}

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody says what went wrong: a stable code and a message for people.
type ErrorBody struct {
	Code          string  `json:"code"`
	Message       string  `json:"message"`
	Stream        string  `json:"stream,omitempty"`
	ActualVersion *uint64 `json:"actual_version,omitempty"`
}

// errorStatus is the one place that maps errors to HTTP statuses and
// error codes.
func errorStatus(err error) (status int, code, message string) {
	var (
		tooLarge *http.MaxBytesError
		slowBody *BodyTimeoutError
	)
	switch {
	case errors.As(err, &slowBody):
		return http.StatusRequestTimeout, "timeout", slowBody.Error()
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body is larger than the limit of %s", sizeString(tooLarge.Limit))
	case errors.Is(err, projections.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "too_large", err.Error()
	case errors.Is(err, ErrRateLimited):
		return http.StatusTooManyRequests, "rate_limited", err.Error()
	case errors.Is(err, ErrRefused):
		return http.StatusConflict, "refused", err.Error()
	case errors.Is(err, eventlog.ErrMalformed):
		// The log holds a message that is not an event: not the caller's fault.
		return http.StatusInternalServerError, "malformed_log", err.Error()
	case errors.Is(err, errUnauthorized):
		return http.StatusUnauthorized, "unauthorized", err.Error()
	case errors.Is(err, eventlog.ErrInvalid):
		return http.StatusBadRequest, "invalid", err.Error()
	case errors.Is(err, eventlog.ErrNotFound):
		return http.StatusNotFound, "not_found", err.Error()
	case errors.Is(err, errMethodNotAllowed):
		return http.StatusMethodNotAllowed, "method_not_allowed", err.Error()
	case errors.Is(err, schemas.ErrEDDViolation):
		return http.StatusUnprocessableEntity, "edd_violation", err.Error()
	case errors.Is(err, eventlog.ErrConflict):
		return http.StatusConflict, "conflict", err.Error()
	case errors.Is(err, eventlog.ErrInsufficientStorage):
		return http.StatusInsufficientStorage, "insufficient_storage", err.Error()
	case errors.Is(err, eventlog.ErrUnavailable), errors.Is(err, eventlog.ErrClosed),
		errors.Is(err, projections.ErrHalted), errors.Is(err, projections.ErrClosed),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, "unavailable", err.Error()
	}
	return http.StatusInternalServerError, "internal", err.Error()
}

// fail writes err as a JSON error response.
func (a *api) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg := errorStatus(err)
	body := ErrorBody{Code: code, Message: msg}
	var conflict *eventlog.ConflictError
	if errors.As(err, &conflict) {
		body.Stream = conflict.Stream
		body.ActualVersion = &conflict.Actual
	}
	if status >= 500 && !errors.Is(err, context.Canceled) {
		a.logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	var (
		tooLarge *http.MaxBytesError
		slowBody *BodyTimeoutError
	)
	if errors.As(err, &tooLarge) || errors.As(err, &slowBody) {
		// The rest of the body is not read; do not let the client keep
		// sending it on this connection.
		w.Header().Set("Connection", "close")
	}
	writeJSON(w, status, ErrorResponse{Error: body})
}

// writeJSON answers v as JSON with status. It encodes v before it sends
// the status, so that an answer is never a success with a body that
// could not be written: a value that cannot be encoded is a 500.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(ErrorResponse{Error: ErrorBody{Code: "internal", Message: "the answer could not be encoded as JSON: " + err.Error()}})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// writeBody answers v with 200, or returns the error, having written
// nothing, when v cannot be encoded.
func writeBody(w http.ResponseWriter, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode the answer: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(b, '\n'))
	return nil
}

// decodeBody reads one JSON object from the request body into v, strictly:
// no unknown fields, nothing after it.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body) // limited by ServeHTTP
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var (
			tooLarge *http.MaxBytesError
			slowBody *BodyTimeoutError
		)
		if errors.As(err, &tooLarge) || errors.As(err, &slowBody) {
			return err
		}
		return invalidf("request body has more after the JSON object")
	}
	return nil
}

func jsonError(err error) error {
	var (
		tooLarge *http.MaxBytesError
		slowBody *BodyTimeoutError
		syntax   *json.SyntaxError
		typ      *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &tooLarge), errors.As(err, &slowBody):
		return err
	case errors.Is(err, io.EOF):
		return invalidf("request body is empty: want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalidf("request body is not valid JSON: it ends too soon")
	case errors.As(err, &syntax):
		return invalidf("request body is not valid JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return invalidf("request body must be a JSON object, not %s", typ.Value)
		}
		return invalidf("request body: field %q must be %s, not %s", typ.Field, typ.Type, typ.Value)
	}
	return invalidf("request body: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// parseQuery returns the query, refusing parameters the route does not
// know so that a typo ("limt") is not silently ignored.
func parseQuery(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, invalidf("malformed query string: %v", err)
	}
	for name := range q {
		if !slices.Contains(allowed, name) {
			if len(allowed) == 0 {
				return nil, invalidf("unknown query parameter %q: this route takes none", name)
			}
			return nil, invalidf("unknown query parameter %q: this route takes %s", name, strings.Join(allowed, ", "))
		}
	}
	return q, nil
}

func checkQuery(r *http.Request) error {
	_, err := parseQuery(r)
	return err
}

// uintParam reads a non-repeated, non-negative integer parameter.
func uintParam(q url.Values, name string, def uint64) (uint64, error) {
	vs, ok := q[name]
	if !ok {
		return def, nil
	}
	if len(vs) > 1 {
		return 0, invalidf("query parameter %s is given %d times; give it once", name, len(vs))
	}
	n, err := strconv.ParseUint(vs[0], 10, 64)
	if err != nil {
		return 0, invalidf("query parameter %s=%q is not a non-negative integer", name, vs[0])
	}
	return n, nil
}

// afterParam reads the after parameter: a sequence, one that another
// can follow (after+1 must not wrap to the start of the log).
func afterParam(q url.Values) (uint64, error) {
	n, err := uintParam(q, "after", 0)
	if err == nil && n == math.MaxUint64 {
		return 0, invalidf("query parameter after=%d: no sequence can follow it", n)
	}
	return n, err
}

func limitParam(q url.Values) (int, error) {
	n, err := uintParam(q, "limit", DefaultReadLimit)
	if err != nil {
		return 0, err
	}
	if n < 1 || n > MaxReadLimit {
		return 0, invalidf("query parameter limit=%d is out of range: want 1 to %d", n, MaxReadLimit)
	}
	return int(n), nil
}

// filterParams reads the repeatable type and category parameters.
func filterParams(q url.Values) (eventlog.Filter, error) {
	f := eventlog.Filter{Types: q["type"], Categories: q["category"]}
	for _, t := range f.Types {
		if err := eventlog.ValidateType(t); err != nil {
			return f, fmt.Errorf("query parameter type: %w", err)
		}
	}
	for _, c := range f.Categories {
		if err := eventlog.ValidateCategory(c); err != nil {
			return f, fmt.Errorf("query parameter category: %w", err)
		}
	}
	return f, nil
}
