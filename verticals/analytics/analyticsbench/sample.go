package analyticsbench

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/verticals/analytics"
)

// Days is how many days a sample's page views span.
const Days = 90

// sampleStart is the first instant of a sample: a fixed date, so that a
// sample depends on its size and seed alone.
var sampleStart = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

// Sample is n page views of several sites, as the collector records
// them: time-ordered over Days days, Zipf-distributed paths and
// referrers with long tails, campaign sources on some of them, device
// classes per visitor, and visitors who come back during the day. It
// depends only on n and the seed.
type Sample struct {
	sites []site
	views []view
}

// view is one page view, compact: a million of them take 48 MB rather
// than the few hundred a PageviewRecorded each would.
type view struct {
	at      int64 // Unix nanoseconds
	visitor [16]byte
	path    uint16
	ref     uint16 // index into site.referrers; 0 is a direct visit
	site    uint8
	ua      uint8
	utm     uint8 // index into site.utm plus one; 0: none
}

// site is how one site's traffic looks.
type site struct {
	analytics.SiteCreated
	weight    float64
	paths     []string // most popular first
	referrers []string // "" first (direct), then most popular first
	direct    float64  // share of direct visits
	utm       []utmRule
	ua        [2]float64 // cumulative shares of desktop and mobile; the rest is tablet
	returning float64    // chance a view is by someone seen earlier that day
	zipfPath  float64
	created   time.Time // when the log stored its creation (see Fill)
}

// utmRule tags a share of the views from a referrer with a source.
type utmRule struct {
	referrer, source string
	p                float64
}

var uaClasses = [3]string{analytics.Desktop, analytics.Mobile, analytics.Tablet}

// tail is n generated names after the given head, for long tails.
func tail(head []string, n int, format string) []string {
	out := append([]string(nil), head...)
	for i := range n {
		out = append(out, fmt.Sprintf(format, i+1))
	}
	return out
}

func sites() []site {
	hosts := []string{"google.com", "news.ycombinator.com", "t.co", "github.com", "reddit.com", "duckduckgo.com",
		"lobste.rs", "bing.com", "linkedin.com", "instagram.com", "facebook.com", "pinterest.com", "stackoverflow.com"}
	refs := func(first ...string) []string {
		return tail(append([]string{""}, first...), 300, "blog-%d.example.net")
	}
	mk := func(id, name string, weight float64, paths []string, referrers []string, direct float64, utm []utmRule,
		ua [2]float64, returning, zipf float64) site {
		return site{SiteCreated: analytics.SiteCreated{Site: id, Name: name, Domains: []string{id + ".example.com", "www." + id + ".example.com"}},
			weight: weight, paths: paths, referrers: referrers, direct: direct, utm: utm, ua: ua, returning: returning, zipfPath: zipf}
	}
	return []site{
		mk("blog", "Demo blog", 5, tail([]string{"/", "/about", "/archive", "/now", "/uses", "/tags/go", "/tags/sqlite"}, 400, "/posts/post-number-%d"),
			refs(hosts...), 0.38,
			[]utmRule{{"t.co", "twitter", 0.5}, {"reddit.com", "reddit", 0.2}, {"linkedin.com", "linkedin", 0.4}, {"", "newsletter", 0.08}},
			[2]float64{0.60, 0.95}, 0.25, 1.15),
		mk("shop", "Demo shop", 3, tail([]string{"/", "/cart", "/checkout", "/collections/new", "/collections/sale", "/search"}, 600, "/products/item-%d"),
			refs("google.com", "instagram.com", "facebook.com", "pinterest.com", "bing.com", "duckduckgo.com", "t.co"), 0.40,
			[]utmRule{{"google.com", "google_ads", 0.25}, {"instagram.com", "instagram", 0.5}, {"facebook.com", "facebook", 0.4}, {"", "newsletter", 0.1}},
			[2]float64{0.38, 0.93}, 0.55, 1.3),
		mk("docs", "Demo docs", 2, tail([]string{"/", "/getting-started", "/install", "/quickstart", "/faq", "/changelog"}, 250, "/reference/page-%d"),
			refs("google.com", "github.com", "stackoverflow.com", "duckduckgo.com", "news.ycombinator.com", "bing.com"), 0.35,
			[]utmRule{{"github.com", "github", 0.25}, {"", "newsletter", 0.05}},
			[2]float64{0.82, 0.97}, 0.6, 1.1),
		mk("app", "Demo app", 2, tail([]string{"/", "/pricing", "/features", "/signup", "/login", "/contact", "/privacy", "/terms"}, 40, "/blog/update-%d"),
			refs("google.com", "bing.com", "duckduckgo.com", "linkedin.com", "t.co", "github.com", "news.ycombinator.com"), 0.45,
			[]utmRule{{"linkedin.com", "linkedin", 0.4}, {"", "newsletter", 0.05}},
			[2]float64{0.55, 0.95}, 0.35, 1.2),
		mk("news", "Demo news", 4, tail([]string{"/", "/latest", "/world", "/tech", "/sport"}, 2000, "/articles/story-%d"),
			refs(hosts...), 0.30,
			[]utmRule{{"t.co", "twitter", 0.6}, {"facebook.com", "facebook", 0.5}, {"", "push", 0.1}},
			[2]float64{0.35, 0.92}, 0.45, 1.05),
		mk("wiki", "Demo wiki", 1, tail([]string{"/", "/recent", "/random"}, 1000, "/wiki/article-%d"),
			refs("google.com", "duckduckgo.com", "bing.com", "github.com"), 0.20, nil,
			[2]float64{0.70, 0.95}, 0.3, 1.02),
	}
}

// NewSample makes n page views (see Sample).
func NewSample(n int, seed uint64) *Sample {
	s := &Sample{sites: sites(), views: make([]view, n)}
	r := mrand.New(mrand.NewPCG(seed, 0x5eed))
	var total float64
	cum := make([]float64, len(s.sites))
	paths := make([]*mrand.Zipf, len(s.sites))
	refs := make([]*mrand.Zipf, len(s.sites))
	for i, st := range s.sites {
		total += st.weight
		cum[i] = total
		paths[i] = mrand.NewZipf(r, st.zipfPath, 1, uint64(len(st.paths)-1))
		refs[i] = mrand.NewZipf(r, 1.2, 1, uint64(len(st.referrers)-2))
	}
	// Each site's visitors of the current day, as their device class.
	seen := make([][]uint8, len(s.sites))
	day := -1
	// One view in each step of time, at a random instant of it.
	step := int64(Days*24*time.Hour) / int64(max(n, 1))
	for i := range s.views {
		v := &s.views[i]
		v.at = sampleStart.UnixNano() + step*int64(i) + r.Int64N(step)
		if d := int((v.at - sampleStart.UnixNano()) / int64(24*time.Hour)); d != day {
			day = d
			for j := range seen {
				seen[j] = seen[j][:0]
			}
		}
		x := r.Float64() * total
		for v.site = 0; int(v.site) < len(cum)-1 && x >= cum[v.site]; v.site++ {
		}
		st := &s.sites[v.site]
		v.path = uint16(paths[v.site].Uint64())
		if r.Float64() >= st.direct {
			v.ref = uint16(1 + refs[v.site].Uint64())
		}
		for k, u := range st.utm {
			if u.referrer == st.referrers[v.ref] && r.Float64() < u.p {
				v.utm = uint8(k + 1)
				break
			}
		}
		var who int
		if vs := seen[v.site]; len(vs) > 0 && r.Float64() < st.returning {
			who = r.IntN(len(vs))
		} else {
			ua, x := uint8(2), r.Float64()
			if x < st.ua[0] {
				ua = 0
			} else if x < st.ua[1] {
				ua = 1
			}
			who = len(vs)
			seen[v.site] = append(vs, ua)
		}
		v.ua = seen[v.site][who]
		// The collector's pseudonym is a hash too: 32 hex digits, the
		// same within a day only.
		var key [8 + 8 + 8 + 1]byte
		binary.LittleEndian.PutUint64(key[0:], seed)
		binary.LittleEndian.PutUint64(key[8:], uint64(day))
		binary.LittleEndian.PutUint64(key[16:], uint64(who))
		key[24] = v.site
		h := sha256.Sum256(key[:])
		copy(v.visitor[:], h[:16])
	}
	return s
}

// Views is the number of page views.
func (s *Sample) Views() int { return len(s.views) }

// Sites is the number of sites; their creations come first in the log.
func (s *Sample) Sites() int { return len(s.sites) }

// Events is the number of events the sample appends: the sites'
// creations, then the page views.
func (s *Sample) Events() int { return len(s.sites) + len(s.views) }

// Pageview returns the i-th page view as the collector records it.
func (s *Sample) Pageview(i int) analytics.PageviewRecorded {
	v := &s.views[i]
	st := &s.sites[v.site]
	pv := analytics.PageviewRecorded{
		Site:     st.Site,
		Path:     st.paths[v.path],
		Referrer: st.referrers[v.ref],
		UAClass:  uaClasses[v.ua],
		Visitor:  hex.EncodeToString(v.visitor[:]),
		At:       time.Unix(0, v.at).UTC().Format(time.RFC3339Nano),
	}
	if v.utm > 0 {
		pv.UTMSource = st.utm[v.utm-1].source
	}
	return pv
}

// Event returns the i-th event of the sample, 0 <= i < Events(): a site
// creation or a page view, with the versions the vertical appends
// (analytics.SiteCreatedVersion, PageviewRecordedVersion), on the site's
// stream.
func (s *Sample) Event(i int) eventlog.Event {
	if i < len(s.sites) {
		st := s.sites[i]
		data, err := json.Marshal(st.SiteCreated)
		if err != nil {
			panic(err) // strings only
		}
		return eventlog.Event{Stream: analytics.SiteStream(st.Site), Type: analytics.TypeSiteCreated, Schema: analytics.SiteCreatedVersion, Data: data}
	}
	pv := s.Pageview(i - len(s.sites))
	data, err := json.Marshal(pv)
	if err != nil {
		panic(err)
	}
	return eventlog.Event{Stream: analytics.SiteStream(pv.Site), Type: analytics.TypePageviewRecorded, Schema: analytics.PageviewRecordedVersion, Data: data}
}
