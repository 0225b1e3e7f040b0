package eventlog

import (
	"encoding/json"
	"net/textproto"
	"testing"

	segjson "github.com/segmentio/encoding/json"
)

// FuzzValidJSON holds the fast validity check Append uses to the answers
// of encoding/json, which readers decode with.
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `[1,2,{"x":"y\u00e9"}]`, `"\ud800"`, `1e5`, `-0.0`, "{\"a\":\"\x01\"}",
		"\"\xff\"", ` {"a" : [ ] } `, `tru`, `{"a":1,}`, `01`, `1.`, `"\/"`, "\"\r\"", `{"a":{"b":[[[]]]}}`, `nul`, `""`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if std, fast := json.Valid(b), segjson.Valid(b); std != fast {
			t.Fatalf("%q: encoding/json says %v, the fast check %v", b, std, fast)
		}
	})
}

// message fills the header map directly, which is only right for keys
// already in canonical form.
func TestHeaderKeysCanonical(t *testing.T) {
	for _, k := range []string{headerType, headerSchema, headerVersion, headerCorrelate, headerCausation, headerActor, headerID, headerMsgID} {
		if c := textproto.CanonicalMIMEHeaderKey(k); c != k {
			t.Errorf("header %q is not canonical (%q)", k, c)
		}
	}
	e := Event{ID: "01J0000000000000000000000A", Stream: "a.1", Type: "a.x", Schema: 2, Version: 3,
		Meta: Metadata{CorrelationID: "c", CausationID: "d", Actor: "e"}}
	m := e.message(true, nil)
	for k, want := range map[string]string{headerID: e.ID, headerMsgID: e.ID, headerType: "a.x", headerSchema: "2", headerVersion: "3",
		headerCorrelate: "c", headerCausation: "d", headerActor: "e"} {
		if got := m.Header.Values(k); len(got) != 1 || got[0] != want {
			t.Errorf("header %s = %q; want %q", k, got, want)
		}
	}
}
