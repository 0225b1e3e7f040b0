package analytics

import (
	"strings"
	"testing"
)

// TestCollectCleansControlCharacters: what a public client sends is
// recorded without control or bidirectional formatting characters: the
// path and utm_source get U+FFFD in their place, and a referrer whose
// host holds one counts as direct.
func TestCollectCleansControlCharacters(t *testing.T) {
	e := startDefault(t)
	e.createSite(t, "blog", "blog.example.com")
	const at = "2025-03-10T10:00:00Z"
	one := map[string]int{TypePageviewRecorded: 1}
	// Percent-encoded: newline, ESC, NUL, DEL, CSI (C1), RLO, LINE
	// SEPARATOR, tab, invalid UTF-8, LRI.
	pageURL := `https://blog.example.com/a%0Ab%1B[31mc%00d%7Fe%C2%9Bf%E2%80%AEg%E2%80%A8h%09i%FFj%E2%81%A6k?utm_source=News%1B%5D0%3Bx%07`
	for _, sc := range []scenario{
		{name: "path and source", method: "POST", url: "/v1/analytics/collect", headers: collectHeaders("203.0.113.20", chromeUA),
			body: `{"site":"blog","url":"` + pageURL + `","referrer":"https://news.example.net/?q=%1B"}`, status: 202, events: one,
			check: wantPageview(PageviewRecorded{Site: "blog", Path: "/a\uFFFDb\uFFFD[31mc\uFFFDd\uFFFDe\uFFFDf\uFFFDg\uFFFDh\uFFFDi\uFFFDj\uFFFDk",
				Referrer: "news.example.net", UAClass: "desktop", At: at, UTMSource: "news\uFFFD]0;x\uFFFD"})},
		{name: "referrer host with a C1 control", method: "POST", url: "/v1/analytics/collect", headers: collectHeaders("203.0.113.21", chromeUA),
			body: `{"site":"blog","url":"https://blog.example.com/","referrer":"https://evil%C2%9B.example.net/"}`, status: 202, events: one,
			check: wantPageview(PageviewRecorded{Site: "blog", Path: "/", Referrer: "", UAClass: "desktop", At: at})},
		{name: "referrer host with a bidi override", method: "POST", url: "/v1/analytics/collect", headers: collectHeaders("203.0.113.22", chromeUA),
			body: `{"site":"blog","url":"https://blog.example.com/","referrer":"https://moc.%E2%80%AEexample.net/"}`, status: 202, events: one,
			check: wantPageview(PageviewRecorded{Site: "blog", Path: "/", Referrer: "", UAClass: "desktop", At: at})},
		{name: "raw control characters are not a URL", method: "POST", url: "/v1/analytics/collect", headers: collectHeaders("203.0.113.23", chromeUA),
			body: `{"site":"blog","url":"https://blog.example.com/a\u001bb","referrer":""}`, status: 400},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, e) })
	}
}

func TestCleanText(t *testing.T) {
	for in, want := range map[string]string{
		"":                                     "",
		"/plain/path é 漢字 🙂":                   "/plain/path é 漢字 🙂",
		"a\nb\rc\td\x00e\x1bf":                 "a\uFFFDb\uFFFDc\uFFFDd\uFFFDe\uFFFDf",
		"\x7f\u0080\u009f\u00a0":               "\uFFFD\uFFFD\uFFFD\u00a0",
		"\u061c\u200e\u200f":                   "\uFFFD\uFFFD\uFFFD",
		"\u202a\u202e\u2066\u2069\u2028\u2029": strings.Repeat("\uFFFD", 6),
		"bad\xff\xfe":                          "bad\uFFFD\uFFFD",
		"\u200b\u200d\ufeff":                   "\u200b\u200d\ufeff", // zero-width characters are kept
	} {
		if got := cleanText(in); got != want {
			t.Errorf("cleanText(%q) = %q, want %q", in, got, want)
		}
	}
}
