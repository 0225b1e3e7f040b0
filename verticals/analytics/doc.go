// Package analytics is privacy-friendly page analytics for the sites a
// user hosts, in the manner of Plausible: page views, unique visitors,
// top pages, referrers and campaign sources, without cookies and without
// keeping anything that identifies a person. It is also the example
// vertical: how to declare events, a projection and routes on the
// kernel, how to read the projection (stats.go), and how to evolve them
// by EDD rules.
//
// # Usage
//
//	k := kernel.New("./data")
//	if err := analytics.Register(k, analytics.Config{}); err != nil { ... }
//	if err := k.Open(ctx); err != nil { ... }
//
// Create a site, then add the snippet to its pages:
//
//	curl -H "Authorization: Bearer $TOKEN" -d '{"id":"blog","name":"My blog","domains":["blog.example.com"]}' \
//		http://127.0.0.1:8080/v1/analytics/sites
//
//	<script defer data-site="blog" src="http://127.0.0.1:8080/v1/analytics/script.js"></script>
//
// The snippet (under 1 KiB, no cookies, no storage) sends one hit per
// page view with navigator.sendBeacon (or fetch with keepalive) to the
// collect route next to its own URL, on load and on each in-page
// navigation of a single-page app (history.pushState, popstate). It does
// nothing under automation (navigator.webdriver) and waits for a
// prerendered page to be shown.
//
// # What is recorded, and what is not
//
// A page view records the site, the URL's path (no query string, no
// fragment, at most MaxPathBytes), the referrer's host only ("" for a
// direct visit or one from the site's own domains), the URL's
// utm_source (lower-cased, at most MaxSourceBytes), a device class
// (desktop, mobile, tablet) read from the user agent, the time, and a
// visitor pseudonym:
//
//	hex(sha256(daily_salt, site, client_ip, user_agent))[:32]
//
// The path and utm_source are recorded as clean text: bytes that are not
// UTF-8, control characters (C0 such as a decoded newline, tab, ESC or
// NUL; DEL; C1), the line and paragraph separators and the bidirectional
// formatting characters (U+061C, U+200E, U+200F, U+202A to U+202E,
// U+2066 to U+2069) become U+FFFD, so a report cannot drive the terminal
// that prints it or reorder its text. A referrer whose host holds such a
// character is recorded as direct.
//
// (the fields separated by a zero byte). The IP address and the user
// agent themselves are never stored. The salt is 32 random bytes kept
// only in the file SaltFile in Config.SaltDir (mode 0600), replaced at
// midnight UTC: yesterday's salt is gone, so pseudonyms cannot be linked
// across days, by anyone. The file keeps the day's salt across restarts,
// so a restart does not count a visitor twice. Because the salt changes
// every day, a visitor is unique per day, by design: the visitors of a
// range are the sum of its daily uniques, and someone who comes back
// tomorrow counts again.
//
// Requests from bots are answered like any other (202) and not
// recorded: no user agent, the user agents of crawlers, HTTP libraries,
// headless browsers, link previews and uptime monitors, and prefetches
// (Sec-Purpose or Purpose: prefetch).
//
// # Routes
//
// Admin routes (the API token required):
//
//   - POST /v1/analytics/sites {"id","name","domains"} creates a site:
//     201 {"site":{...},"seq":N}; 409 when the id is taken; 400 for an
//     id that is not [a-z0-9][a-z0-9-]{0,62} or domains that are not
//     bare host names.
//   - GET /v1/analytics/sites lists them: {"sites":[{"id","name",
//     "domains","created"}]}.
//   - GET /v1/analytics/{site}/stats?from=YYYY-MM-DD&to=YYYY-MM-DD&limit=N
//     answers views, visitors, every day of the range (zeros included)
//     and the top paths, referrers and sources, with the log position
//     "seq" the figures reflect. The range is inclusive, in UTC, by
//     default the last DefaultRangeDays days ending today, at most
//     MaxRangeDays; limit defaults to Config.TopLimit, at most
//     MaxTopLimit. Direct visits are in no top list.
//
// Public routes (no token, rate limited per client address by the
// kernel, small bodies):
//
//   - POST /v1/analytics/collect {"site","url","referrer"}, as
//     application/json or text/plain (what sendBeacon sends), with CORS
//     open to every origin (OPTIONS answers the preflight). 202 without
//     a body when accepted; 404 for an unknown site; 400 when the URL's
//     host is not one of the site's domains (or Config.AllowHosts), so
//     no one can fill another site's figures from elsewhere.
//   - GET /v1/analytics/script.js, the snippet, cacheable for an hour.
//
// Clients, such as fazt's CLI, use the exported names instead of
// spelling them out: the paths SitesPath, StatsPath(site), CollectPath
// and ScriptPath; the bodies CreateSiteRequest, CreateSiteResponse,
// ListSitesResponse and Stats; SnippetTag for the script tag; and
// ValidSiteID for an id's form.
//
// The collector keeps the sites in memory: a site never changes once
// created, and an unknown id is looked up in the log itself (the first
// event of its stream), so a site is usable the moment it is created.
// The admin reads go through projections.Runner.Read, the way every
// vertical reads its read model: they wait until the projection serves
// this release's version and has folded everything the log held when
// they began (MinSeq is the log's LastSeq), so they read their own
// writes, and the "seq" of the stats is the checkpoint read in the same
// transaction as the figures. They answer 503 if the projection is still
// catching up after Config.MaxWait (a rebuild, for example), or at once
// if it is halted before the log's end.
//
// # Events
//
// Both live on the site's stream, SiteStream(site) ("analytics.<site>",
// of Category "analytics"), which the create route requires to be new
// (kernel.Decide), so its first event is the site's creation:
//
//   - TypeSiteCreated, version 1: SiteCreated.
//   - TypePageviewRecorded, version 1: PageviewRecorded without
//     utm_source; version 2 adds utm_source, optional. Page views are
//     appended without expectation: they need no decision.
//
// SiteCreatedVersion and PageviewRecordedVersion are the versions this
// release appends; a client that appends page views itself through
// POST /v1/events (`fazt demo` imports its sample that way) sends them.
//
// # Projection
//
// The projection "analytics" folds both into one SQLite file: sites;
// daily (views and unique visitors per site and day); daily_visitors
// (the day's pseudonyms, to count each once); daily_paths,
// daily_referrers and daily_sources (views per key per day); and
// pageviews, one row per view, for ad-hoc queries through POST
// /v1/query. The fold keys days on the event's "at", never the clock,
// so a rebuild gives the same rows. It writes each page view's row at
// once and counts the daily tables per batch of events
// (projections.Batch), writing each key once per batch: about 2.6
// statements per page view while rebuilding (analyticsbench's sample),
// against 4.7 with an upsert per table and event. Projection returns the read model
// for folding the log without a kernel (projections.Runner.BuildAsOf);
// package analyticsbench measures its rebuild (see BENCHMARKS.md).
//
// # Evolution (EDD)
//
// Storage only grows. Release 1 of this vertical recorded no campaign
// source. Release 2 added it the EDD way:
//
//   - the event gained a version 2 that only adds the optional property
//     utm_source (schemas.CheckCompatible accepts it; v1 events stay
//     valid, and a v1 binary reads v2 events, ignoring the field);
//   - the table pageviews gained a nullable column utm_source, and the
//     table daily_sources was added;
//   - the projection's Version went from 1 to 2, so the runner rebuilt
//     it from the log, blue/green, while the old file kept serving: v1
//     events land with utm_source NULL, v2 events with their source.
//
// Release 1's declarations stay in the code (tablesV1, the fold and
// queries of release 1) and the tests run them against a file release 2
// wrote: migrating it with the old tables changes nothing, the old
// queries answer, the old fold inserts. Running release 1 again on the
// data (a rollback) serves the previous file, which folds the v2 events
// as v1. The ledger, schemas/ledger.jsonl, records both releases.
package analytics
