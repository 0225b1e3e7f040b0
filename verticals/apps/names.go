package apps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
)

// Name claims. A name an app answers to (its own, an alias, a domain) is
// claimed on the log itself, not under a lock of one process: each name
// has a stream of its own (NameStream), and a claim is an append to it
// that expects the version the claimant read. Of two claims made at
// once, on one node or on several sharing a log, JetStream's leader
// stores one and refuses the other's guard; the refused one reads the
// stream again, finds the name taken, and is answered 409 naming the
// holder. The claim is written in the same atomic append as the event
// that binds the name (an alias or a domain), so the claim and the read
// model never disagree. Names bound before claims existed have no
// stream: the read model decides for them, as it did.

// NamesCategory is the category of the name streams; only the vertical
// writes there.
const NamesCategory = "appnames"

// Event types of the name streams.
const (
	// TypeNameClaimed: the name is App's (Kind "app": its own name,
	// "alias", "domain").
	TypeNameClaimed = "appnames.claimed"
	// TypeNameReleased: the name is free again (an alias or a domain
	// removed).
	TypeNameReleased = "appnames.released"
)

// kindApp is an app's own name in a claim.
const kindApp = "app"

// NameChanged is the data of TypeNameClaimed and TypeNameReleased
// (version 1).
type NameChanged struct {
	Name string `json:"name"`
	App  string `json:"app"`
	Kind string `json:"kind"` // app, alias or domain
}

// NameStream is the stream that claims name: app names and aliases
// share one namespace (both are served at NAME.localhost), domains have
// their own. A domain too long for a stream name is named by its
// SHA-256.
func NameStream(kind, name string) string {
	if kind != kindDomain {
		return NamesCategory + ".host." + name
	}
	if s := NamesCategory + ".domain." + name; len(s) <= eventlog.MaxStreamLen {
		return s
	}
	sum := sha256.Sum256([]byte(name))
	return NamesCategory + ".domainsha." + hex.EncodeToString(sum[:])
}

// claim is what a name stream says: its version, and the holder (app
// empty: the name is free).
type claim struct {
	stream  string
	version uint64
	app     string
	kind    string
}

// readClaim reads the name stream of name. A replica a moment behind
// gives an old version: the append that relies on it is then refused,
// and the claimant reads again.
func (v *vertical) readClaim(ctx context.Context, kind, name string) (claim, error) {
	c := claim{stream: NameStream(kind, name)}
	const page = 1000
	for {
		evs, err := v.k.Log().ReadStream(ctx, c.stream, c.version+1, page)
		if errors.Is(err, eventlog.ErrNotFound) {
			return c, nil // never claimed, or no more
		}
		if err != nil {
			return c, err
		}
		for _, e := range evs {
			var d NameChanged
			if err := json.Unmarshal(e.Data, &d); err != nil {
				return c, err
			}
			c.version = e.Version
			c.app, c.kind = "", ""
			if e.Type == TypeNameClaimed {
				c.app, c.kind = d.App, d.Kind
			}
		}
		if len(evs) < page {
			return c, nil
		}
	}
}

// maxClaimTries bounds how often a claim is decided again after another
// claim or release of the same name landed first.
const maxClaimTries = 8

// claimName claims name for app as kind, appending the claim with the
// events that bind the name (bind), guarded by the name stream's
// version. legacy decides for a name without a stream (bound before
// claims existed, or never bound): it refuses, or reports the name bound
// to app already. already: the name was app's already and nothing was
// written.
func (v *vertical) claimName(ctx context.Context, kind, name, app string, legacy func(context.Context) (bool, error), bind []eventlog.Event) (res eventlog.Result, already bool, err error) {
	for try := 1; ; try++ {
		c, err := v.readClaim(ctx, kind, name)
		if err != nil {
			return res, false, err
		}
		switch {
		case c.app == app && c.kind == kind:
			return res, true, nil
		case c.app != "":
			return res, false, takenError(kind, name, c)
		case c.version == 0 && legacy != nil:
			if already, err := legacy(ctx); err != nil || already {
				return res, already, err
			}
		}
		b, _ := json.Marshal(NameChanged{Name: name, App: app, Kind: kind})
		events := append([]eventlog.Event{{Stream: c.stream, Type: TypeNameClaimed, Data: b}}, bind...)
		res, err = v.w.Append(ctx, events, eventlog.ExpectVersion(c.stream, c.version))
		if retryClaim(err, c.stream) {
			if try < maxClaimTries {
				continue // another claim or release landed first: decide again on what it wrote
			}
			return res, false, kernel.Refusef("%s %s is being claimed by other requests at this moment: try again", kind, name)
		}
		return res, false, err
	}
}

// releaseName frees name, held by app as kind, appending the release
// with the events that unbind it, guarded like a claim. legacyBound
// says whether the read model has the name bound to app (for a name
// without a stream). found false: app does not hold the name, nothing
// was written.
func (v *vertical) releaseName(ctx context.Context, kind, name, app string, legacyBound bool, unbind []eventlog.Event) (res eventlog.Result, found bool, err error) {
	for try := 1; ; try++ {
		c, err := v.readClaim(ctx, kind, name)
		if err != nil {
			return res, false, err
		}
		held := c.app == app && c.kind == kind || c.version == 0 && legacyBound
		if !held {
			return res, false, nil
		}
		b, _ := json.Marshal(NameChanged{Name: name, App: app, Kind: kind})
		events := append([]eventlog.Event{{Stream: c.stream, Type: TypeNameReleased, Data: b}}, unbind...)
		res, err = v.w.Append(ctx, events, eventlog.ExpectVersion(c.stream, c.version))
		if retryClaim(err, c.stream) {
			if try < maxClaimTries {
				continue
			}
			return res, false, kernel.Refusef("%s %s is being changed by other requests at this moment: try again", kind, name)
		}
		return res, err == nil, err
	}
}

// retryClaim reports whether err is the refusal of the guard on stream.
func retryClaim(err error, stream string) bool {
	var ce *eventlog.ConflictError
	return errors.As(err, &ce) && ce.Stream == stream
}

// takenError refuses a claim of name as kind, which c holds.
func takenError(kind, name string, c claim) error {
	switch {
	case c.kind == kindApp && kind == kindApp:
		// Not reached: an app's name is claimed by that app.
		return kernel.Refusef("%s is the name of app %s", name, c.app)
	case c.kind == kindApp:
		return kernel.Refusef("%s is an app's own name: an alias must be a name no app has", name)
	case kind == kindApp:
		return kernel.Refusef("%s is an alias of app %s: remove it first (fazt apps alias remove %s %s)", name, c.app, c.app, name)
	default:
		return kernel.Refusef("%s %s is bound to app %s: remove it there first", kind, name, c.app)
	}
}
