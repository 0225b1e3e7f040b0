package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/fazt-sh/fazt/verticals/analytics"
)

func (a *app) analyticsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "analytics",
		Short: "Web analytics of a running server: sites and their stats",
		Long: `The analytics commands talk to a running server's analytics API: add a
site, list the sites, and print a site's page views, visitors, top
paths, referrers and campaign sources. "fazt demo" loads sample data.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.analyticsTopCmd(), a.analyticsSitesCmd(), a.analyticsAddSiteCmd())
	return cmd
}

func (a *app) analyticsTopCmd() *cobra.Command {
	var (
		sf       serverFlags
		from, to string
		limit    int
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "top SITE",
		Short: "Print a site's views, visitors, top paths, referrers and sources",
		Long: `Top prints a site's report for a range of days (UTC, both included; by
default the last 30 days): totals, views per day, and the top paths,
referrers and campaign sources (utm_source).`,
		Example: `  fazt analytics top blog
  fazt analytics top blog --from 2026-01-01 --to 2026-01-31 --limit 5
  fazt analytics top blog --json`,
		Args: cobra.ExactArgs(1),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			var fromDay, toDay time.Time
			var err error
			if from != "" {
				if fromDay, err = time.Parse(time.DateOnly, from); err != nil {
					return usagef(cmd, "--from %q: want a date like 2026-01-31", from)
				}
				q.Set("from", from)
			}
			if to != "" {
				if toDay, err = time.Parse(time.DateOnly, to); err != nil {
					return usagef(cmd, "--to %q: want a date like 2026-01-31", to)
				}
				q.Set("to", to)
			}
			if from != "" && to != "" && toDay.Before(fromDay) {
				return usagef(cmd, "--to %s is before --from %s", to, from)
			}
			if cmd.Flags().Changed("limit") {
				if limit < 1 {
					return usagef(cmd, "--limit must be at least 1")
				}
				q.Set("limit", strconv.Itoa(limit))
			}
			c, err := a.connect(sf)
			if err != nil {
				return err
			}
			defer c.close()
			var st analytics.Stats
			raw, err := c.call(cmd.Context(), http.MethodGet, analytics.StatsPath(args[0]), q, nil, &st)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printRaw(raw)
			}
			return printStats(a.stdout, &st)
		}),
	}
	serverFlagsOn(cmd, &sf)
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "first day, YYYY-MM-DD (UTC)")
	f.StringVar(&to, "to", "", "last day, YYYY-MM-DD (UTC)")
	f.IntVar(&limit, "limit", 0, "entries in each top list (default: the server's)")
	f.BoolVar(&asJSON, "json", false, "print the server's JSON answer")
	return cmd
}

// printStats writes the readable report of top.
func printStats(w io.Writer, st *analytics.Stats) error {
	fmt.Fprintf(w, "%s, %s to %s (as of seq %d)\n", safe(st.Site), safe(st.From), safe(st.To), st.Seq)
	fmt.Fprintf(w, "  %s views, %s visitors\n", thousands(st.Views), thousands(st.Visitors))
	if st.Views == 0 {
		fmt.Fprintln(w, "\nno views in this range yet: pages count theirs with the snippet (see `fazt analytics add-site --help`)")
	}
	if st.Views > 0 && len(st.Days) > 0 {
		views := make([]int64, len(st.Days))
		busiest := 0
		for i, d := range st.Days {
			views[i] = d.Views
			if d.Views > st.Days[busiest].Views {
				busiest = i
			}
		}
		fmt.Fprintf(w, "\nviews per day  %s\n", sparkline(views))
		fmt.Fprintf(w, "busiest day    %s, %s views\n", safe(st.Days[busiest].Day), thousands(st.Days[busiest].Views))
		// A table only for short ranges: a month of rows drowns the rest.
		if len(st.Days) <= 14 {
			rows := [][]string{{"day", "views", "visitors"}}
			for _, d := range st.Days {
				rows = append(rows, []string{safe(d.Day), thousands(d.Views), thousands(d.Visitors)})
			}
			fmt.Fprintln(w)
			if err := writeTable(w, rows); err != nil {
				return err
			}
		}
	}
	type row struct {
		name  string
		views int64
	}
	section := func(title string, rows []row) error {
		fmt.Fprintln(w)
		if len(rows) == 0 {
			_, err := fmt.Fprintf(w, "%s: none\n", title)
			return err
		}
		table := [][]string{{title, "views", "share"}}
		for _, r := range rows {
			table = append(table, []string{safe(r.name), thousands(r.views), share(r.views, st.Views)})
		}
		return writeTable(w, table)
	}
	var paths, refs, sources []row
	for _, p := range st.TopPaths {
		paths = append(paths, row{p.Path, p.Views})
	}
	for _, r := range st.TopReferrers {
		name := r.Referrer
		if name == "" {
			name = "(direct)"
		}
		refs = append(refs, row{name, r.Views})
	}
	for _, s := range st.TopSources {
		sources = append(sources, row{s.Source, s.Views})
	}
	if err := section("top paths", paths); err != nil {
		return err
	}
	if err := section("top referrers", refs); err != nil {
		return err
	}
	return section("top sources (utm_source)", sources)
}

// writeTable writes rows in columns: the first left-aligned, the others,
// numbers, right-aligned.
func writeTable(w io.Writer, rows [][]string) error {
	var widths []int
	for _, r := range rows {
		for i, cell := range r {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(cell))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for i, cell := range r {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell))
			switch {
			case i == 0:
				b.WriteString(cell + pad)
			default:
				b.WriteString("  " + pad + cell)
			}
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// sparkline draws one block per value, scaled to the largest.
func sparkline(vs []int64) string {
	const blocks = "▁▂▃▄▅▆▇█"
	bars := []rune(blocks)
	var top int64
	for _, v := range vs {
		top = max(top, v)
	}
	var b strings.Builder
	for _, v := range vs {
		switch {
		case v == 0:
			b.WriteRune(' ')
		case top > 0:
			b.WriteRune(bars[int((v*int64(len(bars)-1)+top/2)/top)])
		}
	}
	return b.String()
}

func share(n, total int64) string {
	if total <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(total))
}

// thousands formats n with commas: 12,345.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// listSites returns the server's analytics sites.
func listSites(cmd *cobra.Command, c *client) ([]analytics.Site, []byte, error) {
	var res analytics.ListSitesResponse
	raw, err := c.call(cmd.Context(), http.MethodGet, analytics.SitesPath, nil, nil, &res)
	return res.Sites, raw, err
}

func (a *app) analyticsSitesCmd() *cobra.Command {
	var (
		sf     serverFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "sites",
		Short: "List the analytics sites",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			c, err := a.connect(sf)
			if err != nil {
				return err
			}
			defer c.close()
			sites, raw, err := listSites(cmd, c)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printRaw(raw)
			}
			if len(sites) == 0 {
				_, err = fmt.Fprintln(a.stdout, "no sites yet: add one with `fazt analytics add-site ID --domain HOST`, or load samples with `fazt demo`")
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "id\tname\tdomains\tcreated")
			for _, s := range sites {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", safe(s.ID), safe(s.Name), safe(strings.Join(s.Domains, ",")), safe(s.Created))
			}
			return tw.Flush()
		}),
	}
	serverFlagsOn(cmd, &sf)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the server's JSON answer")
	return cmd
}

func (a *app) analyticsAddSiteCmd() *cobra.Command {
	var (
		sf      serverFlags
		name    string
		domains []string
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "add-site ID --domain HOST [--domain HOST2] [--name NAME]",
		Short: "Add a site to collect page views for",
		Long: `Add-site creates a site. Its pages collect views with the snippet it
prints; the domains are the hosts its pages are served from.`,
		Example: `  fazt analytics add-site blog --domain blog.example.com --name "My blog"`,
		Args:    cobra.ExactArgs(1),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			c, err := a.connect(sf)
			if err != nil {
				return err
			}
			defer c.close()
			var res analytics.CreateSiteResponse
			body := analytics.CreateSiteRequest{ID: args[0], Name: name, Domains: domains}
			raw, err := c.call(cmd.Context(), http.MethodPost, analytics.SitesPath, nil, body, &res)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printRaw(raw)
			}
			fmt.Fprintf(a.stdout, "created site %s (%s; %s) at seq %d\n", safe(res.Site.ID), safe(res.Site.Name), safe(strings.Join(res.Site.Domains, ", ")), res.Seq)
			fmt.Fprintf(a.stdout, "add this to its pages:\n  %s\n", safe(analytics.SnippetTag(c.base, res.Site.ID)))
			return nil
		}),
	}
	serverFlagsOn(cmd, &sf)
	f := cmd.Flags()
	f.StringArrayVar(&domains, "domain", nil, "a host the site's pages are served from (repeatable; at least one)")
	f.StringVar(&name, "name", "", "the site's display name (default: its id)")
	f.BoolVar(&asJSON, "json", false, "print the server's JSON answer")
	_ = cmd.MarkFlagRequired("domain")
	return cmd
}
