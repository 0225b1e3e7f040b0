package eventlog

import (
	segjson "github.com/segmentio/encoding/json"

	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"
)

// Limits on what an append may carry.
const (
	MaxStreamLen     = 200     // bytes in a stream name
	MaxTypeLen       = 128     // bytes in an event type
	MaxMetaLen       = 256     // bytes in each metadata field
	MaxEventSize     = 1 << 20 // bytes of data in one event
	MaxAppendEvents  = 500     // events in one Append
	MaxAppendBytes   = 8 << 20 // bytes of data in one Append
	maxFutureIDSkew  = time.Minute
	subjectPrefix    = "fazt.ev."
	headerType       = "Fazt-Type"
	headerSchema     = "Fazt-Schema"
	headerVersion    = "Fazt-Version"
	headerCorrelate  = "Fazt-Correlation-Id"
	headerCausation  = "Fazt-Causation-Id"
	headerActor      = "Fazt-Actor"
	headerID         = "Fazt-Id"
	headerMsgID      = "Nats-Msg-Id"
	headerExpLastSub = "Nats-Expected-Last-Subject-Sequence"
	headerExpLastSeq = "Nats-Expected-Last-Sequence"
	headerSequence   = "Nats-Sequence"
	headerSubject    = "Nats-Subject"
	headerStamp      = "Nats-Time-Stamp"
)

// Event is the envelope of everything written to the log.
//
// On Append the caller sets Stream, Type, Data and optionally ID, Schema
// and Meta; the log sets Seq, Version and Time (when it stored the event).
// Events read back have every field set.
type Event struct {
	ID      string          `json:"id"`                // ULID; the log makes one when empty. Also the dedupe key.
	Stream  string          `json:"stream"`            // entity key: "category.id", e.g. "analytics.app42"
	Type    string          `json:"type"`              // e.g. "analytics.pageview_recorded"
	Schema  int             `json:"schema"`            // schema version of Data; 0 means 1
	Time    time.Time       `json:"time"`              // when the log accepted it (UTC)
	Data    json.RawMessage `json:"data"`              // a JSON value
	Meta    Metadata        `json:"meta,omitzero"`     // tracing and authorship
	Seq     uint64          `json:"seq,omitempty"`     // global position in the log, from 1, gap-free
	Version uint64          `json:"version,omitempty"` // position within its stream, from 1, gap-free
}

// Metadata travels with an event but is not part of its data.
type Metadata struct {
	CorrelationID string `json:"correlation_id,omitempty"`
	CausationID   string `json:"causation_id,omitempty"`
	Actor         string `json:"actor,omitempty"`
}

// Category is the first token of the event's stream ("analytics" for
// "analytics.app42").
func (e *Event) Category() string { return Category(e.Stream) }

// Category returns the first token of a stream name.
func Category(stream string) string {
	if i := strings.IndexByte(stream, '.'); i >= 0 {
		return stream[:i]
	}
	return stream
}

// ExpectKind says what an Expectation checks.
type ExpectKind int

const (
	// ExpectAnyVersion accepts the stream in any state (the default).
	ExpectAnyVersion ExpectKind = iota
	// ExpectNoStream requires that the stream has no events yet.
	ExpectNoStream
	// ExpectExactVersion requires the stream to be at exactly Version.
	ExpectExactVersion
)

// Expectation is a condition on one stream's version, checked atomically
// with the append.
type Expectation struct {
	Stream  string
	Kind    ExpectKind
	Version uint64
}

// ExpectVersion requires stream to be exactly at version v (0 means empty).
func ExpectVersion(stream string, v uint64) Expectation {
	if v == 0 {
		return ExpectNew(stream)
	}
	return Expectation{Stream: stream, Kind: ExpectExactVersion, Version: v}
}

// ExpectNew requires stream to have no events yet.
func ExpectNew(stream string) Expectation {
	return Expectation{Stream: stream, Kind: ExpectNoStream}
}

func (x Expectation) holds(actual uint64) bool {
	switch x.Kind {
	case ExpectNoStream:
		return actual == 0
	case ExpectExactVersion:
		return actual == x.Version
	}
	return true
}

func (x Expectation) describe() string {
	switch x.Kind {
	case ExpectNoStream:
		return "no stream"
	case ExpectExactVersion:
		return "version " + strconv.FormatUint(x.Version, 10)
	}
	return "any version"
}

// ValidateStream reports whether name is a valid stream name: two or more
// dot-separated tokens of letters, digits, '_' or '-', at most MaxStreamLen
// bytes. The first token is the category.
func ValidateStream(name string) error {
	if name == "" {
		return invalidf("stream name is empty")
	}
	if len(name) > MaxStreamLen {
		return invalidf("stream name %.40q... is %d bytes; the limit is %d", name, len(name), MaxStreamLen)
	}
	if err := checkTokens(name); err != nil {
		return invalidf("stream name %q: %v", name, err)
	}
	if !strings.Contains(name, ".") {
		return invalidf("stream name %q needs a category and an id, like \"orders.42\"", name)
	}
	return nil
}

// ValidateType reports whether t is a valid event type: dot-separated
// tokens of letters, digits, '_' or '-', at most MaxTypeLen bytes.
func ValidateType(t string) error {
	if t == "" {
		return invalidf("event type is empty")
	}
	if len(t) > MaxTypeLen {
		return invalidf("event type %.40q... is %d bytes; the limit is %d", t, len(t), MaxTypeLen)
	}
	if err := checkTokens(t); err != nil {
		return invalidf("event type %q: %v", t, err)
	}
	return nil
}

// ValidateCategory reports whether c is a valid category (one token).
func ValidateCategory(c string) error {
	if c == "" {
		return invalidf("category is empty")
	}
	if strings.Contains(c, ".") {
		return invalidf("category %q must be a single token, without '.'", c)
	}
	if err := checkTokens(c); err != nil {
		return invalidf("category %q: %v", c, err)
	}
	return nil
}

func checkTokens(s string) error {
	tok := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if tok == 0 {
				return fmt.Errorf("empty token at byte %d (no leading, trailing or double dots)", i)
			}
			tok = 0
			continue
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return fmt.Errorf("character %q at byte %d is not allowed (use letters, digits, '_', '-' and '.')", c, i)
		}
		tok++
	}
	if tok == 0 {
		return fmt.Errorf("ends with '.'")
	}
	return nil
}

// validate checks an event for Append and fills in defaults. now is used
// to reject IDs from the future.
func (e *Event) validate(i int, now time.Time) error {
	if err := ValidateStream(e.Stream); err != nil {
		return invalidf("event %d: %v", i, err)
	}
	if err := ValidateType(e.Type); err != nil {
		return invalidf("event %d: %v", i, err)
	}
	if e.Schema < 0 {
		return invalidf("event %d: schema version %d is negative", i, e.Schema)
	}
	if e.Schema == 0 {
		e.Schema = 1
	}
	if e.ID != "" {
		id, err := ulid.ParseStrict(e.ID)
		if err != nil {
			return invalidf("event %d: id %q is not a ULID: %v", i, e.ID, err)
		}
		if ulid.Time(id.Time()).After(now.Add(maxFutureIDSkew)) {
			return invalidf("event %d: id %s carries a time in the future (%s); make IDs with the current clock", i, e.ID, ulid.Time(id.Time()).UTC().Format(time.RFC3339))
		}
		e.ID = id.String() // canonical upper case
	}
	if len(e.Data) == 0 {
		e.Data = json.RawMessage("{}")
	}
	if len(e.Data) > MaxEventSize {
		return invalidf("event %d: data is %d bytes; the limit is %d", i, len(e.Data), MaxEventSize)
	}
	// segmentio's Valid gives encoding/json's answers (FuzzValidJSON
	// holds it to that) about ten times faster on kilobyte payloads.
	if !segjson.Valid(e.Data) {
		return invalidf("event %d: data is not valid JSON", i)
	}
	if err := checkMeta(i, "correlation_id", e.Meta.CorrelationID); err != nil {
		return err
	}
	if err := checkMeta(i, "causation_id", e.Meta.CausationID); err != nil {
		return err
	}
	if err := checkMeta(i, "actor", e.Meta.Actor); err != nil {
		return err
	}
	return nil
}

func checkMeta(i int, name, v string) error {
	if len(v) > MaxMetaLen {
		return invalidf("event %d: meta.%s is %d bytes; the limit is %d", i, name, len(v), MaxMetaLen)
	}
	if strings.ContainsAny(v, "\r\n") {
		return invalidf("event %d: meta.%s must not contain line breaks", i, name)
	}
	return nil
}

func subjectOf(stream string) string { return subjectPrefix + stream }

// message encodes the event as the NATS message that is stored. dedupe
// adds JetStream's Nats-Msg-Id, for IDs the caller chose (only those can
// be retried).
func (e *Event) message(dedupe bool, b *msgBuf) *nats.Msg {
	if b == nil {
		b = newMsgBuf()
	}
	// The keys are canonical already (TestHeaderKeysCanonical), so the
	// map is filled directly: Header.Set canonicalises every key again,
	// on the hot path of every append. The values share one array.
	clear(b.h)
	b.vals = b.vals[:0]
	val := func(v string) []string {
		b.vals = append(b.vals, v)
		return b.vals[len(b.vals)-1 : len(b.vals) : len(b.vals)]
	}
	h := b.h
	h[headerID] = val(e.ID)
	if dedupe {
		h[headerMsgID] = val(e.ID)
	}
	h[headerType] = val(e.Type)
	if e.Schema > 1 {
		h[headerSchema] = val(strconv.Itoa(e.Schema))
	}
	h[headerVersion] = val(strconv.FormatUint(e.Version, 10))
	if e.Meta.CorrelationID != "" {
		h[headerCorrelate] = val(e.Meta.CorrelationID)
	}
	if e.Meta.CausationID != "" {
		h[headerCausation] = val(e.Meta.CausationID)
	}
	if e.Meta.Actor != "" {
		h[headerActor] = val(e.Meta.Actor)
	}
	b.msg = nats.Msg{Subject: subjectOf(e.Stream), Header: h, Data: e.Data}
	return &b.msg
}

// msgBuf holds a message and its headers. The commit loop reuses them
// once the message is published: the connection has copied its bytes by
// then, and a message and its header map are most of what an append
// allocates.
type msgBuf struct {
	msg  nats.Msg
	h    nats.Header
	vals []string
}

func newMsgBuf() *msgBuf {
	return &msgBuf{h: make(nats.Header, 8), vals: make([]string, 0, 8)}
}

// decode turns a stored message (from a direct get or a republish) back
// into an event. It fails with ErrInvalid when the message is not a Fazt
// event, which is how events written around the kernel are caught.
func decode(subject string, h nats.Header, data []byte) (Event, error) {
	if s := h.Get(headerSubject); s != "" {
		subject = s
	}
	seq, err := strconv.ParseUint(h.Get(headerSequence), 10, 64)
	if err != nil {
		return Event{}, &DecodeError{Subject: subject, Fields: []string{"sequence"}}
	}
	stamp, err := time.Parse(time.RFC3339Nano, h.Get(headerStamp))
	if err != nil {
		stamp = time.Time{}
	}
	return decodeAt(subject, h, data, seq, stamp)
}

// decodeAt decodes a message whose sequence and stored time are known
// (a zero time is a missing one).
func decodeAt(subject string, h nats.Header, data []byte, seq uint64, stamp time.Time) (Event, error) {
	var e Event
	if !strings.HasPrefix(subject, subjectPrefix) {
		return e, &DecodeError{Seq: seq, Subject: subject, Fields: []string{"subject"}}
	}
	e.Stream = subject[len(subjectPrefix):]
	e.Seq = seq
	e.ID = h.Get(headerID)
	e.Type = h.Get(headerType)
	e.Data = json.RawMessage(data)
	e.Meta = Metadata{CorrelationID: h.Get(headerCorrelate), CausationID: h.Get(headerCausation), Actor: h.Get(headerActor)}
	var bad []string
	if _, err := ulid.ParseStrict(e.ID); err != nil {
		bad = append(bad, "id")
	}
	if ValidateType(e.Type) != nil {
		bad = append(bad, "type")
	}
	e.Schema = 1
	var err error
	if v := h.Get(headerSchema); v != "" {
		if e.Schema, err = strconv.Atoi(v); err != nil || e.Schema < 1 {
			bad = append(bad, "schema")
		}
	}
	if e.Version, err = strconv.ParseUint(h.Get(headerVersion), 10, 64); err != nil || e.Version < 1 {
		bad = append(bad, "version")
	}
	if e.Time = stamp; stamp.IsZero() {
		bad = append(bad, "time")
	}
	if len(bad) > 0 {
		return e, &DecodeError{Seq: seq, Subject: subject, Fields: bad}
	}
	return e, nil
}

// DecodeError reports a message in the log that is not a well-formed
// event, for example one published straight into NATS around the kernel.
// Readers return it with the position so that consumers can halt there.
type DecodeError struct {
	Seq     uint64
	Subject string
	Fields  []string // the envelope fields that are missing or malformed
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("message %d on %q is not a valid event: bad or missing %s", e.Seq, e.Subject, strings.Join(e.Fields, ", "))
}

// Is makes errors.Is(err, ErrMalformed) true.
func (e *DecodeError) Is(target error) bool { return target == ErrMalformed }
