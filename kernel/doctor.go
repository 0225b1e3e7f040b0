package kernel

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fazt-sh/fazt/kernel/reactor"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/projections/sqlitedb"
)

// Statuses of a Check.
const (
	CheckOK   = "ok"
	CheckWarn = "warn"
	CheckFail = "fail"
	// CheckSkipped: not checked; Detail says why, Fix how to check it.
	CheckSkipped = "skipped"
)

// Check is one finding of Doctor.
type Check struct {
	Name   string `json:"name"`
	Status string `json:"status"` // CheckOK, CheckWarn, CheckFail or CheckSkipped
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"` // what to do, when not ok
}

// lowDiskBytes warns when the data directory's file system has less free.
const lowDiskBytes = 1 << 30

// DiagnoseDir checks a data directory without opening it and without
// writing to it: what Doctor checks first, and all that can be checked
// while another process holds the log.
func DiagnoseDir(dir string) []Check {
	var out []Check
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return []Check{{Name: "data directory", Status: CheckFail, Detail: dir + " does not exist",
			Fix: "start the server once with `fazt serve --data " + dir + "` to create it, or pass the right --data"}}
	case err != nil:
		return []Check{{Name: "data directory", Status: CheckFail, Detail: err.Error(), Fix: "make " + dir + " readable by the user running fazt"}}
	case !st.IsDir():
		return []Check{{Name: "data directory", Status: CheckFail, Detail: dir + " is not a directory", Fix: "pass a directory to --data"}}
	}
	c := Check{Name: "data directory", Status: CheckOK, Detail: dir}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		c.Status, c.Fix = CheckWarn, "chmod 700 "+dir+": the log and read models are private"
		c.Detail += fmt.Sprintf(" (mode %v)", st.Mode().Perm())
	}
	if err := writable(dir); err != nil {
		c.Status, c.Detail, c.Fix = CheckFail, dir+" is not writable: "+err.Error(), "give the user running fazt write access to "+dir
	}
	out = append(out, c)
	if free, ok := freeBytes(dir); ok {
		c := Check{Name: "disk space", Status: CheckOK, Detail: fmt.Sprintf("%.1f GiB free", float64(free)/(1<<30))}
		if free < lowDiskBytes {
			c.Status, c.Fix = CheckWarn, "free space on the data directory's disk: the log only grows"
		}
		out = append(out, c)
	}
	tc := Check{Name: "API token", Status: CheckOK, Detail: filepath.Join(dir, TokenFile)}
	if st, err := os.Stat(filepath.Join(dir, TokenFile)); err != nil {
		tc.Status, tc.Detail, tc.Fix = CheckWarn, "no token file yet", "it is created at the next `fazt serve`"
	} else if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		tc.Status, tc.Fix = CheckFail, "chmod 600 "+filepath.Join(dir, TokenFile)+": others can read the API token"
		tc.Detail += fmt.Sprintf(" (mode %v)", st.Mode().Perm())
	}
	return append(out, tc)
}

// DiagnoseStopped checks a data directory that no server has open, and
// only reads it: DiagnoseDir, the SQLite built into the binary, and
// what the event log and the read models hold on disk (their sizes,
// files that cannot be read). The log itself is not opened, since
// opening it writes to the directory (NATS JetStream recovers its store
// and creates what is missing, the kernel creates the token), so a last
// check, CheckSkipped, names what only a running server can tell.
func DiagnoseStopped(ctx context.Context, dir string) []Check {
	out := DiagnoseDir(dir)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return out // nothing inside to look at
	}
	out = append(out, checkSQLite(ctx),
		checkFiles("event log", filepath.Join(dir, server.JetStreamStoreDir)),
		checkFiles("read models", filepath.Join(dir, projectionsDir)),
		Check{Name: "event stream, schemas, projections, reactors", Status: CheckSkipped,
			Detail: "not checked: no server is running, and opening the log would write to the directory",
			Fix:    "start the server (`fazt serve --data " + dir + "`) and run `fazt doctor` again: it asks the server"})
	return out
}

// projectionsDir is the read models' folder of the data directory.
const projectionsDir = "projections"

// checkFiles reports what path, a folder of the data directory, holds:
// how many files and bytes, its entries (the read models' names), and
// fails when some cannot be read. It opens files only to read them.
func checkFiles(name, path string) Check {
	c := Check{Name: name, Status: CheckOK}
	entries, err := os.ReadDir(path)
	if errors.Is(err, fs.ErrNotExist) {
		c.Status, c.Detail, c.Fix = CheckWarn, path+" does not exist yet", "it is created at the next `fazt serve`"
		return c
	}
	var files int
	var size int64
	var unreadable []string
	_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			var f *os.File
			if f, err = os.Open(p); err == nil {
				f.Close()
				var info fs.FileInfo
				if info, err = d.Info(); err == nil {
					files++
					size += info.Size()
				}
			}
		}
		if err != nil {
			unreadable = append(unreadable, p+": "+err.Error())
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
		}
		return nil
	})
	c.Detail = fmt.Sprintf("%s: %d files, %s", path, files, humanize.IBytes(uint64(size)))
	var names []string
	for _, e := range entries {
		if name == "read models" && e.IsDir() {
			names = append(names, e.Name())
		}
	}
	if len(names) > 0 {
		c.Detail += ", for " + strings.Join(names, ", ")
	}
	if n := len(unreadable); n > 0 {
		if n > maxDoctorItems {
			unreadable = append(unreadable[:maxDoctorItems], fmt.Sprintf("and %d more", n-maxDoctorItems))
		}
		c.Status = CheckFail
		c.Detail += fmt.Sprintf("; %d cannot be read: %s", n, strings.Join(unreadable, "; "))
		c.Fix = "give the user running fazt access to everything under " + path + " (files left by another user? chown -R them)"
	}
	return c
}

// Doctor checks an open kernel: the data directory, the event stream's
// configuration, SQLite, every projection and reactor. Each check that
// is not ok says what to fix.
func (k *Kernel) Doctor(ctx context.Context) []Check {
	out := DiagnoseDir(k.dir)
	out = append(out, k.checkStream(ctx), k.checkStorage(), k.checkSchemas(), k.checkMalformed(), checkSQLite(ctx))
	for _, st := range k.runner.Statuses() {
		out = append(out, checkProjection(st))
	}
	for _, h := range k.Reactors() {
		out = append(out, checkReactor(ctx, h))
	}
	for _, fn := range k.checkDefs {
		out = append(out, fn(ctx)...)
	}
	return out
}

// RegisterCheck adds a service's checks to Doctor (fazt doctor, GET
// /v1/doctor), before Open: fn runs on every Doctor call of the open
// kernel and returns its findings, each saying what to fix.
func (k *Kernel) RegisterCheck(fn func(ctx context.Context) []Check) error {
	if err := k.registering("a check"); err != nil {
		return k.fail(err)
	}
	k.checkDefs = append(k.checkDefs, fn)
	return nil
}

func (k *Kernel) checkStream(ctx context.Context) Check {
	c := Check{Name: "event stream"}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := k.log.StreamInfo(ctx)
	if err != nil {
		c.Status, c.Detail, c.Fix = CheckFail, err.Error(), "check that the log is open and NATS JetStream reachable"
		return c
	}
	cfg := info.Config
	c.Name += " " + cfg.Name
	var bad []string
	if !cfg.DenyDelete {
		bad = append(bad, "deny_delete is off")
	}
	if !cfg.DenyPurge {
		bad = append(bad, "deny_purge is off")
	}
	if cfg.MaxAge != 0 || cfg.MaxMsgs > 0 || cfg.MaxBytes > 0 || cfg.MaxMsgsPerSubject > 0 {
		bad = append(bad, fmt.Sprintf("it has limits (max_age=%v max_msgs=%d max_bytes=%d max_msgs_per_subject=%d) that would drop events", cfg.MaxAge, cfg.MaxMsgs, cfg.MaxBytes, cfg.MaxMsgsPerSubject))
	}
	if cfg.Storage != jetstream.FileStorage {
		bad = append(bad, "storage is not file")
	}
	if !cfg.AllowDirect {
		bad = append(bad, "allow_direct is off (reads need it)")
	}
	if !cfg.AllowAtomicPublish {
		bad = append(bad, "allow_atomic is off (multi-event appends need it)")
	}
	c.Detail = fmt.Sprintf("%d events, %s, last seq %d, replicas %d", info.State.Msgs, sizeString(int64(info.State.Bytes)), info.State.LastSeq, cfg.Replicas)
	if len(bad) == 0 {
		c.Status = CheckOK
		return c
	}
	c.Status = CheckFail
	c.Detail += "; " + strings.Join(bad, "; ")
	c.Fix = "restore the stream's configuration (nats stream edit " + cfg.Name + "): the log must be immutable and unlimited"
	return c
}

// checkSchemas reports the registrations in the log that the kernel
// skipped at start (schemas.Registry.Skipped).
func (k *Kernel) checkSchemas() Check {
	c := Check{Name: "schema registrations", Status: CheckOK, Detail: fmt.Sprintf("%d event types", len(k.reg.Types()))}
	skipped := k.reg.Skipped()
	if len(skipped) == 0 {
		return c
	}
	c.Status = CheckWarn
	var each []string
	for i, sk := range skipped {
		if i == maxDoctorItems {
			each = append(each, fmt.Sprintf("and %d more", len(skipped)-i))
			break
		}
		what := "stream " + sk.Stream
		if sk.Type != "" {
			what = fmt.Sprintf("%s version %d", sk.Type, sk.Version)
		}
		each = append(each, fmt.Sprintf("seq %d (%s): %s", sk.Seq, what, sk.Error))
	}
	c.Detail += fmt.Sprintf("; %d records in the log were skipped at start and are not applied: %s", len(skipped), strings.Join(each, "; "))
	c.Fix = "these records were written around the kernel and stay in the log; events of the versions they meant are refused. Register the schema you want with `fazt schema register TYPE --file SCHEMA`: it becomes the type's next version"
	return c
}

// maxDoctorItems bounds the items one check lists.
const maxDoctorItems = 5

// checkMalformed reports the messages written around the kernel that
// readers have come across since start.
func (k *Kernel) checkMalformed() Check {
	c := Check{Name: "messages written around the kernel", Status: CheckOK, Detail: "none seen since start"}
	last, ok := k.log.LastMalformed()
	if !ok {
		return c
	}
	c.Status = CheckWarn
	c.Detail = fmt.Sprintf("%d seen since start that are not valid events; the last at seq %d on %s: %s",
		k.log.Stats().Malformed, last.Seq, last.Malformed.Subject, last.Malformed.Reason)
	c.Fix = "readers show them as malformed entries and go past them (GET /v1/events?after=" + strconv.FormatUint(last.Seq-1, 10) +
		"&limit=1); find who writes into NATS around the kernel, and skip them in any halted projection"
	return c
}

func checkSQLite(ctx context.Context) Check {
	c := Check{Name: "SQLite"}
	db := sqlitedb.New(filepath.Join(os.TempDir(), fmt.Sprintf("fazt-doctor-%d.db", os.Getpid())))
	db.Readers = 1
	if err := db.Open(ctx); err != nil {
		c.Status, c.Detail = CheckFail, err.Error()
		return c
	}
	defer func() {
		db.Close()
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(db.Path + suffix)
		}
	}()
	c.Detail = "version " + db.SQLiteVersion
	if versionLess(db.SQLiteVersion, sqlitedb.MinSQLiteVersion) {
		c.Status, c.Fix = CheckFail, "rebuild fazt with a newer modernc.org/sqlite (SQLite "+sqlitedb.MinSQLiteVersion+" or later)"
		return c
	}
	c.Status = CheckOK
	return c
}

// versionLess compares dotted versions numerically.
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

func checkProjection(st projections.Status) Check {
	c := Check{Name: "projection " + st.Name, Status: CheckOK,
		Detail: fmt.Sprintf("%s, version %d, seq %d of %d", st.State, st.ServingVersion, st.Seq, st.Tail)}
	if st.Rebuild != nil {
		p := st.Rebuild
		c.Detail += fmt.Sprintf("; rebuilding (%s): %d of %d, %.0f/s", p.Reason, p.Done, p.Total, p.Rate)
		if p.ETA > 0 {
			c.Detail += ", about " + p.ETA.Round(time.Second).String() + " left"
		}
	}
	if st.Error != "" {
		c.Status, c.Fix = CheckWarn, "a transient problem, retried automatically; if it persists, check the disk and the log"
		c.Detail += "; last error: " + st.Error
	}
	if h := st.Halted; h != nil {
		c.Status = CheckFail
		what := "a malformed message"
		if h.Type != "" {
			what = "event " + h.EventID + " (" + h.Type + ")"
		}
		c.Detail += fmt.Sprintf("; halted at seq %d, %s: %s", h.Seq, what, h.Error)
		if st.Critical {
			c.Detail += "; critical: the node is not ready until it runs again"
		} else {
			c.Detail += "; not critical: the node stays ready, without this read model"
		}
		c.Fix = fmt.Sprintf("fix the cause and run `fazt projections retry %s`, or skip the event with `fazt projections skip %s --seq %d` (recorded in the log)", st.Name, st.Name, h.Seq)
	}
	return c
}

func checkReactor(ctx context.Context, h *reactor.Runner) Check {
	c := Check{Name: "reactor " + h.Name(), Status: CheckOK}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := h.Status(ctx)
	if err != nil {
		c.Status, c.Detail, c.Fix = CheckWarn, err.Error(), "check that NATS JetStream is reachable"
		return c
	}
	c.Detail = fmt.Sprintf("%d delivered, %d pending", st.Delivered, st.Pending)
	if n := len(st.Parked); n > 0 {
		p := st.Parked[n-1]
		c.Status = CheckWarn
		c.Detail += fmt.Sprintf("; %d parked, the newest at seq %d after %d attempts: %s", n, p.Seq, p.Attempts, p.Error)
		c.Fix = fmt.Sprintf("fix the cause, then retry each parked event: `fazt reactors retry %s --seq %d` (POST /v1/reactors/%s/retry {\"seq\":%d})", h.Name(), p.Seq, h.Name(), p.Seq)
	}
	if n := len(st.Unreadable); n > 0 {
		c.Status = CheckWarn
		c.Detail += fmt.Sprintf("; %d records of its parked events cannot be read and were passed over (seq %d...)", n, st.Unreadable[0])
		if c.Fix == "" {
			c.Fix = "those records were written around the kernel; nothing to do unless an event you expected to be parked is missing: check `fazt reactors status`"
		}
	}
	return c
}

// doctor serves GET /v1/doctor: Doctor's checks as JSON.
func (a *api) doctor(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		Checks []Check `json:"checks"`
	}{a.k.Doctor(r.Context())})
	return nil
}
