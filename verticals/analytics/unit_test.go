package analytics

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
)

func TestIsBot(t *testing.T) {
	bots := []string{
		"",
		"   ",
		googlebot,
		"Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
		"Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
		"Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
		"DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
		"Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
		"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.0; +https://openai.com/gptbot)",
		"curl/8.5.0",
		"Wget/1.21.4",
		"python-requests/2.31.0",
		"Python-urllib/3.12",
		"Go-http-client/1.1",
		"Java/17.0.2",
		"okhttp/4.12.0",
		"axios/1.6.0",
		"node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
		strings.Replace(chromeUA, "Chrome/", "HeadlessChrome/", 1),
		"Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
		"facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
		"Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
		"Twitterbot/1.0",
		"WhatsApp/2.23.20.0",
		"Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5",
		"Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
		"Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
		"Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
	}
	people := []string{
		chromeUA, iphoneUA, ipadUA, androidUA,
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
		// A phone of the brand Cubot is not a bot.
		"Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
	}
	req := func(ua string, headers ...string) *http.Request {
		r, _ := http.NewRequest("POST", "http://127.0.0.1/v1/analytics/collect", nil)
		r.Header.Set("User-Agent", ua)
		for i := 0; i+1 < len(headers); i += 2 {
			r.Header.Set(headers[i], headers[i+1])
		}
		return r
	}
	for _, ua := range bots {
		if !isBot(req(ua)) {
			t.Errorf("isBot(%q) = false; want true", ua)
		}
	}
	for _, ua := range people {
		if isBot(req(ua)) {
			t.Errorf("isBot(%q) = true; want false", ua)
		}
	}
	for _, h := range [][]string{{"Sec-Purpose", "prefetch"}, {"Sec-Purpose", "prefetch;prerender"}, {"Purpose", "prefetch"}, {"X-Moz", "prefetch"}, {"X-Purpose", "preview"}} {
		if !isBot(req(chromeUA, h...)) {
			t.Errorf("a request with %s: %s is not filtered", h[0], h[1])
		}
	}
}

func TestUAClass(t *testing.T) {
	for ua, want := range map[string]string{
		chromeUA:  Desktop,
		iphoneUA:  Mobile,
		ipadUA:    Tablet,
		androidUA: Mobile,
		"Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36":   Tablet, // Android without "Mobile"
		"Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/126.2.1 like Chrome/126.0.0.0": Tablet,
		"Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) AppleWebKit/537.36 Mobile Safari/537.36":    Mobile,
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0":                                 Desktop,
		"Opera/9.80 (J2ME/MIDP; Opera Mini/9.80 (S60; SymbOS; Opera Mobi/23.348; U; en) Presto/2.5.25 Version/10.54":       Mobile,
		"": Desktop,
	} {
		if got := uaClass(ua); got != want {
			t.Errorf("uaClass(%q) = %s; want %s", ua, got, want)
		}
	}
}

func TestSaltRotation(t *testing.T) {
	dir := t.TempDir()
	day1 := time.Date(2025, 3, 10, 0, 0, 0, 0, time.UTC)
	s := newSalts(dir)
	a, err := s.of(day1.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != saltBytes {
		t.Fatalf("salt of %d bytes; want %d", len(a), saltBytes)
	}
	// Same UTC day, in another zone and at its last second: the same salt.
	if b, _ := s.of(day1.Add(24*time.Hour - time.Second).In(time.FixedZone("UTC+5", 5*3600))); !equal(a, b) {
		t.Error("the salt changed within a UTC day")
	}
	file := filepath.Join(dir, SaltFile)
	info, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("salt file mode %v; want 0600", info.Mode().Perm())
	}
	var st saltState
	if b, _ := os.ReadFile(file); json.Unmarshal(b, &st) != nil || st.Day != "2025-03-10" || st.Salt != hex.EncodeToString(a) {
		t.Errorf("salt file holds %+v; want today's day and salt", st)
	}

	// A restart within the day reads it back.
	if b, _ := newSalts(dir).of(day1.Add(2 * time.Hour)); !equal(a, b) {
		t.Error("a restart within the day made a new salt")
	}

	// Midnight UTC: a new salt, and the file forgets the old one.
	c, err := s.of(day1.Add(24 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if equal(a, c) {
		t.Error("the salt did not change at midnight UTC")
	}
	b, _ := os.ReadFile(file)
	if strings.Contains(string(b), hex.EncodeToString(a)) || !strings.Contains(string(b), hex.EncodeToString(c)) || !strings.Contains(string(b), "2025-03-11") {
		t.Errorf("salt file after the rotation: %s", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files in the salt directory; want only %s", len(entries), SaltFile)
	}
	// A restart on a later day does not reuse the stored salt.
	if d, _ := newSalts(dir).of(day1.Add(48 * time.Hour)); equal(d, c) {
		t.Error("a restart on a new day kept the old salt")
	}
	// A corrupt file costs only a new salt.
	if err := os.WriteFile(file, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newSalts(dir).of(day1); err != nil {
		t.Errorf("corrupt salt file: %v", err)
	}
}

func TestVisitorID(t *testing.T) {
	dir := t.TempDir()
	s := newSalts(dir)
	morning := time.Date(2025, 3, 10, 8, 0, 0, 0, time.UTC)
	salt1, _ := s.of(morning)
	salt1b, _ := s.of(morning.Add(15 * time.Hour))
	salt2, _ := s.of(morning.Add(24 * time.Hour))

	a := visitorID(salt1, "blog", "198.51.100.1", chromeUA)
	if len(a) != 32 || strings.Trim(a, "0123456789abcdef") != "" {
		t.Fatalf("visitor %q is not 32 hex digits", a)
	}
	if b := visitorID(salt1b, "blog", "198.51.100.1", chromeUA); b != a {
		t.Error("the pseudonym changed within a day")
	}
	for name, other := range map[string]string{
		"next day":   visitorID(salt2, "blog", "198.51.100.1", chromeUA),
		"other site": visitorID(salt1, "shop", "198.51.100.1", chromeUA),
		"other ip":   visitorID(salt1, "blog", "198.51.100.2", chromeUA),
		"other ua":   visitorID(salt1, "blog", "198.51.100.1", iphoneUA),
		// Fields do not run into each other.
		"shifted": visitorID(salt1, "blog", "198.51.100.1"+chromeUA[:1], chromeUA[1:]),
	} {
		if other == a {
			t.Errorf("%s: same pseudonym", name)
		}
	}
}

func TestNormalisation(t *testing.T) {
	paths := map[string]string{
		"https://blog.example.com":                   "/",
		"https://blog.example.com/":                  "/",
		"https://blog.example.com/a/b?x=1#frag":      "/a/b",
		"https://blog.example.com/%C3%BCber":         "/über",
		"https://blog.example.com/%FF":               "/\uFFFD",
		"https://blog.example.com/" + long(600, "é"): "/" + long(255, "é"), // 1 + 510 bytes, cut on a character
	}
	for raw, want := range paths {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := cleanPath(u); got != want || len(got) > MaxPathBytes {
			t.Errorf("cleanPath(%.60s) = %.60q (%d bytes); want %.60q", raw, got, len(got), want)
		}
	}
	refs := map[string]string{
		"":                                     "",
		"https://www.google.com/search?q=x":    "www.google.com",
		"HTTPS://News.Example.NET.:8443/a":     "news.example.net",
		"android-app://com.google.android.gm/": "com.google.android.gm",
		"not a url":                            "",
		"/relative":                            "",
		"https://" + long(300, "a") + "/":      "",
	}
	for raw, want := range refs {
		if got := referrerHost(raw); got != want {
			t.Errorf("referrerHost(%.60q) = %q; want %q", raw, got, want)
		}
	}
	sources := map[string]string{
		"https://x.example/":                              "",
		"https://x.example/?utm_source=Newsletter":        "newsletter",
		"https://x.example/?utm_source=%20Twitter%20&a=1": "twitter",
		"https://x.example/?utm_source=" + long(100, "z"): long(64, "z"),
	}
	for raw, want := range sources {
		u, _ := url.Parse(raw)
		if got := utmSource(u); got != want {
			t.Errorf("utmSource(%.60s) = %q; want %q", raw, got, want)
		}
	}
}

func TestNewSite(t *testing.T) {
	s, err := newSite("blog", "  ", []string{"Blog.Example.com.", "blog.example.com", "localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "blog" || strings.Join(s.Domains, ",") != "blog.example.com,localhost,127.0.0.1" {
		t.Errorf("newSite: %+v", s)
	}
	for _, c := range []struct {
		id, name string
		domains  []string
		msg      string
	}{
		{"", "x", []string{"a.example"}, "site id"},
		{"-blog", "x", []string{"a.example"}, "site id"},
		{"Blog", "x", []string{"a.example"}, "site id"},
		{"a.b", "x", []string{"a.example"}, "site id"},
		{long(64, "a"), "x", []string{"a.example"}, "site id"},
		{"blog", "x", nil, "domains"},
		{"blog", "x", []string{""}, "empty"},
		{"blog", "x", []string{"https://a.example"}, "not a bare host"},
		{"blog", "x", []string{"a.example:8080"}, "not a bare host"},
		{"blog", "x", []string{"a.example/blog"}, "not a bare host"},
		{"blog", "x", []string{"a..example"}, "label"},
		{"blog", "x", []string{"-a.example"}, "label"},
		{"blog", "x", []string{"a_b.example"}, "label"},
		{"blog", "x", make([]string, MaxDomains+1), "at most"},
		{"blog", long(MaxNameBytes+1, "n"), []string{"a.example"}, "name"},
		{"blog", "a\nb", []string{"a.example"}, "name"},
	} {
		_, err := newSite(c.id, c.name, c.domains)
		if !errors.Is(err, eventlog.ErrInvalid) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("newSite(%q, %q, %q): %v; want ErrInvalid saying %q", c.id, c.name, c.domains, err, c.msg)
		}
	}
}

func TestSnippetIsSmall(t *testing.T) {
	if len(snippet) > 1024 {
		t.Errorf("script.js is %d bytes; keep it under 1 KiB", len(snippet))
	}
}

func long(n int, s string) string { return strings.Repeat(s, n) }

func equal(a, b []byte) bool { return string(a) == string(b) }
