package analytics

// Event types of the vertical. Both live on the site's stream,
// SiteStream(site): the site_created event first, then its page views.
const (
	TypeSiteCreated      = "analytics.site_created"
	TypePageviewRecorded = "analytics.pageview_recorded"
	// Category is the category of every stream of the vertical.
	Category = "analytics"
)

// The schema versions this release appends its events with. A client
// that appends page views itself through POST /v1/events, as `fazt
// demo` does, sends these.
const (
	SiteCreatedVersion      = 1
	PageviewRecordedVersion = 2
)

// SiteCreated is the data of TypeSiteCreated (schema version 1).
type SiteCreated struct {
	Site    string   `json:"site"`
	Name    string   `json:"name"`
	Domains []string `json:"domains"`
}

// PageviewRecorded is the data of TypePageviewRecorded. Version 1 has
// every field but UTMSource; version 2 adds it, optional.
type PageviewRecorded struct {
	Site string `json:"site"`
	// Path is the page's URL path, without query or fragment.
	Path string `json:"path"`
	// Referrer is the referring host; "" for a direct visit or one from
	// the site itself.
	Referrer string `json:"referrer"`
	// UAClass is "desktop", "mobile" or "tablet".
	UAClass string `json:"ua_class"`
	// Visitor is the day's pseudonym of the visitor (see the package doc).
	Visitor string `json:"visitor"`
	// At is when the page was viewed, RFC 3339 in UTC: the projections
	// count by its day, never by the clock.
	At string `json:"at"`
	// UTMSource is the page URL's utm_source, lower-cased (version 2).
	UTMSource string `json:"utm_source,omitempty"`
}

// SiteStream is the stream of a site, "analytics.<site>": its creation
// and all its page views.
func SiteStream(site string) string { return Category + "." + site }

// The JSON Schemas. A shipped version never changes (the ledger in
// schemas/ holds them to it); a new one only adds optional properties.
const (
	siteCreatedV1 = `{
  "type": "object",
  "description": "a site whose page views are counted",
  "properties": {
    "site": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$", "description": "the site's id"},
    "name": {"type": "string", "maxLength": 200},
    "domains": {"type": "array", "minItems": 1, "items": {"type": "string", "maxLength": 253}, "description": "the hosts its pages are served from"}
  },
  "required": ["site", "name", "domains"]
}`

	pageviewRecordedV1 = `{
  "type": "object",
  "description": "a page of a site was viewed",
  "properties": {
    "site": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
    "path": {"type": "string", "maxLength": 512, "description": "URL path, without query or fragment"},
    "referrer": {"type": "string", "maxLength": 253, "description": "referring host; empty for a direct visit"},
    "ua_class": {"enum": ["desktop", "mobile", "tablet"]},
    "visitor": {"type": "string", "pattern": "^[0-9a-f]{32}$", "description": "the visitor's pseudonym for the day"},
    "at": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?Z$", "description": "when the page was viewed, RFC 3339 in UTC"}
  },
  "required": ["site", "path", "referrer", "ua_class", "visitor", "at"]
}`

	// Version 2 adds utm_source, optional: v1 events stay valid, and a v1
	// binary reads v2 events (it ignores the field).
	pageviewRecordedV2 = `{
  "type": "object",
  "description": "a page of a site was viewed",
  "properties": {
    "site": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
    "path": {"type": "string", "maxLength": 512, "description": "URL path, without query or fragment"},
    "referrer": {"type": "string", "maxLength": 253, "description": "referring host; empty for a direct visit"},
    "ua_class": {"enum": ["desktop", "mobile", "tablet"]},
    "visitor": {"type": "string", "pattern": "^[0-9a-f]{32}$", "description": "the visitor's pseudonym for the day"},
    "at": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?Z$", "description": "when the page was viewed, RFC 3339 in UTC"},
    "utm_source": {"type": "string", "maxLength": 64, "description": "the page URL's utm_source, lower-cased"}
  },
  "required": ["site", "path", "referrer", "ua_class", "visitor", "at"]
}`
)

// eventSchema is one version of an event type's schema and the release
// of the vertical that introduced it.
type eventSchema struct {
	typ     string
	version int
	schema  string
	release int
}

// eventSchemas lists every schema version ever shipped, oldest first.
var eventSchemas = []eventSchema{
	{TypeSiteCreated, 1, siteCreatedV1, 1},
	{TypePageviewRecorded, 1, pageviewRecordedV1, 1},
	{TypePageviewRecorded, 2, pageviewRecordedV2, 2},
}
