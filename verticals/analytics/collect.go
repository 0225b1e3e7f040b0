package analytics

import (
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
)

// hit is the body the snippet sends to POST /v1/analytics/collect.
type hit struct {
	Site     string `json:"site"`
	URL      string `json:"url"`
	Referrer string `json:"referrer"`
}

// cors lets pages on any origin send hits: the site check, not the
// origin, keeps other sites' data out.
func cors(w http.ResponseWriter) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
}

// preflight is OPTIONS /v1/analytics/collect, the browser's CORS check
// before a fetch with a JSON body.
func (v *vertical) preflight(w http.ResponseWriter, r *http.Request) {
	cors(w)
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Content-Type")
	h.Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
}

// collect is POST /v1/analytics/collect: one page view. It answers 202
// without a body when the view is recorded, and also when it comes from
// a bot, which is not recorded and not told so.
func (v *vertical) collect(w http.ResponseWriter, r *http.Request) {
	cors(w)
	if _, err := kernel.CheckQuery(r); err != nil {
		v.k.WriteError(w, r, err)
		return
	}
	// navigator.sendBeacon sends a string as text/plain, which also
	// spares the browser a preflight.
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/json" && mt != "text/plain" {
		v.k.WriteError(w, r, kernel.Invalidf("Content-Type %q: send the hit as application/json or text/plain", r.Header.Get("Content-Type")))
		return
	}
	var h hit
	if err := kernel.DecodeJSON(w, r, &h); err != nil {
		v.k.WriteError(w, r, err)
		return
	}
	now := v.cfg.Now().UTC()
	pv, err := v.pageview(r, h)
	if err != nil {
		v.k.WriteError(w, r, err)
		return
	}
	// After the checks, so that a bot learns nothing from the answer.
	if isBot(r) {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	salt, err := v.salts.of(now)
	if err != nil {
		v.k.WriteError(w, r, err)
		return
	}
	pv.UAClass = uaClass(r.UserAgent())
	pv.Visitor = visitorID(salt, pv.Site, v.k.ClientIP(r), r.UserAgent())
	pv.At = now.Format(time.RFC3339Nano)
	if v.release < 2 {
		pv.UTMSource = "" // schema 1 has no such field
	}
	data, err := json.Marshal(pv)
	if err != nil {
		v.k.WriteError(w, r, err)
		return
	}
	ev := eventlog.Event{Stream: SiteStream(pv.Site), Type: TypePageviewRecorded, Schema: v.release, Data: data}
	if _, err := v.k.Append(r.Context(), []eventlog.Event{ev}); err != nil {
		v.k.WriteError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// pageview checks a hit against its site and keeps of it only what is
// recorded: the path, the referring host and the utm_source.
func (v *vertical) pageview(r *http.Request, h hit) (PageviewRecorded, error) {
	if h.Site == "" {
		return PageviewRecorded{}, kernel.Invalidf(`"site" is missing: set data-site on the script tag`)
	}
	site, err := v.site(r.Context(), h.Site)
	if err != nil {
		return PageviewRecorded{}, err
	}
	u, err := url.Parse(h.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return PageviewRecorded{}, kernel.Invalidf(`"url" %.100q is not an absolute http(s) URL`, h.URL)
	}
	host := normalHost(u)
	if !slices.Contains(site.Domains, host) && !v.allow[host] {
		return PageviewRecorded{}, kernel.Invalidf("host %q is not a domain of site %q", host, site.ID)
	}
	ref := referrerHost(h.Referrer)
	if ref == host || slices.Contains(site.Domains, ref) {
		ref = "" // moving within the site is not a referral
	}
	return PageviewRecorded{Site: site.ID, Path: cleanPath(u), Referrer: ref, UTMSource: utmSource(u)}, nil
}

// normalHost is u's host name, lower-case, without port or final dot.
func normalHost(u *url.URL) string {
	return strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
}

// cleanPath is the URL's path alone: no query, no fragment, at most
// MaxPathBytes, clean text (cleanText), "/" when empty.
func cleanPath(u *url.URL) string {
	p := cleanText(u.Path)
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	return truncate(p, MaxPathBytes)
}

// referrerHost keeps only the host of a referrer URL; "" when it has
// none (a direct visit, or something that is not a URL or whose host
// holds characters no host name has).
func referrerHost(ref string) string {
	u, err := url.Parse(strings.TrimSpace(ref))
	if err != nil || u.Host == "" {
		return ""
	}
	host := normalHost(u)
	if len(host) > 253 || cleanText(host) != host {
		return ""
	}
	return host
}

// utmSource is the URL's utm_source, lower-cased, trimmed, clean text,
// at most MaxSourceBytes.
func utmSource(u *url.URL) string {
	s := strings.ToLower(strings.TrimSpace(u.Query().Get("utm_source")))
	return truncate(cleanText(s), MaxSourceBytes)
}

// cleanText replaces with U+FFFD what a visitor's browser may send but
// a report must not carry: bytes that are not UTF-8, the C0 controls
// (a decoded newline or tab, ESC, NUL), DEL, the C1 controls (U+0080 to
// U+009F), the line and paragraph separators (U+2028, U+2029) and the
// bidirectional formatting characters (U+061C, U+200E, U+200F, U+202A
// to U+202E, U+2066 to U+2069), which could drive the terminal that
// prints a report or reorder the text around them.
func cleanText(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == utf8.RuneError, r < 0x20, r >= 0x7f && r <= 0x9f,
			r == 0x2028, r == 0x2029, r == 0x061c, r == 0x200e, r == 0x200f,
			r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
			return utf8.RuneError
		}
		return r
	}, s)
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
