package eventlog

import (
	"encoding/json"
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
