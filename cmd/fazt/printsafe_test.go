package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/verticals/analytics"
)

func TestSafe(t *testing.T) {
	for in, want := range map[string]string{
		"":                        "",
		"plain é 漢字 🙂 \\x1b":      "plain é 漢字 🙂 \\x1b",
		"a\nb\tc\rd":              `a\nb\tc\rd`,
		"\x1b[31mred\x00\x07\x7f": `\x1b[31mred\x00\x07\x7f`,
		"\u009b31m\u0085":         `\u009b31m\u0085`,
		"\u202eevil\u2066\u2069\u200e\u200f\u061c\u2028\u2029": `\u202eevil\u2066\u2069\u200e\u200f\u061c\u2028\u2029`,
		"bad\xff": `bad\xff`,
	} {
		if got := safe(in); got != want {
			t.Errorf("safe(%q) = %q, want %q", in, got, want)
		}
	}
	// jsonSafe keeps JSON the same JSON.
	v := map[string]string{"path": "/a\x1b[2J\u009b\u202e\x7fb\nc", "pretty": "é"}
	raw, _ := json.MarshalIndent(v, "", "  ")
	out := jsonSafe(raw)
	if unsafeIndex(strings.NewReplacer("\n", "", "\t", "", "\r", "").Replace(out)) >= 0 {
		t.Fatalf("jsonSafe left a raw control character: %q", out)
	}
	var back map[string]string
	if err := json.Unmarshal([]byte(out), &back); err != nil || back["path"] != v["path"] || back["pretty"] != "é" {
		t.Fatalf("jsonSafe changed the JSON: %s %v", out, err)
	}
}

// rawControl reports a character of out that could drive a terminal:
// what safe escapes, except the newlines and tabs of the layout.
func rawControl(out string) int {
	return unsafeIndex(strings.NewReplacer("\n", "", "\t", "").Replace(out))
}

// TestCLIEscapesDataFromTheServer: data holding control characters
// (written through the admin API, which stores what it is given)
// prints visibly escaped in every command's text output, and escaped
// as JSON with --json.
func TestCLIEscapesDataFromTheServer(t *testing.T) {
	s := startServer(t, t.TempDir())
	d := []string{"--data", s.dir}
	if _, _, err := fazt(t, nil, "", append([]string{"analytics", "add-site", "blog", "--domain", "blog.example.com"}, d...)...); err != nil {
		t.Fatal(err)
	}
	const evil = "/x\x1b[2J\x1b]0;owned\x07\u009b31m\u202eevil\x7f\nnext\tcol"
	pv, _ := json.Marshal(analytics.PageviewRecorded{Site: "blog", Path: evil, Referrer: "ref\x1b[5m.example", UAClass: "desktop",
		Visitor: strings.Repeat("a", 32), At: time.Now().UTC().Format(time.RFC3339), UTMSource: "src\u202e"})
	body, _ := json.Marshal(kernel.AppendRequest{Events: []kernel.AppendEvent{{Stream: "analytics.blog", Type: analytics.TypePageviewRecorded, Schema: 2, Data: pv}}})
	res := s.appendJSON(t, string(body))
	min := []string{"--min-seq", jsonUint(res.LastSeq)}

	for _, c := range []struct {
		args []string
		want string // a visible escape the output must hold
	}{
		{[]string{"analytics", "top", "blog"}, `/x\x1b[2J\x1b]0;owned\x07\u009b31m\u202eevil\x7f\nnext\tcol`},
		{[]string{"analytics", "top", "blog", "--json"}, `\u001b[2J`},
		{[]string{"analytics", "sites"}, "blog"},
		{[]string{"events", "read", "analytics.blog"}, `\u009b31m\u202eevil\u007f`},
		{[]string{"events", "read", "analytics.blog", "--json"}, `\u202e`},
		{append([]string{"query", "--projection", "analytics", `SELECT path, referrer, utm_source AS "src` + "\x1b" + `" FROM pageviews`}, min...), `\x1b[2J`},
		{append([]string{"query", "--projection", "analytics", `SELECT path FROM pageviews`, "--json"}, min...), `\u009b`},
		{[]string{"projections", "status"}, "analytics"},
		{[]string{"schema", "list"}, "analytics.pageview_recorded"},
	} {
		out, _, err := fazt(t, nil, "", append(c.args, d...)...)
		if err != nil {
			t.Errorf("%v: %v", c.args, err)
			continue
		}
		if i := rawControl(out); i >= 0 {
			t.Errorf("%v printed a raw control character at %d: %q", c.args, i, out)
		}
		if !strings.Contains(out, c.want) {
			t.Errorf("%v: output lacks %q:\n%s", c.args, c.want, out)
		}
	}

	// Tail, until it has printed the event.
	for _, asJSON := range []bool{false, true} {
		args := append([]string{"events", "tail", "--after", "0"}, d...)
		if asJSON {
			args = append(args, "--json")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var stdout, stderr syncBuffer
		done := make(chan error, 1)
		go func() { done <- run(ctx, testVerticals, args, noEnv, strings.NewReader(""), &stdout, &stderr) }()
		waitFor(t, "tail to print the page view", func() bool { return strings.Contains(stdout.String(), "evil") })
		cancel()
		if err := <-done; err != nil {
			t.Errorf("tail: %v", err)
		}
		if i := rawControl(stdout.String()); i >= 0 {
			t.Errorf("tail (json %v) printed a raw control character at %d: %q", asJSON, i, stdout.String())
		}
	}

	// An error message from the server is escaped too.
	_, _, err := fazt(t, nil, "", append([]string{"query", "--projection", "analytics", "SELECT * FROM \"no\x1b[2Jtable\""}, d...)...)
	if err == nil || rawControl(err.Error()) >= 0 || !strings.Contains(err.Error(), `no\x1b[2Jtable`) {
		t.Errorf("server error: %q; want the control character escaped", err)
	}
}
