package vfs

import "regexp"

// Event types of the service. They live on the site's stream,
// SiteStream(site), in the category "vfs", which only the service
// writes.
const (
	TypeDeployRecorded  = "vfs.deploy_recorded"
	TypeDeployActivated = "vfs.deploy_activated"
	TypeSiteDeleted     = "vfs.site_deleted"
	// Category is the category of every stream of the service.
	Category = "vfs"
)

// SiteStream is the stream of a site, "vfs.<site>".
func SiteStream(site string) string { return Category + "." + site }

var siteRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidSite reports whether site is a site name: [a-z0-9][a-z0-9-]{0,62}
// (a DNS label, so that NAME.localhost works).
func ValidSite(site string) bool { return siteRE.MatchString(site) }

// Manifest is what a deploy holds: its files by path, and how requests
// that match no file are answered.
type Manifest struct {
	// Files maps a path ("index.html", "assets/app.3f2a9c1d.js": clean,
	// relative, "/"-separated) to its file.
	Files map[string]File `json:"files"`
	// Fallback, when set, is the path served (status 200) for a request
	// that matches no file: "index.html" for a single-page app.
	Fallback string `json:"fallback,omitempty"`
	// NotFound, when set, is the path served with status 404 for a
	// request that matches no file (and no Fallback): "404.html".
	NotFound string `json:"not_found,omitempty"`
}

// File is one file of a manifest.
type File struct {
	// SHA256 is the blob holding the content (lower-case hex).
	SHA256 string `json:"sha256"`
	// Size is the content's length in bytes.
	Size int64 `json:"size"`
	// Type is the Content-Type; empty in a deploy: the server chooses it
	// from the extension, or else from the content.
	Type string `json:"type,omitempty"`
	// Gzip and Br are the precompressed variants, made by the server at
	// deploy for compressible types when smaller; never set by a client.
	Gzip *Variant `json:"gzip,omitempty"`
	Br   *Variant `json:"br,omitempty"`
}

// Variant is a precompressed form of a file, a blob of its own.
type Variant struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// DeployRecorded is the data of TypeDeployRecorded. Version 1 carries
// the manifest in the event. Version 2 adds ManifestBlob: a deploy whose
// manifest does not fit in one event (MaxManifestBytes) stores it as a
// blob of its own and names it there, with Files empty.
type DeployRecorded struct {
	Site   string `json:"site"`
	Deploy string `json:"deploy"` // a ULID
	Manifest
	// ManifestBlob, when set, names the blob holding the manifest as
	// JSON (files, fallback, not_found); the event's Files is then empty.
	ManifestBlob *Variant `json:"manifest,omitempty"`
}

// DeployActivated is the data of TypeDeployActivated (version 1): the
// deploy serves the site from now on. Rollback activates an earlier one.
type DeployActivated struct {
	Site   string `json:"site"`
	Deploy string `json:"deploy"`
}

// SiteDeleted is the data of TypeSiteDeleted (version 1): the site
// serves nothing until a deploy is activated again. Its history stays.
type SiteDeleted struct {
	Site string `json:"site"`
}

// The JSON Schemas. A shipped version never changes (the ledger in
// schemas/ holds them to it); a new one only adds optional properties.
const (
	variantSchema = `{"type": "object", "properties": {"sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}, "size": {"type": "integer", "minimum": 0}}, "required": ["sha256", "size"]}`

	deployRecordedV1 = deployRecordedHead + deployRecordedTail

	// Version 2 adds "manifest", for deploys too large for one event.
	deployRecordedV2 = deployRecordedHead + `,
    "manifest": {"type": "object", "description": "when set, the blob (SHA-256 and size) holding the manifest as JSON {files, fallback, not_found}, stored before; files is then empty", "properties": {"sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}, "size": {"type": "integer", "minimum": 0}}, "required": ["sha256", "size"]}` + deployRecordedTail

	deployRecordedHead = `{
  "type": "object",
  "description": "a deploy of a site: its files by path, each naming the blob (SHA-256) that holds it; every blob was stored before",
  "properties": {
    "site": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
    "deploy": {"type": "string", "pattern": "^[0-9A-HJKMNP-TV-Z]{26}$", "description": "the deploy's id, a ULID"},
    "files": {
      "type": "object",
      "propertyNames": {"maxLength": 512},
      "additionalProperties": {
        "type": "object",
        "properties": {
          "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
          "size": {"type": "integer", "minimum": 0},
          "type": {"type": "string", "maxLength": 255},
          "gzip": ` + variantSchema + `,
          "br": ` + variantSchema + `
        },
        "required": ["sha256", "size", "type"]
      }
    },
    "fallback": {"type": "string", "maxLength": 512, "description": "path served for requests that match no file (single-page apps)"},
    "not_found": {"type": "string", "maxLength": 512, "description": "path served with 404 for requests that match no file"}`
	deployRecordedTail = `
  },
  "required": ["site", "deploy", "files"]
}`

	deployActivatedV1 = `{
  "type": "object",
  "description": "a recorded deploy serves its site from now on",
  "properties": {
    "site": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
    "deploy": {"type": "string", "pattern": "^[0-9A-HJKMNP-TV-Z]{26}$"}
  },
  "required": ["site", "deploy"]
}`

	siteDeletedV1 = `{
  "type": "object",
  "description": "a site serves nothing from now on; its deploys stay in the log",
  "properties": {
    "site": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"}
  },
  "required": ["site"]
}`
)

// eventSchemas lists every schema version ever shipped, oldest first.
var eventSchemas = []struct {
	typ     string
	version int
	schema  string
}{
	{TypeDeployRecorded, 1, deployRecordedV1},
	{TypeDeployRecorded, 2, deployRecordedV2},
	{TypeDeployActivated, 1, deployActivatedV1},
	{TypeSiteDeleted, 1, siteDeletedV1},
}
