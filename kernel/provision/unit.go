package provision

import (
	"fmt"
	"net/mail"
	"net/url"
	"path"
	"strings"

	"golang.org/x/net/idna"

	"github.com/fazt-sh/fazt/eventlog"
)

// Where an installed Fazt lives. The paths are fixed so that the unit,
// the upgrade and the operator's commands agree without configuration.
const (
	// UnitName is the systemd unit install writes.
	UnitName = "fazt.service"
	// UnitPath is where the unit file goes.
	UnitPath = "/etc/systemd/system/" + UnitName
	// StateDir is the unit's StateDirectory=: with DynamicUser= systemd
	// keeps it in /var/lib/private/fazt and links it here.
	StateDir = "/var/lib/fazt"
	// PrivateStateDir is where systemd really keeps StateDir.
	PrivateStateDir = "/var/lib/private/fazt"
	// BinDir holds the binary the unit runs. It is inside the state
	// directory, the only place ProtectSystem=strict leaves writable, so
	// that an upgrade can rename a new binary over it.
	BinDir = StateDir + "/bin"
	// BinPath is the binary the unit runs.
	BinPath = BinDir + "/fazt"
	// DataDir is the kernel's data directory (fazt serve --data).
	DataDir = StateDir + "/data"
	// EnvFile is read by systemd, when it exists, for the service's
	// environment: the place for secrets such as a backup store's
	// credentials, which do not belong in a world-readable unit.
	EnvFile = "/etc/fazt/env"
)

// Options are what an operator chooses at install time. They become
// arguments of `fazt serve` in the unit's ExecStart=.
type Options struct {
	// Domain is the public domain the edge serves (serve --domain).
	Domain string
	// Email is the ACME contact for certificates (serve --email).
	Email string
	// Backup lists replica URLs (serve --backup, once each).
	Backup []string
}

// Validate checks every option against what may appear in a unit file,
// and returns the options in canonical form (a domain in lower-case
// ASCII). It refuses, with ErrInvalid and the option named, anything
// that could change the unit's meaning: line breaks, quotes,
// backslashes, dollar signs, spaces, control characters.
func (o Options) Validate() (Options, error) {
	var err error
	if o.Domain != "" {
		if o.Domain, err = checkDomain(o.Domain); err != nil {
			return o, fmt.Errorf("%w: --domain %s", eventlog.ErrInvalid, err)
		}
	}
	if o.Email != "" {
		if err := checkEmail(o.Email); err != nil {
			return o, fmt.Errorf("%w: --email %s", eventlog.ErrInvalid, err)
		}
	}
	seen := map[string]bool{}
	for _, u := range o.Backup {
		if err := checkBackupURL(u); err != nil {
			return o, fmt.Errorf("%w: --backup %s", eventlog.ErrInvalid, err)
		}
		if seen[u] {
			return o, fmt.Errorf("%w: --backup %q is given twice", eventlog.ErrInvalid, u)
		}
		seen[u] = true
	}
	return o, nil
}

// checkDomain returns the domain in its ASCII (punycode) form.
func checkDomain(d string) (string, error) {
	if bad := firstUnsafe(d, func(r rune) bool { return r > ' ' && r != 0x7f }); bad != "" {
		return "", fmt.Errorf("%q has %s: give a plain domain such as example.com", d, bad)
	}
	a, err := idna.Lookup.ToASCII(strings.TrimSuffix(d, "."))
	if err != nil {
		return "", fmt.Errorf("%q is not a domain name: %v", d, err)
	}
	if !strings.Contains(a, ".") || len(a) > 253 {
		return "", fmt.Errorf("%q is not a public domain name such as example.com", d)
	}
	for _, label := range strings.Split(a, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("%q is not a domain name: bad label %q", d, label)
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", fmt.Errorf("%q is not a domain name: %q in label %q", d, c, label)
			}
		}
	}
	return a, nil
}

// checkEmail takes a bare address, local@domain, of the characters
// mail addresses are usually made of.
func checkEmail(e string) error {
	okLocal := func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".!#&*+/=?^_{|}~-", r)
	}
	at := strings.LastIndexByte(e, '@')
	if at <= 0 {
		return fmt.Errorf("%q is not an email address such as you@example.com", e)
	}
	if bad := firstUnsafe(e[:at], okLocal); bad != "" {
		return fmt.Errorf("%q has %s: give a plain address such as you@example.com", e, bad)
	}
	if _, err := checkDomain(e[at+1:]); err != nil {
		return fmt.Errorf("%q: its domain %v", e, err)
	}
	if a, err := mail.ParseAddress(e); err != nil || a.Name != "" || a.Address != e {
		return fmt.Errorf("%q is not an email address such as you@example.com", e)
	}
	return nil
}

// checkBackupURL takes an absolute URL of URL characters, without a
// password (the unit file is world-readable: credentials go in EnvFile)
// and without quotes, backslashes, dollar signs or commas (a flag may
// split on them): percent-encode those.
func checkBackupURL(s string) error {
	okURL := func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._~:/?#[]@!&()*+;=%", r)
	}
	if bad := firstUnsafe(s, okURL); bad != "" {
		return fmt.Errorf("%q has %s: percent-encode it (a space is %%20)", s, bad)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %v", s, err)
	}
	if u.Scheme == "" || (u.Host == "" && u.Path == "" && u.Opaque == "") {
		return fmt.Errorf("%q is not a replica URL such as s3://bucket/fazt or file://%s/backup", s, StateDir)
	}
	if _, ok := u.User.Password(); ok {
		return fmt.Errorf("%q holds a password: the unit file is world-readable; put credentials in %s (KEY=value lines, mode 0600) instead", u.Redacted(), EnvFile)
	}
	// ProtectSystem=strict leaves the service only its state directory
	// to write: a local replica elsewhere would fail at every write.
	if u.Scheme == "file" {
		p := path.Clean("/" + u.Path)
		if u.Host != "" && u.Host != "localhost" || !strings.HasPrefix(p, StateDir+"/") || p == DataDir || strings.HasPrefix(p, DataDir+"/") || p == BinDir || strings.HasPrefix(p, BinDir+"/") {
			return fmt.Errorf("%q: the service may write only under %s: give a directory there, such as file://%s/backup (mount a backup disk there), or a replica off this machine (s3://…)", s, StateDir, StateDir)
		}
	}
	return nil
}

// firstUnsafe describes the first rune of s that ok refuses, or "".
func firstUnsafe(s string, ok func(rune) bool) string {
	for i, r := range s {
		if r == '\uFFFD' && !strings.HasPrefix(s[i:], "\uFFFD") {
			return "bytes that are not UTF-8"
		}
		if !ok(r) {
			switch {
			case r == '\n' || r == '\r':
				return "a line break"
			case r < ' ' || r == 0x7f:
				return fmt.Sprintf("a control character (%U)", r)
			case r == ' ':
				return "a space"
			}
			return fmt.Sprintf("the character %q", r)
		}
	}
	return ""
}

// Args returns the `fazt serve` arguments the options make.
func (o Options) Args() []string {
	args := []string{"serve", "--data", DataDir}
	if o.Domain != "" {
		args = append(args, "--domain", o.Domain)
	}
	if o.Email != "" {
		args = append(args, "--email", o.Email)
	}
	for _, u := range o.Backup {
		args = append(args, "--backup", u)
	}
	return args
}

// unitTemplate is the unit, hardened as far as Fazt allows: it writes
// only its state directory, binds :80/:443 with CAP_NET_BIND_SERVICE
// and no other capability, opens TCP sockets and the notify socket
// (AF_UNIX), and replaces its own binary inside the state directory.
// PrivateUsers= is left out: a user namespace would keep the capability
// from binding low ports on the host's network.
const unitTemplate = `# Written by fazt install; fazt install and fazt uninstall change it.
[Unit]
Description=Fazt personal cloud
Documentation=https://github.com/fazt-sh/fazt
Wants=network-online.target
After=network-online.target
StartLimitIntervalSec=10min
StartLimitBurst=5

[Service]
Type=notify
NotifyAccess=main
ExecStart={{ExecStart}}
EnvironmentFile=-` + EnvFile + `
Restart=on-failure
RestartSec=2s
TimeoutStartSec=90s
TimeoutStopSec=30s
WatchdogSec=1min
LimitNOFILE=65536

DynamicUser=yes
StateDirectory=fazt
StateDirectoryMode=0700
UMask=0077
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
DevicePolicy=closed
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
ProcSubset=pid
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
KeyringMode=private
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
`

// Unit renders the unit file for the options, which it validates first.
func Unit(o Options) ([]byte, error) {
	o, err := o.Validate()
	if err != nil {
		return nil, err
	}
	words := []string{quoteExecArg(BinPath)}
	for _, a := range o.Args() {
		words = append(words, quoteExecArg(a))
	}
	return []byte(strings.Replace(unitTemplate, "{{ExecStart}}", strings.Join(words, " "), 1)), nil
}

// quoteExecArg writes one ExecStart= word so that systemd reads it back
// byte for byte: % and $ are doubled (specifiers and variables), and a
// word with anything beyond plain characters is double-quoted with
// backslash escapes. Validate already refuses line breaks and quotes;
// this is the second line of defence.
func quoteExecArg(s string) string {
	plain := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._:@=+,-", r)) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '%':
			b.WriteString("%%")
		case '$':
			b.WriteString("$$")
		case '\\', '"', '\'':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < ' ' || r == 0x7f {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}
