package eventlog

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// TestJetStreamNamesMatchServer holds the JetStream header names and
// error codes the log uses, nats.go's where it has them and literals
// where it has none, to the embedded server's own.
func TestJetStreamNamesMatchServer(t *testing.T) {
	for _, h := range []struct{ ours, server string }{
		{headerMsgID, server.JSMsgId},
		{headerExpLastSeq, server.JSExpectedLastSeq},
		{headerExpLastSub, server.JSExpectedLastSubjSeq},
		{headerStream, server.JSStream},
		{headerSequence, server.JSSequence},
		{headerSubject, server.JSSubject},
		{headerStamp, server.JSTimeStamp},
		{headerLastSeq, server.JSLastSequence},
		{headerNumPending, server.JSNumPending},
		{headerBatchID, server.JSBatchId},
		{headerBatchSeq, server.JSBatchSeq},
		{headerBatchCommit, server.JSBatchCommit},
	} {
		if h.ours != h.server {
			t.Errorf("header %q: the server names it %q", h.ours, h.server)
		}
	}
	for _, c := range []struct {
		ours int
		id   server.ErrorIdentifier
	}{
		{errCodeWrongLastSeq, server.JSStreamWrongLastSequenceErrF},
		{errCodeWrongLastSeqConst, server.JSStreamWrongLastSequenceConstantErr},
		{errCodeBatchDuplicate, server.JSAtomicPublishContainsDuplicateMessageErr},
		{errCodeDupConflict, server.JSStreamDuplicateMessageConflict},
		{errCodeInsufficientResources, server.JSInsufficientResourcesErr},
		{errCodeStorageExceeded, server.JSStorageResourcesExceededErr},
		{errCodeAccountExceeded, server.JSAccountResourcesExceededErr},
	} {
		if e := server.ApiErrors[c.id]; e == nil || int(e.ErrCode) != c.ours {
			t.Errorf("error code %d: the server answers %+v", c.ours, e)
		}
	}
}
