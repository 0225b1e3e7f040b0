package eventlog

import (
	segjson "github.com/segmentio/encoding/json"

	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
)

// Limits on what an append may carry.
const (
	MaxStreamLen    = 200     // bytes in a stream name
	MaxTypeLen      = 128     // bytes in an event type
	MaxMetaLen      = 256     // bytes in each metadata field
	MaxEventSize    = 1 << 20 // bytes of data in one event
	MaxAppendEvents = 500     // events in one Append
	MaxAppendBytes  = 8 << 20 // bytes of data in one Append
	maxFutureIDSkew = time.Minute
	subjectPrefix   = "fazt.ev."
	headerType      = "Fazt-Type"
	headerSchema    = "Fazt-Schema"
	headerVersion   = "Fazt-Version"
	headerCorrelate = "Fazt-Correlation-Id"
	headerCausation = "Fazt-Causation-Id"
	headerActor     = "Fazt-Actor"
	headerID        = "Fazt-Id"
)

// JetStream's headers, by the names nats.go exports; a literal names the
// server's constant where nats.go has none.
const (
	headerMsgID       = jetstream.MsgIDHeader
	headerExpLastSub  = jetstream.ExpectedLastSubjSeqHeader
	headerExpLastSeq  = jetstream.ExpectedLastSeqHeader
	headerStream      = jetstream.StreamHeader
	headerSequence    = jetstream.SequenceHeader
	headerSubject     = jetstream.SubjectHeader
	headerStamp       = jetstream.TimeStampHeaer // sic, nats.go's spelling
	headerLastSeq     = jetstream.LastSequenceHeader
	headerNumPending  = "Nats-Num-Pending"    // server.JSNumPending
	headerBatchID     = "Nats-Batch-Id"       // server.JSBatchId
	headerBatchSeq    = "Nats-Batch-Sequence" // server.JSBatchSeq
	headerBatchCommit = "Nats-Batch-Commit"   // server.JSBatchCommit
	// A status answer's headers: neither nats.go nor the server exports
	// a name for them.
	headerStatus      = "Status"
	headerDescription = "Description"
)

// Event is the envelope of everything written to the log.
//
// On Append the caller sets Stream, Type, Data and optionally ID, Schema
// and Meta; the log sets Seq, Version and Time (when it stored the event).
// Events read back have every field set.
//
// A reader also returns the messages of the log that are not valid events
// (written around the kernel) as entries with Malformed set: only Seq,
// Stream and Time are then meaningful, and Malformed says what is wrong
// and holds the raw message. Check Malformed (or Err) before using an
// event read from the log.
type Event struct {
	ID      string          `json:"id,omitempty"`      // ULID; the log makes one when empty. Also the dedupe key.
	Stream  string          `json:"stream"`            // entity key: "category.id", e.g. "analytics.app42"
	Type    string          `json:"type,omitempty"`    // e.g. "analytics.pageview_recorded"
	Schema  int             `json:"schema,omitempty"`  // schema version of Data; 0 means 1
	Time    time.Time       `json:"time"`              // when the log accepted it (UTC)
	Data    json.RawMessage `json:"data,omitempty"`    // a JSON value
	Meta    Metadata        `json:"meta,omitzero"`     // tracing and authorship
	Seq     uint64          `json:"seq,omitempty"`     // global position in the log, from 1, gap-free
	Version uint64          `json:"version,omitempty"` // position within its stream, from 1, gap-free
	// Malformed is set on an entry that is not a valid event; nil on events.
	Malformed *Malformed `json:"malformed,omitempty"`
}

// Malformed describes a message in the log that is not a valid event,
// for example one published into NATS around the kernel. Readers return
// it in place of the event, at its sequence, so that clients can show it
// and go on; projections halt at it until it is skipped.
type Malformed struct {
	Subject string `json:"subject"` // the message's NATS subject
	Reason  string `json:"reason"`  // what is wrong, for people
	// Fields are the envelope fields that are missing or bad ("id",
	// "type", "version", "data", ...), for programs.
	Fields []string `json:"fields,omitempty"`
	// Headers and Data are the message as stored, each cut at
	// MaxMalformedBytes (Truncated says so). Data is base64 in JSON.
	Headers   map[string][]string `json:"headers,omitempty"`
	Data      []byte              `json:"data_base64,omitempty"`
	Truncated bool                `json:"truncated,omitempty"`
}

// MaxMalformedBytes bounds the raw headers and the raw data that a
// malformed entry carries, each.
const MaxMalformedBytes = 4096

// Err returns a *DecodeError (ErrMalformed) when e is a malformed entry,
// nil when it is an event.
func (e *Event) Err() error {
	if e.Malformed == nil {
		return nil
	}
	return &DecodeError{Seq: e.Seq, Subject: e.Malformed.Subject, Fields: e.Malformed.Fields, Reason: e.Malformed.Reason}
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
	// JSON decoders repair invalid UTF-8 (so a schema would validate a
	// repaired copy) while the log would store the raw bytes.
	if at := invalidUTF8(e.Data); at >= 0 {
		return invalidf("event %d: data is not valid UTF-8 at byte %d", i, at)
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

// checkMeta refuses a metadata value that would not come back byte for
// byte from the NATS header that stores it: headers are lines (no line
// breaks or other control characters), their values are trimmed (no
// leading or trailing space), and JSON shows only valid UTF-8.
func checkMeta(i int, name, v string) error {
	if len(v) > MaxMetaLen {
		return invalidf("event %d: meta.%s is %d bytes; the limit is %d", i, name, len(v), MaxMetaLen)
	}
	if at := invalidUTF8([]byte(v)); at >= 0 {
		return invalidf("event %d: meta.%s is not valid UTF-8 at byte %d", i, name, at)
	}
	for j := 0; j < len(v); j++ {
		if c := v[j]; c < 0x20 || c == 0x7f {
			return invalidf("event %d: meta.%s has the control character %q at byte %d; metadata is one line of text", i, name, c, j)
		}
	}
	if v != "" && (v[0] == ' ' || v[len(v)-1] == ' ') {
		return invalidf("event %d: meta.%s begins or ends with a space, which a NATS header would not keep; trim it", i, name)
	}
	return nil
}

// invalidUTF8 returns the offset of the first byte of b that is not
// valid UTF-8, or -1.
func invalidUTF8(b []byte) int {
	if utf8.Valid(b) {
		return -1
	}
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return -1
}

// AllSubjects is the NATS subject filter of the whole log: every event is
// stored on a subject it matches.
const AllSubjects = subjectPrefix + ">"

// SubjectOf returns the NATS subject a stream's events are stored on.
func SubjectOf(stream string) string { return subjectPrefix + stream }

// StreamOf returns the stream an event's subject names, and true. For a
// subject outside the log it returns the subject unchanged and false, as
// strings.CutPrefix does. The name is not validated (ValidateStream).
func StreamOf(subject string) (string, bool) { return strings.CutPrefix(subject, subjectPrefix) }

// CategorySubject returns the NATS subject filter of a category's events:
// those of every stream "<category>.<id>".
func CategorySubject(category string) string { return subjectPrefix + category + ".>" }

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
	b.msg = nats.Msg{Subject: SubjectOf(e.Stream), Header: h, Data: e.Data}
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

// The headers JetStream adds to every message of a direct get. A
// publisher may store headers of the same names in its message: the
// server appends its own after them, so only the last value of each is
// JetStream's (the rest are data, never metadata).
var directHeaders = []string{headerStream, headerSubject, headerSequence, headerStamp, headerNumPending, headerLastSeq}

// lastValue returns the last value of a header, "" when it has none.
func lastValue(h nats.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

// directSeq is the stream sequence of a message from a direct get, 0
// when it has none (a status message, not a stored one).
func directSeq(m *nats.Msg) uint64 {
	seq, _ := strconv.ParseUint(lastValue(m.Header, headerSequence), 10, 64)
	return seq
}

// decode turns a message from a direct get into an entry: an event, or a
// malformed entry when the message is not a valid event. Its sequence,
// subject and time are JetStream's (the last values of the headers the
// server adds), whatever the message stored.
func decode(m *nats.Msg) Event {
	stamp, _ := time.Parse(time.RFC3339Nano, lastValue(m.Header, headerStamp))
	return decodeAt(lastValue(m.Header, headerSubject), m.Header, m.Data, directSeq(m), stamp, true)
}

// one returns the value of a header that must appear exactly once.
func one(h nats.Header, key string) (string, bool) {
	v := h[key]
	if len(v) != 1 {
		return "", false
	}
	return v[0], true
}

// optional returns the value of a header that may appear at most once.
func optional(h nats.Header, key string) (string, bool) {
	v := h[key]
	switch len(v) {
	case 0:
		return "", true
	case 1:
		return v[0], true
	}
	return "", false
}

// decodeAt decodes a message whose sequence and stored time are known
// (a zero time is a missing one). direct says the headers came from a
// direct get, with JetStream's own appended.
func decodeAt(subject string, h nats.Header, data []byte, seq uint64, stamp time.Time, direct bool) Event {
	e := Event{Seq: seq, Time: stamp}
	var bad []string
	stream, ok := StreamOf(subject)
	if ok {
		e.Stream = stream
	}
	if !ok || ValidateStream(stream) != nil {
		bad = append(bad, "subject")
	}
	var id, typ string
	if id, ok = one(h, headerID); !ok || !validULID(id) {
		bad = append(bad, "id")
	}
	if typ, ok = one(h, headerType); !ok || ValidateType(typ) != nil {
		bad = append(bad, "type")
	}
	schema := 1
	if v, ok := optional(h, headerSchema); !ok {
		bad = append(bad, "schema")
	} else if v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 1 {
			bad = append(bad, "schema")
		} else {
			schema = n
		}
	}
	var version uint64
	if v, ok := one(h, headerVersion); !ok {
		bad = append(bad, "version")
	} else if n, err := strconv.ParseUint(v, 10, 64); err != nil || n < 1 || n == math.MaxUint64 {
		// No version can follow the largest: it would wrap to 0.
		bad = append(bad, "version")
	} else {
		version = n
	}
	corr, ok1 := optional(h, headerCorrelate)
	caus, ok2 := optional(h, headerCausation)
	actor, ok3 := optional(h, headerActor)
	if !ok1 || !ok2 || !ok3 {
		bad = append(bad, "meta")
	}
	if stamp.IsZero() {
		bad = append(bad, "time")
	}
	// The log stores only JSON; anything else was written around it.
	if !segjson.Valid(data) {
		bad = append(bad, "data")
	}
	if len(bad) > 0 {
		e.Malformed = malformedOf(subject, h, data, direct, bad, "bad or missing "+strings.Join(bad, ", "))
		return e
	}
	e.ID, e.Type, e.Schema, e.Version = id, typ, schema, version
	e.Data = json.RawMessage(data)
	e.Meta = Metadata{CorrelationID: corr, CausationID: caus, Actor: actor}
	return e
}

func validULID(s string) bool {
	_, err := ulid.ParseStrict(s)
	return err == nil
}

// malformedOf describes a message that is not a valid event, with its
// headers as stored (without those a direct get adds) and its data, each
// cut at MaxMalformedBytes.
func malformedOf(subject string, h nats.Header, data []byte, direct bool, fields []string, reason string) *Malformed {
	m := &Malformed{Subject: subject, Reason: reason, Fields: fields}
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	size := 0
	for _, k := range keys {
		vs := h[k]
		if direct && slices.Contains(directHeaders, k) {
			vs = vs[:len(vs)-1] // JetStream's, not the message's
		}
		for _, v := range vs {
			if size += len(k) + len(v) + 4; size > MaxMalformedBytes {
				m.Truncated = true
				break
			}
			if m.Headers == nil {
				m.Headers = map[string][]string{}
			}
			m.Headers[k] = append(m.Headers[k], v)
		}
	}
	if len(data) > MaxMalformedBytes {
		data, m.Truncated = data[:MaxMalformedBytes], true
	}
	if len(data) > 0 {
		m.Data = slices.Clone(data)
	}
	return m
}

// DecodeError reports a message in the log that is not a well-formed
// event, for example one published straight into NATS around the kernel.
// Event.Err returns it for a malformed entry, so that consumers that must
// not go past one (projections) can halt there.
type DecodeError struct {
	Seq     uint64
	Subject string
	Fields  []string // the envelope fields that are missing or malformed
	Reason  string   // what is wrong
}

func (e *DecodeError) Error() string {
	reason := e.Reason
	if reason == "" {
		reason = "bad or missing " + strings.Join(e.Fields, ", ")
	}
	return fmt.Sprintf("message %d on %q is not a valid event: %s", e.Seq, e.Subject, reason)
}

// Is makes errors.Is(err, ErrMalformed) true.
func (e *DecodeError) Is(target error) bool { return target == ErrMalformed }
