package main

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/fazt-sh/fazt/verticals/analytics"
)

// The sample `fazt demo` imports: page views of a few sites with the
// rhythm, pages and audiences of real ones. It depends only on the
// options (sites, views, days, seed, until).

// demoView is a view to import: the event's data (of version
// analytics.PageviewRecordedVersion), and its time for sorting.
type demoView struct {
	analytics.PageviewRecorded
	at time.Time
}

// demoSpec says how one site's traffic looks.
type demoSpec struct {
	id, name  string
	domains   []string
	weight    float64    // share of all views, relative
	paths     []string   // most popular first
	zipf      float64    // > 1; larger: a steeper head
	referrers []weighted // host ("" direct) and weight
	utm       []utmRule  // campaign sources
	ua        [3]float64 // desktop, mobile, tablet
	returning float64    // chance a view is by someone seen earlier that day
	weekday   [7]float64 // Sunday first
	hourShift int        // the daily curve's peak, relative to the default
	spike     bool       // one post reaches a front page once
}

type weighted struct {
	v string
	w float64
}

// utmRule tags a fraction of the views from a referrer with a source.
type utmRule struct {
	referrer, source string
	p                float64
}

var uaClasses = [3]string{analytics.Desktop, analytics.Mobile, analytics.Tablet}

// hourly is the shape of a day, UTC: quiet at night, busiest at the
// European afternoon and the American morning.
var hourly = [24]float64{0.30, 0.25, 0.22, 0.20, 0.22, 0.30, 0.45, 0.60, 0.75, 0.85, 0.92, 0.97,
	1.00, 1.00, 0.98, 0.97, 0.95, 0.93, 0.90, 0.85, 0.75, 0.62, 0.50, 0.38}

// demoSpecs returns the shape of each site: blog, shop and docs have
// their own pages and audiences; other names get a small product site.
func demoSpecs(ids []string) []demoSpec {
	specs := make([]demoSpec, len(ids))
	for i, id := range ids {
		sp := demoSpec{id: id, domains: []string{id + ".example.com"}}
		switch id {
		case "blog":
			sp.name, sp.weight, sp.zipf, sp.spike = "Demo blog", 5, 1.15, true
			sp.paths = []string{"/", "/posts/sqlite-is-enough", "/posts/why-i-self-host-everything", "/posts/event-sourcing-for-one",
				"/posts/backups-you-can-restore", "/posts/the-boring-stack", "/about", "/posts/notes-on-nats-jetstream",
				"/posts/a-year-of-go", "/posts/writing-a-tiny-load-balancer", "/archive", "/posts/static-sites-are-back",
				"/posts/cron-is-a-database", "/posts/benchmarks-that-lie", "/posts/on-taking-notes", "/tags/go", "/now",
				"/posts/keyboard-shortcuts-i-use", "/posts/learning-rust-as-a-go-dev", "/uses", "/tags/sqlite",
				"/posts/how-i-write", "/posts/a-good-readme", "/posts/my-home-server", "/tags/self-hosting"}
			sp.referrers = []weighted{{"", 38}, {"google.com", 22}, {"news.ycombinator.com", 7}, {"t.co", 5}, {"x.com", 2},
				{"github.com", 5}, {"reddit.com", 5}, {"duckduckgo.com", 4}, {"lobste.rs", 3}, {"bing.com", 2},
				{"linkedin.com", 2}, {"feedly.com", 3}}
			sp.utm = []utmRule{{"t.co", "twitter", 0.5}, {"x.com", "twitter", 0.5}, {"reddit.com", "reddit", 0.2},
				{"linkedin.com", "linkedin", 0.4}, {"", "newsletter", 0.08}}
			sp.ua = [3]float64{0.60, 0.35, 0.05}
			sp.returning = 0.25
			sp.weekday = [7]float64{0.75, 1.05, 1.1, 1.05, 1.0, 0.95, 0.7}
		case "shop":
			sp.name, sp.weight, sp.zipf = "Demo shop", 3, 1.3
			sp.paths = []string{"/", "/collections/new", "/products/ceramic-mug", "/collections/sale", "/products/cast-iron-skillet",
				"/cart", "/products/linen-apron", "/products/oak-cutting-board", "/search", "/products/chef-knife",
				"/checkout", "/products/pour-over-kettle", "/collections/kitchen", "/products/espresso-cups-set",
				"/products/tea-towel-3-pack", "/checkout/thank-you", "/products/bread-proofing-basket", "/shipping",
				"/products/wooden-spoons", "/returns", "/about"}
			sp.referrers = []weighted{{"", 40}, {"google.com", 30}, {"instagram.com", 8}, {"facebook.com", 6},
				{"pinterest.com", 6}, {"bing.com", 3}, {"duckduckgo.com", 2}, {"t.co", 2}, {"news.ycombinator.com", 1}}
			sp.utm = []utmRule{{"google.com", "google_ads", 0.25}, {"instagram.com", "instagram", 0.5},
				{"facebook.com", "facebook", 0.4}, {"pinterest.com", "pinterest", 0.3}, {"", "newsletter", 0.1}}
			sp.ua = [3]float64{0.38, 0.55, 0.07}
			sp.returning = 0.55
			sp.weekday = [7]float64{1.25, 1.05, 0.95, 0.95, 1.0, 1.05, 1.2}
			sp.hourShift = 3 // evening shopping
		case "docs":
			sp.name, sp.weight, sp.zipf = "Demo docs", 2, 1.1
			sp.paths = []string{"/", "/getting-started", "/install", "/reference/cli", "/quickstart", "/guides/configuration",
				"/reference/http-api", "/guides/deploy", "/concepts/event-log", "/troubleshooting", "/faq",
				"/guides/backups", "/reference/config", "/concepts/projections", "/guides/custom-domains",
				"/reference/events", "/concepts/schemas", "/guides/upgrading", "/changelog"}
			sp.referrers = []weighted{{"", 35}, {"google.com", 30}, {"github.com", 18}, {"stackoverflow.com", 6},
				{"duckduckgo.com", 5}, {"news.ycombinator.com", 2}, {"bing.com", 2}, {"reddit.com", 2}}
			sp.utm = []utmRule{{"github.com", "github", 0.25}, {"", "newsletter", 0.05}}
			sp.ua = [3]float64{0.82, 0.15, 0.03}
			sp.returning = 0.6
			sp.weekday = [7]float64{0.45, 1.1, 1.15, 1.15, 1.1, 1.0, 0.45}
			sp.hourShift = -1
		default:
			sp.name, sp.weight, sp.zipf = "Demo "+id, 2, 1.2
			sp.paths = []string{"/", "/pricing", "/features", "/blog", "/about", "/signup", "/login", "/contact",
				"/privacy", "/terms"}
			sp.referrers = []weighted{{"", 45}, {"google.com", 30}, {"bing.com", 4}, {"duckduckgo.com", 4},
				{"linkedin.com", 6}, {"t.co", 4}, {"github.com", 4}, {"news.ycombinator.com", 3}}
			sp.utm = []utmRule{{"linkedin.com", "linkedin", 0.4}, {"", "newsletter", 0.05}}
			sp.ua = [3]float64{0.55, 0.40, 0.05}
			sp.returning = 0.35
			sp.weekday = [7]float64{0.6, 1.1, 1.1, 1.1, 1.05, 1.0, 0.6}
		}
		specs[i] = sp
	}
	return specs
}

// generateViews makes n page views over the days that end with now's
// day (UTC), none after now, sorted by time. It depends only on its
// arguments.
func generateViews(specs []demoSpec, n, days int, seed uint64, now time.Time) []demoView {
	now = now.UTC()
	firstDay := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, -(days - 1))
	var totalWeight float64
	for _, sp := range specs {
		totalWeight += sp.weight
	}
	views := make([]demoView, 0, n)
	left := n
	for si, sp := range specs {
		r := mrand.New(mrand.NewPCG(seed, uint64(si)+1))
		count := int(math.Round(float64(n) * sp.weight / totalWeight))
		if si == len(specs)-1 {
			count = left // rounding must not lose or add a view
		}
		count = min(count, left)
		left -= count
		views = append(views, siteViews(r, sp, count, days, firstDay, now, seed)...)
	}
	// Sorting indices moves 4 bytes per swap instead of a whole view.
	order := make([]int32, len(views))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(i, j int32) int {
		return cmp.Or(views[i].at.Compare(views[j].at), cmp.Compare(i, j))
	})
	sorted := make([]demoView, len(views))
	for k, i := range order {
		sorted[k] = views[i]
	}
	return sorted
}

// slot is one hour of one day with its share of a site's views.
type slot struct {
	start time.Time
	len   time.Duration // shorter for the hour now is in
	day   int
	cum   float64 // cumulative weight, for sampling
	spike float64 // chance a view in it comes from the front-page post
}

func siteViews(r *mrand.Rand, sp demoSpec, n, days int, firstDay, now time.Time, seed uint64) []demoView {
	// The day the blog's post reaches a front page, and the day after.
	spikeDay := -1
	if sp.spike && days >= 3 {
		spikeDay = days/3 + r.IntN(max(days/3, 1))
	}
	spikePath := ""
	if len(sp.paths) > 3 {
		spikePath = sp.paths[3+r.IntN(len(sp.paths)-3)]
	}
	var slots []slot
	var cum float64
	for d := range days {
		day := firstDay.AddDate(0, 0, d)
		dayW := sp.weekday[day.Weekday()] * (1 + 0.3*float64(d)/float64(days)) * (0.88 + 0.24*r.Float64())
		boost := 1.0
		switch {
		case spikeDay < 0:
		case d == spikeDay:
			boost = 4
		case d == spikeDay+1:
			boost = 1.8
		}
		for h := range 24 {
			start := day.Add(time.Duration(h) * time.Hour)
			if !start.Before(now) {
				break
			}
			l := min(time.Hour, now.Sub(start))
			w := dayW * boost * hourly[((h-sp.hourShift)%24+24)%24] * l.Hours()
			cum += w
			slots = append(slots, slot{start: start, len: l, day: d, cum: cum, spike: 1 - 1/boost})
		}
	}
	if len(slots) == 0 { // now is the first instant of the only day
		slots = []slot{{start: firstDay, len: 1, cum: 1}}
		cum = 1
	}
	zipf := mrand.NewZipf(r, sp.zipf, 1, uint64(len(sp.paths)-1))
	var refTotal float64
	for _, x := range sp.referrers {
		refTotal += x.w
	}
	visitors := make([][]uint8, days) // per day: each visitor's ua class
	out := make([]demoView, n)
	for i := range out {
		x := r.Float64() * cum
		s := slots[sort.Search(len(slots), func(j int) bool { return slots[j].cum > x })]
		at := s.start.Add(time.Duration(r.Int64N(int64(s.len))))
		v := demoView{PageviewRecorded: analytics.PageviewRecorded{Site: sp.id, At: at.Format(time.RFC3339)}, at: at}

		if s.spike > 0 && r.Float64() < s.spike {
			v.Path = spikePath
			if r.Float64() < 0.8 {
				v.Referrer = "news.ycombinator.com"
			}
		} else {
			v.Path = sp.paths[zipf.Uint64()]
			x := r.Float64() * refTotal
			for _, ref := range sp.referrers {
				if x -= ref.w; x < 0 {
					v.Referrer = ref.v
					break
				}
			}
			for _, u := range sp.utm {
				if u.referrer == v.Referrer && r.Float64() < u.p {
					v.UTMSource = u.source
					break
				}
			}
		}

		// Someone seen earlier that day, or someone new.
		seen := visitors[s.day]
		var who int
		if len(seen) > 0 && r.Float64() < sp.returning {
			who = r.IntN(len(seen))
		} else {
			ua := uint8(2)
			if x := r.Float64(); x < sp.ua[0] {
				ua = 0
			} else if x < sp.ua[0]+sp.ua[1] {
				ua = 1
			}
			who = len(seen)
			visitors[s.day] = append(seen, ua)
		}
		v.UAClass = uaClasses[visitors[s.day][who]]
		v.Visitor = visitorHash(seed, sp.id, s.day, who)
		out[i] = v
	}
	return out
}

// visitorHash stands for the hash the collector makes of a visitor's
// address and browser with the day's salt: the same within a day only.
func visitorHash(seed uint64, site string, day, who int) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%d/%s/%d/%d", seed, site, day, who))
	return hex.EncodeToString(h[:16])
}
