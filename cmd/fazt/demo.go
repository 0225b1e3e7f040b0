package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
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
	demoBatch    = eventlog.MaxAppendEvents
	demoInFlight = 4         // appends in flight: enough to share fsyncs, few enough to stay fair
	demoMaxViews = 1_000_000 // about 200 bytes each in memory
	demoMaxDays  = 366
	demoRetries  = 3
)

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
				if !analytics.ValidSiteID(s) {
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
		body := analytics.CreateSiteRequest{ID: sp.id, Name: sp.name, Domains: sp.domains}
		if _, err := c.call(ctx, http.MethodPost, analytics.SitesPath, nil, body, nil); err != nil {
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
	from, to := today.AddDate(0, 0, -(o.days-1)).Format(time.DateOnly), today.Format(time.DateOnly)
	fmt.Fprintf(w, "\nNext:\n")
	fmt.Fprintf(w, "  fazt analytics top %s%s\n", first, conn)
	fmt.Fprintf(w, "  fazt analytics top %s --from %s --to %s --limit 5%s\n", first, from, to, conn)
	fmt.Fprintf(w, "  fazt analytics sites%s\n", conn)
	fmt.Fprintf(w, "  curl -s -H \"Authorization: Bearer %s\" '%s%s?from=%s&to=%s'\n", tokenRef, c.base, analytics.StatsPath(first), from, to)
	fmt.Fprintf(w, "  fazt query --projection %s \"%s\"%s\n", analytics.Projection().Name, analyticsExampleSQL(first), conn)
	fmt.Fprintf(w, "\nCollect real views with this tag in a site's pages:\n  %s\n", analytics.SnippetTag(c.base, first))
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
		req.Events[i] = kernel.AppendEvent{ID: ids.id(), Stream: analytics.SiteStream(views[i].Site), Type: analytics.TypePageviewRecorded, Schema: analytics.PageviewRecordedVersion, Data: data}
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
	name := analytics.Projection().Name
	var st projections.Status
	path := "/v1/projections/" + name
	if _, err := c.call(ctx, http.MethodGet, path, nil, nil, &st); err != nil {
		return fmt.Errorf("projection %s: %w", name, err)
	}
	if st.Seq >= seq {
		return nil
	}
	p := newProgress(a.stderr, "updating the analytics read model", int64(seq-st.Seq))
	base := st.Seq
	for st.Seq < seq {
		if st.Halted != nil {
			return fmt.Errorf("projection %s halted at seq %d: %s (see `fazt projections status %s`)", name, st.Halted.Seq, st.Halted.Error, name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := c.call(ctx, http.MethodGet, path, nil, nil, &st); err != nil {
			return fmt.Errorf("projection %s: %w", name, err)
		}
		p.set(int64(min(st.Seq, seq) - base))
	}
	p.finish()
	return nil
}

// analyticsExampleSQL is a query to show off fazt query with.
func analyticsExampleSQL(site string) string {
	return fmt.Sprintf("SELECT path, COUNT(*) AS views FROM pageviews WHERE site = '%s' GROUP BY path ORDER BY views DESC LIMIT 5", site)
}
