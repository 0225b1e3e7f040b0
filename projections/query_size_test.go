package projections

import (
	"encoding/json"
	"testing"
	"time"
)

// TestJSONSize: the answer's size is counted as encoding/json writes it.
func TestJSONSize(t *testing.T) {
	for _, v := range []any{
		nil, "", "plain", "quote \" and \\ backslash", "\n\r\t\b\f", "\x00\x01\x1b\x7f", "<a href='x'>&amp;</a>",
		"é, 漢字, 🙂", "\u2028\u2029", "bad \xff\xfe utf-8", "\u202e\u0085",
		[]byte{}, []byte{0xff}, []byte{0xff, 0xfe}, []byte{0xff, 0xfe, 0xfd}, []byte{1, 2, 3, 4},
		int64(0), int64(-1234567890123), 1.5, -1e300, 0.1 + 0.2, true, time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
	} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got := jsonSize(v)
		if _, isFloat := v.(float64); isFloat {
			if got < int64(len(b)) {
				t.Errorf("jsonSize(%v) = %d, below the %d bytes of %s", v, got, len(b), b)
			}
			continue
		}
		if got != int64(len(b)) {
			t.Errorf("jsonSize(%#v) = %d; encoding/json writes %d bytes: %s", v, got, len(b), b)
		}
	}
}
