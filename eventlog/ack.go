package eventlog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
)

// JetStream's acknowledgements: onAck files each with the flight it
// answers, parseAck reads it (the common success without encoding/json),
// and jsError carries the JetStream error codes the finisher reacts to.

// onAck files an acknowledgement with its flight.
func (l *Log) onAck(m *nats.Msg) {
	rest, ok := strings.CutPrefix(m.Subject, l.ackPrefix)
	if !ok {
		return
	}
	rs, us, ok := strings.Cut(rest, ".")
	round, err1 := strconv.ParseUint(rs, 10, 64)
	u, err2 := strconv.Atoi(us)
	if !ok || err1 != nil || err2 != nil {
		return
	}
	if l.dropAck != nil && l.dropAck(m) {
		return
	}
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" && l.resends() {
		// No responders (no leader to take it): the flight is sent
		// again until its deadline.
		return
	}
	l.flightMu.Lock()
	defer l.flightMu.Unlock()
	f := l.inflight[round]
	if f == nil || u < 0 || u >= len(f.units) || f.acks[u].err != errNoAck {
		return // late, after the flight timed out
	}
	f.acks[u] = parseAck(m.Data, f.units[u].n)
	if f.remaining--; f.remaining == 0 {
		close(f.complete)
	}
}

// pubAck is JetStream's answer to a publish or a batch commit.
type pubAck struct {
	Stream    string `json:"stream"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Count     int    `json:"count,omitempty"`
	Error     *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error,omitempty"`
}

// JetStream error codes the committer reacts to, by the names nats.go
// exports; a literal names the server's constant where nats.go has none.
const (
	errCodeWrongLastSeq      = int(nats.JSErrCodeStreamWrongLastSequence)
	errCodeWrongLastSeqConst = int(nats.JSErrCodeStreamWrongLastSequenceConstant)
	errCodeBatchDuplicate    = 10201 // server.JSAtomicPublishContainsDuplicateMessageErr
	errCodeDupConflict       = 10158 // server.JSStreamDuplicateMessageConflict
	// Lack of storage: the server's limit, the storage tier's, the account's.
	errCodeInsufficientResources = int(nats.JSErrCodeInsufficientResourcesErr)
	errCodeStorageExceeded       = 10047 // server.JSStorageResourcesExceededErr
	errCodeAccountExceeded       = 10002 // server.JSAccountResourcesExceededErr
)

// jsError is an error answered by JetStream.
type jsError struct {
	code int
	desc string
}

func (e *jsError) Error() string {
	if e.Is(ErrInsufficientStorage) {
		return fmt.Sprintf("the event log's storage is full: JetStream refused the write (%s, error %d); free disk space or raise --store-limit, then retry", e.desc, e.code)
	}
	return fmt.Sprintf("jetstream: %s (error %d)", e.desc, e.code)
}

// Is makes the refusals for lack of storage errors.Is(err,
// ErrInsufficientStorage): JetStream refuses such a write whole.
func (e *jsError) Is(target error) bool {
	return target == ErrInsufficientStorage && (e.code == errCodeInsufficientResources || e.code == errCodeStorageExceeded || e.code == errCodeAccountExceeded)
}

func parseAck(data []byte, n int) unitAck {
	if a, ok := parseAckFast(data, n); ok {
		return a
	}
	var ack pubAck
	if err := json.Unmarshal(data, &ack); err != nil {
		return unitAck{err: fmt.Errorf("%w: unreadable acknowledgement %q", ErrUnavailable, data)}
	}
	if ack.Error != nil {
		return unitAck{err: &jsError{code: ack.Error.ErrCode, desc: ack.Error.Description}}
	}
	if n > 1 && ack.Count != n && !ack.Duplicate {
		return unitAck{err: fmt.Errorf("%w: batch of %d acknowledged with count %d", ErrUnavailable, n, ack.Count)}
	}
	return unitAck{seq: ack.Seq, duplicate: ack.Duplicate}
}

// parseAckFast reads the common successful acknowledgement,
// {"stream":"S","seq":N} or, for a batch, {...,"batch":"B","count":C},
// without the cost of encoding/json; anything else goes the slow way.
func parseAckFast(data []byte, n int) (unitAck, bool) {
	if bytes.Contains(data, []byte(`"error"`)) || bytes.Contains(data, []byte(`"duplicate"`)) {
		return unitAck{}, false
	}
	seq, ok := jsonUint(data, `"seq":`)
	if !ok {
		return unitAck{}, false
	}
	if n > 1 {
		if c, ok := jsonUint(data, `"count":`); !ok || c != uint64(n) {
			return unitAck{}, false
		}
	}
	return unitAck{seq: seq}, true
}

func jsonUint(data []byte, key string) (uint64, bool) {
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := data[i+len(key):]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	if j == 0 || j > 19 {
		return 0, false
	}
	v, err := strconv.ParseUint(string(rest[:j]), 10, 64)
	return v, err == nil
}
