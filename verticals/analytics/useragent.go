package analytics

import (
	"net/http"
	"regexp"
	"strings"
)

// botRE matches the lower-cased user agents of crawlers, scripts,
// headless browsers, link previews and uptime monitors: most say so
// ("bot", "crawler", "spider"), the rest are named.
var botRE = regexp.MustCompile(strings.Join([]string{
	`bot`, `crawl`, `spider`, `slurp`, `scrape`, `archiver`, `fetcher`,
	`headless`, `phantomjs`, `selenium`, `puppeteer`, `playwright`, `webdriver`, `lighthouse`,
	`curl/`, `wget`, `python-requests`, `python-urllib`, `python-httpx`, `aiohttp`, `go-http-client`,
	`java/`, `okhttp`, `apache-httpclient`, `libwww`, `httpie`, `postman`, `insomnia`, `axios/`, `node-fetch`, `undici`,
	`facebookexternalhit`, `facebookcatalog`, `whatsapp`, `preview`, `embedly`, `vkshare`,
	`monitor`, `uptime`, `pingdom`, `statuscake`, `site24x7`, `gtmetrix`, `datadog`, `newrelic`,
	`zgrab`, `masscan`, `nmap`, `nuclei`, `ahrefs`, `semrush`, `mediapartners`, `google-inspectiontool`,
	`perplexity`, `bytespider`,
}, "|"))

// isBot reports whether a request is not a person viewing a page: no
// user agent, a robot's, or a browser fetching the page in advance.
func isBot(r *http.Request) bool {
	// Cubot is a brand of phones, not a robot.
	ua := strings.ReplaceAll(strings.ToLower(r.Header.Get("User-Agent")), "cubot", "")
	if strings.TrimSpace(ua) == "" || botRE.MatchString(ua) {
		return true
	}
	for _, h := range []string{"Sec-Purpose", "Purpose", "X-Purpose", "X-Moz"} {
		if v := strings.ToLower(r.Header.Get(h)); strings.Contains(v, "prefetch") || strings.Contains(v, "preview") {
			return true
		}
	}
	return false
}

// UA classes.
const (
	Desktop = "desktop"
	Mobile  = "mobile"
	Tablet  = "tablet"
)

// uaClass sorts a user agent into desktop, mobile or tablet. An Android
// device without "Mobile" is a tablet, by Android's own convention.
// iPads since iPadOS 13 say they are Macs, and count as desktops.
func uaClass(ua string) string {
	s := strings.ToLower(ua)
	has := func(words ...string) bool {
		for _, w := range words {
			if strings.Contains(s, w) {
				return true
			}
		}
		return false
	}
	switch {
	case has("ipad", "tablet", "kindle", "silk/", "playbook"):
		return Tablet
	case has("mobi", "iphone", "ipod", "windows phone", "opera mini", "blackberry"):
		return Mobile
	case has("android"):
		return Tablet
	}
	return Desktop
}
