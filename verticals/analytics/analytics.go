package analytics

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fazt-sh/fazt/kernel"
)

// Defaults and limits.
const (
	DefaultTopLimit  = 10  // rows in each top list of the stats
	MaxTopLimit      = 100 // the most the limit parameter may ask
	DefaultRangeDays = 30  // days the stats cover when from/to are not given
	MaxRangeDays     = 366 // the longest range the stats answer
	MaxPathBytes     = 512 // a longer path is cut
	MaxSourceBytes   = 64  // a longer utm_source is cut
	MaxDomains       = 20  // domains of one site
	MaxNameBytes     = 200 // a site's name
	// DefaultMaxWait bounds how long the admin reads wait for the
	// projection to catch up with the log.
	DefaultMaxWait = 5 * time.Second
)

// The paths of the vertical's routes, for its clients (see the package
// doc for what each answers).
const (
	SitesPath   = "/v1/analytics/sites"     // POST creates a site, GET lists them
	CollectPath = "/v1/analytics/collect"   // POST records a page view (public)
	ScriptPath  = "/v1/analytics/script.js" // GET serves the snippet (public)
)

// StatsPath is the path of a site's stats, GET /v1/analytics/{site}/stats.
func StatsPath(site string) string { return "/v1/analytics/" + url.PathEscape(site) + "/stats" }

// Config tunes the vertical. The zero value is ready to use.
type Config struct {
	// Now is the clock (time.Now): it stamps page views and rotates the
	// daily salt. Tests set it to move across days.
	Now func() time.Time
	// SaltDir holds the daily salt file (default k.Dir("analytics")).
	SaltDir string
	// AllowHosts are page hosts accepted for every site besides its own
	// domains, such as "localhost" while developing a site. Empty: only
	// the site's domains.
	AllowHosts []string
	// TopLimit is the default length of the top lists (DefaultTopLimit).
	TopLimit int
	// MaxWait bounds how long the admin reads wait for the projection to
	// catch up with the log (DefaultMaxWait); past it they answer 503.
	MaxWait time.Duration
}

// current is this code's release of the vertical's declarations. Release
// N registers the event schemas introduced up to N, records page views
// with the newest of them, and runs projection version N. Older releases
// stay in code: the EDD test runs them against data a newer one wrote,
// as an older binary would after a rollback.
const current = 2

// vertical is one registration of analytics on a kernel.
type vertical struct {
	k       *kernel.Kernel
	cfg     Config
	release int
	allow   map[string]bool // Config.AllowHosts
	sites   *siteCache
	salts   *salts
}

// Register declares the analytics vertical on k, before k.Open: its
// event types, its projection and its routes (see the package doc).
func Register(k *kernel.Kernel, cfg Config) error {
	return register(k, cfg, current)
}

func register(k *kernel.Kernel, cfg Config, release int) error {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SaltDir == "" {
		cfg.SaltDir = k.Dir("analytics")
	}
	if cfg.TopLimit <= 0 {
		cfg.TopLimit = DefaultTopLimit
	}
	cfg.TopLimit = min(cfg.TopLimit, MaxTopLimit)
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	v := &vertical{k: k, cfg: cfg, release: release, allow: map[string]bool{}, sites: newSiteCache(),
		salts: newSalts(cfg.SaltDir)}
	for _, h := range cfg.AllowHosts {
		v.allow[strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")] = true
	}

	for _, s := range eventSchemas {
		if s.release > release {
			continue
		}
		if err := k.RegisterEvent(s.typ, s.version, []byte(s.schema)); err != nil {
			return fmt.Errorf("analytics: %w", err)
		}
	}
	if err := k.RegisterProjection(projection(release)); err != nil {
		return fmt.Errorf("analytics: %w", err)
	}
	routes := []struct {
		pattern string
		public  bool
		h       http.HandlerFunc
	}{
		{"POST " + SitesPath, false, v.createSite},
		{"GET " + SitesPath, false, v.listSites},
		{"GET /v1/analytics/{site}/stats", false, v.stats},
		{"POST " + CollectPath, true, v.collect},
		{"OPTIONS " + CollectPath, true, v.preflight},
		{"GET " + ScriptPath, true, v.script},
	}
	for _, rt := range routes {
		handle := k.Handle
		if rt.public {
			handle = k.HandlePublic
		}
		if err := handle(rt.pattern, rt.h); err != nil {
			return fmt.Errorf("analytics: %w", err)
		}
	}
	return nil
}
