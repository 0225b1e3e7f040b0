package schemas

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// The ledger is the committed, append-only record of every event schema
// version and table declaration that has shipped: one JSON object per
// line, in the order they were locked. A schema in the ledger is a
// promise to every future binary: it must keep reading it.
//
//	{"kind":"event","name":"orders.placed","version":1,"schema":{...}}
//	{"kind":"table","name":"orders","version":1,"table":{...}}
//
// Check compares the code's catalog with the ledger; Lock appends what is
// new. Neither ever rewrites a line.

// DefaultLedger is the ledger's path in the repository.
const DefaultLedger = "schemas/ledger.jsonl"

// LedgerEntry is one line of the ledger.
type LedgerEntry struct {
	Kind    string          `json:"kind"` // "event" or "table"
	Name    string          `json:"name"`
	Version int             `json:"version"`
	Schema  json.RawMessage `json:"schema,omitempty"`
	Table   *Table          `json:"table,omitempty"`
}

// Catalog is what a binary declares: its event registry and its tables.
type Catalog struct {
	Events *Registry
	Tables []Table
}

// Ledger is a parsed ledger file.
type Ledger struct {
	Entries []LedgerEntry
	raw     []byte
}

// ReadLedger reads a ledger file; a missing file is an empty ledger.
func ReadLedger(path string) (*Ledger, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Ledger{}, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseLedger(b)
}

// ParseLedger parses a ledger and checks its own consistency: every line
// well formed, versions of each name counting up from 1.
func ParseLedger(b []byte) (*Ledger, error) {
	l := &Ledger{raw: b}
	next := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var e LedgerEntry
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("ledger line %d: %w", n, err)
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, fmt.Errorf("ledger line %d: data after the entry; one JSON object per line", n)
		}
		key := e.Kind + " " + e.Name
		switch {
		case e.Kind != "event" && e.Kind != "table":
			return nil, fmt.Errorf("ledger line %d: unknown kind %q", n, e.Kind)
		case e.Name == "":
			return nil, fmt.Errorf("ledger line %d: %s entry has no name", n, e.Kind)
		case e.Kind == "event" && (len(e.Schema) == 0 || e.Schema[0] != '{'), e.Kind == "table" && e.Table == nil:
			return nil, fmt.Errorf("ledger line %d: %s %s has no definition", n, e.Kind, e.Name)
		case e.Kind == "table" && e.Table.Name != e.Name:
			return nil, fmt.Errorf("ledger line %d: table %s declares table %q", n, e.Name, e.Table.Name)
		case e.Version != next[key]+1:
			return nil, fmt.Errorf("ledger line %d: %s %s version %d follows version %d; versions count up by one", n, e.Kind, e.Name, e.Version, next[key])
		}
		next[key] = e.Version
		l.Entries = append(l.Entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	return l, nil
}

// latest returns the newest entry of a kind and name.
func (l *Ledger) latest(kind, name string) (LedgerEntry, bool) {
	for i := len(l.Entries) - 1; i >= 0; i-- {
		if e := l.Entries[i]; e.Kind == kind && e.Name == name {
			return e, true
		}
	}
	return LedgerEntry{}, false
}

// Report is the outcome of a check.
type Report struct {
	Problems []string      // each breaks the ledger's promise; any one fails the check
	Unlocked []LedgerEntry // new and compatible: Lock appends these
}

// OK reports whether the catalog keeps every promise of the ledger.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// Check compares a catalog with the ledger.
//
// Every event schema version in the ledger must still be registered,
// unchanged; versions newer than the ledger must be compatible extensions
// (they are unlocked). Every table's declaration must be an allowed
// evolution of its latest ledger entry; a changed or new table is
// unlocked. A table the code no longer declares is fine: its storage stays,
// and old binaries may still use it.
func (l *Ledger) Check(c Catalog) Report {
	var r Report
	if c.Events == nil {
		c.Events = NewRegistry()
	}
	for _, e := range l.Entries {
		if e.Kind != "event" {
			continue
		}
		got, ok := c.Events.Schema(e.Name, e.Version)
		switch {
		case !ok:
			r.Problems = append(r.Problems, fmt.Sprintf("event %s version %d has shipped (it is in the ledger) but the code no longer registers it: keep registering every shipped version, old events still need it", e.Name, e.Version))
		case !sameJSON(got, e.Schema):
			r.Problems = append(r.Problems, fmt.Sprintf("event %s version %d changed after it shipped: restore it as it is in the ledger and register the change as version %d", e.Name, e.Version, e.Version+1))
		}
	}
	for _, typ := range c.Events.Types() {
		latest, _ := c.Events.Latest(typ)
		locked := 0
		if e, ok := l.latest("event", typ); ok {
			locked = e.Version
		}
		for v := locked + 1; v <= latest; v++ {
			s, _ := c.Events.Schema(typ, v)
			if v > 1 {
				prev, _ := c.Events.Schema(typ, v-1)
				if err := CheckCompatible(typ, prev, s); err != nil {
					r.Problems = append(r.Problems, err.Error())
					continue
				}
			}
			r.Unlocked = append(r.Unlocked, LedgerEntry{Kind: "event", Name: typ, Version: v, Schema: compactJSON(s)})
		}
	}
	tables := slices.Clone(c.Tables)
	slices.SortFunc(tables, func(a, b Table) int { return strings.Compare(a.Name, b.Name) })
	for i, t := range tables {
		prefix := ""
		if p, _, ok := strings.Cut(t.Name, "."); ok {
			prefix = "projection " + p + ": "
		}
		if err := unqualified(t).Validate(); err != nil {
			r.Problems = append(r.Problems, prefix+err.Error())
			continue
		}
		if i > 0 && tables[i-1].Name == t.Name {
			r.Problems = append(r.Problems, fmt.Sprintf("table %s is declared twice; declare each table once", t.Name))
			continue
		}
		prev, ok := l.latest("table", t.Name)
		if ok {
			if err := CheckTableEvolution(unqualified(*prev.Table), unqualified(t)); err != nil {
				r.Problems = append(r.Problems, prefix+err.Error())
				continue
			}
			if sameTable(*prev.Table, t) {
				continue
			}
		}
		tt := t
		r.Unlocked = append(r.Unlocked, LedgerEntry{Kind: "table", Name: t.Name, Version: prev.Version + 1, Table: &tt})
	}
	return r
}

// unqualified strips a table's qualifier: the ledger names a projection's
// table "projection.table", since each projection has its own file.
func unqualified(t Table) Table {
	if _, name, ok := strings.Cut(t.Name, "."); ok {
		t.Name = name
	}
	return t
}

// Lock appends the unlocked entries of a passing check to the ledger file.
func Lock(path string, c Catalog) ([]LedgerEntry, error) {
	l, err := ReadLedger(path)
	if err != nil {
		return nil, err
	}
	r := l.Check(c)
	if !r.OK() {
		return nil, fmt.Errorf("%w: the code breaks the ledger; nothing locked:\n  %s", ErrEDDViolation, strings.Join(r.Problems, "\n  "))
	}
	if len(r.Unlocked) == 0 {
		return nil, nil
	}
	var buf bytes.Buffer
	if len(l.raw) > 0 && !bytes.HasSuffix(l.raw, []byte("\n")) {
		buf.WriteByte('\n')
	}
	for _, e := range r.Unlocked {
		b, err := json.Marshal(e)
		if err != nil {
			return nil, err
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(f, &buf); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	return r.Unlocked, f.Close()
}

// IsPrefixOf reports whether l (an older ledger) is a prefix of newer,
// entry for entry: the ledger only ever grows at its end.
func (l *Ledger) IsPrefixOf(newer *Ledger) error {
	for i, e := range l.Entries {
		if i >= len(newer.Entries) {
			return fmt.Errorf("%w: ledger entry %d (%s %s version %d) was removed: the ledger had %d entries, it has %d; the ledger is append-only", ErrEDDViolation, i+1, e.Kind, e.Name, e.Version, len(l.Entries), len(newer.Entries))
		}
		a, _ := json.Marshal(e)
		b, _ := json.Marshal(newer.Entries[i])
		if !sameJSON(a, b) {
			return fmt.Errorf("%w: ledger entry %d (%s %s version %d) was rewritten or removed; the ledger is append-only", ErrEDDViolation, i+1, e.Kind, e.Name, e.Version)
		}
	}
	return nil
}

func sameJSON(a, b []byte) bool {
	return bytes.Equal(canonicalJSON(a), canonicalJSON(b))
}

// canonicalJSON re-encodes JSON with sorted keys and no spaces; numbers
// stay as written (as the compatibility checker compares them), so that
// 9007199254740993 is not taken for 9007199254740992.
func canonicalJSON(b []byte) []byte {
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if dec.Decode(&v) != nil {
		return b
	}
	if _, err := dec.Token(); err != io.EOF {
		return b
	}
	out, _ := json.Marshal(v)
	return out
}

func compactJSON(b []byte) json.RawMessage {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return b
	}
	return buf.Bytes()
}

func sameTable(a, b Table) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}
