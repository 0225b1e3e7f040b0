package apps

import "fmt"

// Event types of the vertical: the names an app answers to besides its
// own. They live on the app's stream, AppStream(app), in the category
// Category, which only the vertical writes. Deploys, activations and
// deletions are the vfs service's events (vfs.TypeDeployRecorded, ...).
const (
	TypeAliasAdded    = "apps.alias_added"
	TypeAliasRemoved  = "apps.alias_removed"
	TypeDomainAdded   = "apps.domain_added"
	TypeDomainRemoved = "apps.domain_removed"
	// Category is the category of every stream of the vertical.
	Category = "apps"
)

// AppStream is the stream of an app's names, "apps.<app>".
func AppStream(app string) string { return Category + "." + app }

// AliasChanged is the data of TypeAliasAdded and TypeAliasRemoved
// (version 1): ALIAS.localhost serves App (or no longer does).
type AliasChanged struct {
	App   string `json:"app"`
	Alias string `json:"alias"`
}

// DomainChanged is the data of TypeDomainAdded and TypeDomainRemoved
// (version 1): requests with Host Domain are answered by App (or no
// longer are). The edge certifies and serves bound domains on the
// public listener; the kernel's listener serves them already.
type DomainChanged struct {
	App    string `json:"app"`
	Domain string `json:"domain"` // lower-case ASCII (IDNs in punycode), no trailing dot
}

// The JSON Schemas. A shipped version never changes (the ledger in
// schemas/ holds them to it); a new one only adds optional properties.
const (
	aliasV1 = `{
  "type": "object",
  "description": "%s",
  "properties": {
    "app": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
    "alias": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"}
  },
  "required": ["app", "alias"]
}`
	domainV1 = `{
  "type": "object",
  "description": "%s",
  "properties": {
    "app": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
    "domain": {"type": "string", "maxLength": 253, "pattern": "^[a-z0-9.-]+$"}
  },
  "required": ["app", "domain"]
}`
	nameV1 = `{
  "type": "object",
  "description": "%s",
  "properties": {
    "name": {"type": "string", "maxLength": 253, "pattern": "^[a-z0-9.-]+$"},
    "app": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
    "kind": {"enum": ["app", "alias", "domain"]}
  },
  "required": ["name", "app", "kind"]
}`
)

// eventSchemas lists every schema version ever shipped, oldest first.
var eventSchemas = []struct {
	typ     string
	version int
	schema  string
}{
	{TypeAliasAdded, 1, fmt.Sprintf(aliasV1, "ALIAS.localhost serves the app too")},
	{TypeAliasRemoved, 1, fmt.Sprintf(aliasV1, "ALIAS.localhost no longer serves the app")},
	{TypeDomainAdded, 1, fmt.Sprintf(domainV1, "requests for the domain are answered by the app; the edge certifies it")},
	{TypeDomainRemoved, 1, fmt.Sprintf(domainV1, "requests for the domain are no longer answered by the app")},
	{TypeNameClaimed, 1, fmt.Sprintf(nameV1, "the name is the app's: its own, an alias or a domain; a claim expects the name stream's version, so of two at once one lands")},
	{TypeNameReleased, 1, fmt.Sprintf(nameV1, "the name is free again: an alias or a domain was removed")},
}
