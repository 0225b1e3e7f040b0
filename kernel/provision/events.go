package provision

// Event types of the upgrades, on the stream UpgradeStream in the
// category "provision", which only this package writes.
const (
	// TypeUpgradeRequested: an upgrade was asked for, by the command
	// (which carries it out) or by an event for the service's reactor.
	TypeUpgradeRequested = "provision.upgrade_requested"
	// TypeUpgradeStarted: a verified release was staged and swapped in;
	// the new binary is being started.
	TypeUpgradeStarted = "provision.upgrade_started"
	// TypeUpgradeCompleted: the new binary serves and is ready.
	TypeUpgradeCompleted = "provision.upgrade_completed"
	// TypeUpgradeRolledBack: the new binary did not become ready; the
	// previous one was put back and serves again.
	TypeUpgradeRolledBack = "provision.upgrade_rolled_back"
	// TypeUpgradeRefused: the release was refused before anything
	// changed (signature, platform, version, hash).
	TypeUpgradeRefused = "provision.upgrade_refused"

	// Category is the category of the service's streams.
	Category = "provision"
	// UpgradeStream holds the upgrade history.
	UpgradeStream = Category + ".upgrades"
)

// Who carries out a requested upgrade (UpgradeRequested.By).
const (
	ByCommand = "command" // the `fazt upgrade` that recorded the request
	ByService = "service" // the service's reactor, which starts one
)

// UpgradeRequested is the data of TypeUpgradeRequested (version 1).
type UpgradeRequested struct {
	// Upgrade identifies the upgrade in the events that follow: the ID
	// of this event.
	Upgrade string `json:"upgrade"`
	// From is the release's manifest, a URL or a file path on the server.
	From string `json:"from"`
	// Key, when set, is the release key the command was given instead
	// of the built-in one. The service ignores it (DefaultUpgradeArgs).
	Key string `json:"key,omitempty"`
	// Running is the version that was serving.
	Running string `json:"running"`
	By      string `json:"by"`
}

// UpgradeStarted is the data of TypeUpgradeStarted (version 1).
type UpgradeStarted struct {
	Upgrade  string `json:"upgrade"`
	From     string `json:"from_version"`
	To       string `json:"to_version"`
	Binary   string `json:"binary"` // the path replaced
	SHA256   string `json:"sha256"`
	Platform string `json:"platform"`
	// Via is how the new binary is started: "systemd", "reexec", or
	// "none" when no server was running.
	Via string `json:"via"`
}

// UpgradeCompleted is the data of TypeUpgradeCompleted (version 1).
type UpgradeCompleted struct {
	Upgrade string `json:"upgrade"`
	From    string `json:"from_version"`
	To      string `json:"to_version"`
}

// UpgradeRolledBack is the data of TypeUpgradeRolledBack (version 1).
type UpgradeRolledBack struct {
	Upgrade string `json:"upgrade"`
	From    string `json:"from_version"` // the version serving again
	To      string `json:"to_version"`   // the version that failed
	Reason  string `json:"reason"`
}

// UpgradeRefused is the data of TypeUpgradeRefused (version 1).
type UpgradeRefused struct {
	Upgrade string `json:"upgrade"`
	Running string `json:"running"`
	To      string `json:"to_version,omitempty"` // empty when the manifest could not be read
	Reason  string `json:"reason"`
}

// The JSON Schemas. A shipped version never changes (the ledger in
// schemas/ holds them to it); a new one only adds optional properties.
const (
	ulidProp    = `{"type": "string", "pattern": "^[0-9A-HJKMNP-TV-Z]{26}$"}`
	versionProp = `{"type": "string", "maxLength": 256}`
	reasonProp  = `{"type": "string", "maxLength": 4096}`

	upgradeRequestedV1 = `{
  "type": "object",
  "description": "an upgrade was asked for",
  "properties": {
    "upgrade": ` + ulidProp + `,
    "from": {"type": "string", "minLength": 1, "maxLength": 2048, "description": "the release manifest: a URL or a file path"},
    "key": {"type": "string", "maxLength": 4096, "description": "the release key to check it with, instead of the built-in one"},
    "running": ` + versionProp + `,
    "by": {"enum": ["command", "service"], "description": "command: the fazt upgrade that recorded it carries it out; service: the provisioning service does"}
  },
  "required": ["upgrade", "from", "running", "by"]
}`

	upgradeStartedV1 = `{
  "type": "object",
  "description": "a verified release was swapped in; the new binary is starting",
  "properties": {
    "upgrade": ` + ulidProp + `,
    "from_version": ` + versionProp + `,
    "to_version": ` + versionProp + `,
    "binary": {"type": "string", "maxLength": 4096},
    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    "platform": {"type": "string", "maxLength": 64},
    "via": {"enum": ["systemd", "reexec", "none"]}
  },
  "required": ["upgrade", "from_version", "to_version", "binary", "sha256", "via"]
}`

	upgradeCompletedV1 = `{
  "type": "object",
  "description": "the new binary serves and is ready",
  "properties": {
    "upgrade": ` + ulidProp + `,
    "from_version": ` + versionProp + `,
    "to_version": ` + versionProp + `
  },
  "required": ["upgrade", "from_version", "to_version"]
}`

	upgradeRolledBackV1 = `{
  "type": "object",
  "description": "the new binary did not become ready; the previous one was put back and serves again",
  "properties": {
    "upgrade": ` + ulidProp + `,
    "from_version": ` + versionProp + `,
    "to_version": ` + versionProp + `,
    "reason": ` + reasonProp + `
  },
  "required": ["upgrade", "from_version", "to_version", "reason"]
}`

	upgradeRefusedV1 = `{
  "type": "object",
  "description": "a release was refused before anything changed",
  "properties": {
    "upgrade": ` + ulidProp + `,
    "running": ` + versionProp + `,
    "to_version": ` + versionProp + `,
    "reason": ` + reasonProp + `
  },
  "required": ["upgrade", "running", "reason"]
}`
)

// eventSchemas lists every schema version ever shipped, oldest first.
var eventSchemas = []struct {
	typ     string
	version int
	schema  string
}{
	{TypeUpgradeRequested, 1, upgradeRequestedV1},
	{TypeUpgradeStarted, 1, upgradeStartedV1},
	{TypeUpgradeCompleted, 1, upgradeCompletedV1},
	{TypeUpgradeRolledBack, 1, upgradeRolledBackV1},
	{TypeUpgradeRefused, 1, upgradeRefusedV1},
}

// recordTypes are the types POST /v1/provision/records takes.
var recordTypes = map[string]bool{
	TypeUpgradeRequested:  true,
	TypeUpgradeStarted:    true,
	TypeUpgradeCompleted:  true,
	TypeUpgradeRolledBack: true,
	TypeUpgradeRefused:    true,
}
