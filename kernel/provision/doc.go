// Package provision is Fazt's lifecycle on a server: installing it as a
// hardened systemd service, telling systemd how the server is doing, and
// (in the upgrade files of this package) replacing the binary safely.
//
// # Install
//
// [Install] puts Fazt on a machine in one step, and running it again is
// safe:
//
//	sudo fazt install --domain example.com --email you@example.com
//
// It copies the running binary to [BinPath] (unless a binary is
// installed there already: an installed binary is only ever replaced by
// an upgrade), writes the unit [UnitPath], then runs systemctl
// daemon-reload, enable and start. Start waits for the server's READY=1
// (see Notify below), so when install returns the server serves.
//
// Idempotence is by content: each file is compared byte for byte with
// what it would become and written (atomically: a temporary file,
// fsync, rename) only if it differs, so a second run with the same
// options changes no byte and no mtime and says "nothing changed".
// Other options rewrite the unit; the unified diff is printed and the
// service restarted. With DryRun the plan, the unit and the diff are
// printed and nothing changes. With Root the files go under a staging
// directory and systemctl is not run: how images are prepared and how
// the tests run without systemd as PID 1. [Uninstall] stops, disables
// and removes the unit, and keeps the data unless Purge.
//
// # The unit
//
// [Unit] renders it from [Options]. Its choices:
//
//   - DynamicUser=yes: systemd allocates the service's user when it
//     starts and frees it when it stops. Nothing is added to
//     /etc/passwd, so install writes only the unit and the binary (and a
//     staging root holds everything install does), uninstall leaves no
//     account behind, and DynamicUser= turns on more sandboxing
//     (ProtectHome=read-only, RemoveIPC=, RestrictSUIDSGID=). The state
//     directory belongs to that user: systemd keeps it in
//     /var/lib/private/fazt, reachable as [StateDir], and gives the
//     directory and its files to that user when it starts the service.
//   - StateDirectory=fazt holds both the data ([DataDir], the kernel's
//     directory: log, read models, token) and the binary ([BinDir]).
//     ProtectSystem=strict makes the whole file system read-only to the
//     service except its state directory, so that is where the binary
//     must live for the server to replace it: an upgrade writes the new
//     binary beside the old one in BinDir and renames it over BinPath
//     (atomic, same directory), keeping the previous one there, with no
//     ReadWritePaths= hole in the sandbox.
//   - CAP_NET_BIND_SERVICE, in AmbientCapabilities= and
//     CapabilityBoundingSet=, and no other capability: enough to bind
//     :80 and :443. PrivateUsers= is left out because a user namespace
//     would keep that capability from applying to the host's ports.
//   - NoNewPrivileges=, PrivateTmp=, PrivateDevices=, the Protect*=
//     family, RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX (TCP, and
//     the notify socket), RestrictNamespaces=,
//     MemoryDenyWriteExecute= (Go needs no writable code),
//     SystemCallFilter=@system-service minus @privileged and @resources
//     (answered EPERM rather than killing), UMask=0077.
//     `systemd-analyze security` rates the unit 1.6 ("OK"); IP address
//     allow-lists are left out, as a public server needs the internet.
//   - Type=notify, Restart=on-failure, a start limit, WatchdogSec=1min,
//     and EnvironmentFile=-[EnvFile] for secrets such as a backup
//     store's credentials (the unit itself is world-readable).
//
// Options become `fazt serve` arguments on ExecStart=. They are
// validated against what a unit line can carry: a domain must be a
// domain name (IDNA, stored in ASCII), an email a plain address, a
// backup URL an absolute URL without a password (and, for a file://
// replica, a directory under StateDir: the only place the sandbox lets
// the service write; mount a backup disk there); line breaks, spaces,
// quotes, backslashes, dollar signs and control characters are refused
// with the option named (ErrInvalid), so no value can add a directive.
// A % (percent-encoding in URLs) is written as %%, which systemd reads
// back as %.
//
// # Notify
//
// Under systemd, `fazt serve` speaks the notify protocol (sd_notify(3))
// on the datagram socket NOTIFY_SOCKET names ([Notifier]; it is a dozen
// lines, so no module is imported for it). [Notifier.Supervise] sends
// STATUS= lines while the server starts (the log opening, the critical
// read models catching up, shown by `systemctl status fazt`), READY=1
// once the kernel's readiness (/readyz) says ready and not before, and
// STOPPING=1 when it shuts down. While the read models catch up it
// extends systemd's start timeout (EXTEND_TIMEOUT_USEC=), so a long
// catch-up is not killed; a critical projection halted at an event is
// not progress, and the start then fails after TimeoutStartSec= with
// the halt in STATUS=. With WatchdogSec= in the unit (WATCHDOG_USEC), it
// sends WATCHDOG=1 at half the interval, each after the kernel's
// readiness has answered: a server stuck in its own locks stops pinging
// and systemd restarts it.
//
// # Testing
//
// The tests install into staging roots and compare every file's bytes,
// mode and mtime across runs; they run `systemd-analyze verify` and
// `systemd-analyze security --offline=true` on the generated unit
// (skipped, with the reason, where systemd's tools are not installed:
// apt-get install -y systemd); and they test the notify protocol on a
// real unixgram socket, against the real `fazt serve`.
package provision
