package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/spf13/cobra"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/verticals/analytics"
)

const (
	pageviewSchema  = 2 // v2 carries utm_source
	demoBatch       = eventlog.MaxAppendEvents
	demoInFlight    = 4         // appends in flight: enough to share fsyncs, few enough to stay fair
	demoMaxViews    = 1_000_000 // about 200 bytes each in memory
	demoMaxDays     = 366
	demoRetries     = 3
	analyticsPrefix = "analytics."
)

// siteID is the form of a site id, as the analytics vertical checks it.
var siteID = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

type demoOptions struct {
	views int
	days  int
	sites []string
	seed  uint64
	until time.Time // the views end here
	again bool
}

func (a *app) demoCmd() *cobra.Command {
	var (
		sf    serverFlags
		o     demoOptions
		until string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Load sample analytics data into a running server",
		Long: `Demo creates sample sites on a running server and imports page views for
them through the same API a user would call: the sites through the
analytics API, the views as analytics.pageview_recorded events in batches.
The views spread over --days days (UTC) that end now, or at --until, with
a weekly and daily rhythm, a few popular pages, search and social
referrers, campaign sources and returning visitors. The same --seed and
--until give the same sample.

A site that exists already is refused, since its views would add up with
the earlier ones; --again adds them anyway.`,
		Example: `  fazt demo
  fazt demo --views 20000 --days 7 --sites blog,docs --seed 7 --until 2026-03-01T12:00:00Z`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			if o.views < 1 || o.views > demoMaxViews {
				return usagef(cmd, "--views must be between 1 and %d", demoMaxViews)
			}
			if o.days < 1 || o.days > demoMaxDays {
				return usagef(cmd, "--days must be between 1 and %d", demoMaxDays)
			}
			seen := map[string]bool{}
			for _, s := range o.sites {
				if !siteID.MatchString(s) {
					return usagef(cmd, "--sites: %q is not a site id (lower-case letters, digits and -, like blog)", s)
				}
				if seen[s] {
					return usagef(cmd, "--sites names %s twice", s)
				}
				seen[s] = true
			}
			if len(o.sites) == 0 {
				return usagef(cmd, "--sites must name at least one site")
			}
			o.until = time.Now().UTC()
			if until != "" {
				t, err := time.Parse(time.RFC3339, until)
				if err != nil {
					return usagef(cmd, "--until %q: want a time like 2026-03-01T12:00:00Z", until)
				}
				if t.After(o.until) {
					return usagef(cmd, "--until %s is in the future: page views are of the past", until)
				}
				o.until = t.UTC()
			}
			return a.demo(cmd, sf, o)
		}),
	}
	serverFlagsOn(cmd, &sf)
	f := cmd.Flags()
	f.IntVar(&o.views, "views", 100_000, "page views to import")
	f.IntVar(&o.days, "days", 30, "days the views spread over (UTC), the last one --until's")
	f.StringSliceVar(&o.sites, "sites", []string{"blog", "shop", "docs"}, "sites to create, comma-separated; blog, shop and docs get fitting pages")
	f.Uint64Var(&o.seed, "seed", 1, "random seed: the same seed gives the same sample")
	f.StringVar(&until, "until", "", "when the views end, RFC 3339 (default: now)")
	f.BoolVar(&o.again, "again", false, "add views to sites that exist already (their totals then add up)")
	return cmd
}

func (a *app) demo(cmd *cobra.Command, sf serverFlags, o demoOptions) error {
	ctx := cmd.Context()
	c, err := a.connect(sf)
	if err != nil {
		return err
	}
	defer c.close()
	start := time.Now()

	// Check every site before writing anything: a refusal leaves the
	// server as it was.
	existing, _, err := listSites(cmd, c)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, s := range existing {
		have[s.ID] = true
	}
	var dup []string
	for _, s := range o.sites {
		if have[s] {
			dup = append(dup, s)
		}
	}
	if len(dup) > 0 && !o.again {
		what := "site " + dup[0] + " exists"
		if len(dup) > 1 {
			what = "sites " + strings.Join(dup, ", ") + " exist"
		}
		return fmt.Errorf("%s already (an earlier demo?): another demo would add its views to theirs; run it with --again to do that anyway, or name other --sites", what)
	}
	specs := demoSpecs(o.sites)
	for _, sp := range specs {
		if have[sp.id] {
			fmt.Fprintf(a.stderr, "site %s exists already: adding the views to it (--again)\n", sp.id)
			continue
		}
		body := map[string]any{"id": sp.id, "name": sp.name, "domains": sp.domains}
		if _, err := c.call(ctx, http.MethodPost, "/v1/analytics/sites", nil, body, nil); err != nil {
			return fmt.Errorf("create site %s: %w", sp.id, err)
		}
	}

	views := generateViews(specs, o.views, o.days, o.seed, o.until)
	lastSeq, err := a.importViews(ctx, c, views)
	if err != nil {
		return err
	}
	imported := time.Since(start)
	if err := a.waitFolded(ctx, c, lastSeq); err != nil {
		return err
	}
	total := time.Since(start)

	perSite := map[string]int{}
	for i := range views {
		perSite[views[i].Site]++
	}
	w := a.stdout
	sites := "sites"
	if len(specs) == 1 {
		sites = "site"
	}
	fmt.Fprintf(w, "Loaded %s page views over %d days into %d %s in %s (imported in %s, %s views/s).\n\n",
		thousands(int64(len(views))), o.days, len(specs), sites, total.Round(100*time.Millisecond), imported.Round(100*time.Millisecond),
		thousands(int64(float64(len(views))/imported.Seconds())))
	for _, sp := range specs {
		note := ""
		if have[sp.id] {
			note = " (existed already: views added)"
		}
		fmt.Fprintf(w, "  %-6s %-12s %-20s %8s views%s\n", sp.id, sp.name, strings.Join(sp.domains, ","), thousands(int64(perSite[sp.id])), note)
	}

	// The next commands find the server the way this one did.
	var conn string
	if sf.addr != "" {
		conn += " --addr " + shellQuote(sf.addr)
	}
	if sf.token != "" {
		conn += ` --token "$FAZT_TOKEN"` // not the token itself, on screen
	}
	if sf.data != "" {
		conn += " --data " + shellQuote(sf.data)
	}
	tokenRef := "$FAZT_TOKEN"
	if sf.token == "" && a.getenv("FAZT_TOKEN") == "" {
		dir := sf.data
		if dir == "" {
			dir = a.envOr("FAZT_DATA", defaultData)
		}
		tokenRef = "$(cat " + shellQuote(filepath.Join(dir, kernel.TokenFile)) + ")"
	}
	first := specs[0].id
	today := o.until
	from, to := today.AddDate(0, 0, -(o.days-1)).Format(dayLayout), today.Format(dayLayout)
	fmt.Fprintf(w, "\nNext:\n")
	fmt.Fprintf(w, "  fazt analytics top %s%s\n", first, conn)
	fmt.Fprintf(w, "  fazt analytics top %s --from %s --to %s --limit 5%s\n", first, from, to, conn)
	fmt.Fprintf(w, "  fazt analytics sites%s\n", conn)
	fmt.Fprintf(w, "  curl -s -H \"Authorization: Bearer %s\" '%s/v1/analytics/%s/stats?from=%s&to=%s'\n", tokenRef, c.base, first, from, to)
	fmt.Fprintf(w, "  fazt query --projection %s \"%s\"%s\n", analyticsProjection, analyticsExampleSQL(first), conn)
	fmt.Fprintf(w, "\nCollect real views with this tag in a site's pages:\n  %s\n", snippetTag(c.base, first))
	return nil
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// demoView is a view to import: the event's data (version 2), and its
// time for sorting.
type demoView struct {
	analytics.PageviewRecorded
	at time.Time
}

// importViews appends the views in batches, a few in flight, with
// progress on stderr. It returns the sequence of the last event.
func (a *app) importViews(ctx context.Context, c *client, views []demoView) (uint64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	batches := make(chan []demoView)
	go func() {
		defer close(batches)
		for i := 0; i < len(views); i += demoBatch {
			select {
			case batches <- views[i:min(i+demoBatch, len(views))]:
			case <-ctx.Done():
				return
			}
		}
	}()
	var (
		done    atomic.Int64
		lastSeq atomic.Uint64
		wg      sync.WaitGroup
		entropy = &lockedEntropy{e: ulid.Monotonic(rand.Reader, 0)}
	)
	p := newProgress(a.stderr, "importing page views", int64(len(views)))
	for range demoInFlight {
		wg.Go(func() {
			for b := range batches {
				seq, err := appendViews(ctx, c, b, entropy)
				if err != nil {
					cancel(err)
					return
				}
				for {
					old := lastSeq.Load()
					if seq <= old || lastSeq.CompareAndSwap(old, seq) {
						break
					}
				}
				p.set(done.Add(int64(len(b))))
			}
		})
	}
	wg.Wait()
	p.finish()
	if err := context.Cause(ctx); err != nil {
		n := done.Load()
		if n == 0 {
			return 0, err
		}
		return 0, fmt.Errorf("%w\n%s of %s views were imported before the error; running the demo again with --again adds the rest and those again",
			err, thousands(n), thousands(int64(len(views))))
	}
	return lastSeq.Load(), nil
}

// lockedEntropy makes monotonic ULID entropy safe for several goroutines.
type lockedEntropy struct {
	mu sync.Mutex
	e  *ulid.MonotonicEntropy
}

func (l *lockedEntropy) id() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return ulid.MustNew(ulid.Now(), l.e).String()
}

// appendViews posts one batch. Its events carry their own IDs, so that a
// retry after a lost answer writes nothing twice.
func appendViews(ctx context.Context, c *client, views []demoView, ids *lockedEntropy) (uint64, error) {
	req := kernel.AppendRequest{Events: make([]kernel.AppendEvent, len(views))}
	for i := range views {
		data, err := json.Marshal(&views[i])
		if err != nil {
			return 0, err
		}
		req.Events[i] = kernel.AppendEvent{ID: ids.id(), Stream: analyticsPrefix + views[i].Site, Type: analytics.TypePageviewRecorded, Schema: pageviewSchema, Data: data}
	}
	var err error
	for attempt := range demoRetries {
		var res eventlog.Result
		_, err = c.call(ctx, http.MethodPost, "/v1/events", nil, req, &res)
		if err == nil {
			return res.LastSeq, nil
		}
		var se *serverError
		if ctx.Err() != nil || errors.As(err, &se) && se.Status != http.StatusServiceUnavailable && se.Status != http.StatusTooManyRequests {
			break // the server refused the batch: trying again would not help
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt+1) * 500 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("import page views: %w", err)
}

// waitFolded waits until the analytics projection has folded the log up
// to seq, so that the commands printed next see every view.
func (a *app) waitFolded(ctx context.Context, c *client, seq uint64) error {
	var st projections.Status
	path := "/v1/projections/" + analyticsProjection
	if _, err := c.call(ctx, http.MethodGet, path, nil, nil, &st); err != nil {
		return fmt.Errorf("projection %s: %w", analyticsProjection, err)
	}
	if st.Seq >= seq {
		return nil
	}
	p := newProgress(a.stderr, "updating the analytics read model", int64(seq-st.Seq))
	base := st.Seq
	for st.Seq < seq {
		if st.Halted != nil {
			return fmt.Errorf("projection %s halted at seq %d: %s (see `fazt projections status %s`)", analyticsProjection, st.Halted.Seq, st.Halted.Error, analyticsProjection)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := c.call(ctx, http.MethodGet, path, nil, nil, &st); err != nil {
			return fmt.Errorf("projection %s: %w", analyticsProjection, err)
		}
		p.set(int64(min(st.Seq, seq) - base))
	}
	p.finish()
	return nil
}

// progress shows done/total, rate and ETA on a line that updates itself
// on a terminal, or as plain lines now and then otherwise.
type progress struct {
	w     io.Writer
	what  string
	total int64
	start time.Time
	tty   bool

	mu    sync.Mutex
	last  time.Time
	done  int64
	shown bool
}

func newProgress(w io.Writer, what string, total int64) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, what: what, total: total, start: time.Now(), tty: tty}
}

func (p *progress) set(done int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = done
	every := 2 * time.Second
	if p.tty {
		every = 100 * time.Millisecond
	}
	if now := time.Now(); now.Sub(p.last) >= every && done > 0 && done < p.total {
		p.last = now
		p.print(false)
	}
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty || p.shown || p.done > 0 {
		p.print(true)
	}
}

func (p *progress) print(final bool) {
	el := time.Since(p.start)
	rate := float64(p.done) / max(el.Seconds(), 1e-3)
	line := fmt.Sprintf("%s: %s/%s (%.0f%%)  %s/s", p.what, thousands(p.done), thousands(p.total), 100*float64(p.done)/float64(max(p.total, 1)), thousands(int64(rate)))
	if final {
		line += "  in " + el.Round(100*time.Millisecond).String()
	} else if rate > 0 {
		eta := time.Duration(float64(p.total-p.done) / rate * float64(time.Second))
		line += "  ETA " + eta.Round(time.Second).String()
	}
	p.shown = true
	if !p.tty {
		fmt.Fprintln(p.w, line)
		return
	}
	end := "\x1b[K" // clear what a longer line left
	if final {
		end += "\n"
	}
	fmt.Fprintf(p.w, "\r%s%s", line, end)
}

// The sample's shapes.

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

var uaClasses = [3]string{"desktop", "mobile", "tablet"}

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

// analyticsProjection is the analytics vertical's read model.
const analyticsProjection = "analytics"

// analyticsExampleSQL is a query to show off fazt query with.
func analyticsExampleSQL(site string) string {
	return fmt.Sprintf("SELECT path, COUNT(*) AS views FROM pageviews WHERE site = '%s' GROUP BY path ORDER BY views DESC LIMIT 5", site)
}
