package schemas

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func nested(d int) string {
	return `{"type":"object","properties":{"a":` + strings.Repeat(`{"type":"object","properties":{"a":`, d) + `{}` + strings.Repeat(`}}`, d) + `}}`
}

func wide(n int) string {
	var b strings.Builder
	b.WriteString(`{"type":"object","properties":{`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"p%d":{"type":"string"}`, i)
	}
	b.WriteString(`}}`)
	return b.String()
}

func TestScratchCompile(t *testing.T) {
	for _, d := range []int{32, 64, 128, 256, 512} {
		s := nested(d)
		t0 := time.Now()
		err := NewRegistry().Register("a.b", 1, []byte(s))
		t.Logf("depth %d: %d bytes %v err=%v", d, len(s), time.Since(t0), err)
	}
	for _, n := range []int{1000, 4000, 16000} {
		s := wide(n)
		t0 := time.Now()
		err := NewRegistry().Register("a.b", 1, []byte(s))
		t.Logf("wide %d: %d bytes %v err=%v", n, len(s), time.Since(t0), err)
	}
}
