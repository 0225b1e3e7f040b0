package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// ledgerPath returns a ledger file path in a fresh temp dir, holding
// content unless content is nil (then there is no file).
func ledgerPath(t testing.TB, content []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ledger.jsonl")
	if content != nil {
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// ledgerRead returns the file's bytes.
func ledgerRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ledgerLocked locks c into a new ledger file and returns its path.
func ledgerLocked(t testing.TB, c Catalog) string {
	t.Helper()
	p := ledgerPath(t, nil)
	if _, err := Lock(p, c); err != nil {
		t.Fatalf("lock: %v", err)
	}
	return p
}

// ledgerLoad reads and parses a ledger file.
func ledgerLoad(t testing.TB, path string) *Ledger {
	t.Helper()
	l, err := ReadLedger(path)
	if err != nil {
		t.Fatalf("read ledger: %v", err)
	}
	return l
}

// ledgerEvent is a ledger line of an event schema.
func ledgerEvent(name string, version int, schema string) string {
	b, _ := json.Marshal(LedgerEntry{Kind: "event", Name: name, Version: version, Schema: compactJSON([]byte(schema))})
	return string(b)
}

// ledgerTable is a ledger line of a table declaration.
func ledgerTable(version int, t Table) string {
	b, _ := json.Marshal(LedgerEntry{Kind: "table", Name: t.Name, Version: version, Table: &t})
	return string(b)
}

func ledgerLines(lines ...string) []byte {
	return []byte(strings.Join(lines, "\n") + "\n")
}

// ledgerSummary lists entries as "kind name vN" for comparisons.
func ledgerSummary(es []LedgerEntry) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.Kind+" "+e.Name+" v"+strconv.Itoa(e.Version))
	}
	return out
}

// ledgerWantProblem fails unless exactly one problem was reported and it
// contains every want.
func ledgerWantProblem(t testing.TB, r Report, want ...string) {
	t.Helper()
	if r.OK() || len(r.Problems) != 1 {
		t.Fatalf("want one problem containing %q, got %q", want, r.Problems)
	}
	for _, w := range want {
		if !strings.Contains(r.Problems[0], w) {
			t.Fatalf("problem %q does not say %q", r.Problems[0], w)
		}
	}
}

// tableWithNote is pageviews v2: a nullable column appended.
func tableWithNote() Table {
	t := tableClone(tablePageviews())
	t.Columns = append(t.Columns, Column{Name: "note", Type: "TEXT"})
	return t
}

func TestParseLedger(t *testing.T) {
	ev1 := ledgerEvent("orders.placed", 1, ordersV1)
	ev2 := ledgerEvent("orders.placed", 2, ordersV2)
	tb1 := ledgerTable(1, tablePageviews())
	tb2 := ledgerTable(2, tableWithNote())

	good := ledgerLines(ev1, tb1, "", "   ", ledgerEvent("users.signed_up", 1, `{"type":"object"}`), ev2, tb2,
		// An event and a table may share a name: they count versions apart.
		ledgerEvent("pageviews", 1, `{"type":"object"}`))
	l, err := ParseLedger(good)
	if err != nil {
		t.Fatalf("good ledger: %v", err)
	}
	want := []string{"event orders.placed v1", "table pageviews v1", "event users.signed_up v1", "event orders.placed v2", "table pageviews v2", "event pageviews v1"}
	if got := ledgerSummary(l.Entries); !reflect.DeepEqual(got, want) {
		t.Fatalf("entries %q, want %q", got, want)
	}
	if !sameJSON(l.Entries[3].Schema, []byte(ordersV2)) || !reflect.DeepEqual(*l.Entries[4].Table, tableWithNote()) {
		t.Fatalf("definitions not parsed: %s %+v", l.Entries[3].Schema, l.Entries[4].Table)
	}
	for _, in := range [][]byte{nil, {}, []byte("\n\n  \n")} {
		if l, err := ParseLedger(in); err != nil || len(l.Entries) != 0 {
			t.Fatalf("empty ledger %q: %v %v", in, l, err)
		}
	}
	// CRLF line ends and a missing final newline are fine.
	if l, err := ParseLedger([]byte(ev1 + "\r\n" + ev2)); err != nil || len(l.Entries) != 2 {
		t.Fatalf("CRLF, no final newline: %v %v", l, err)
	}

	bad := []struct {
		name  string
		lines []string
		want  string
	}{
		{"not JSON", []string{`{"kind":"event",`}, "ledger line 1: "},
		{"malformed after good lines", []string{ev1, tb1, `not json`}, "ledger line 3: "},
		{"blank lines count", []string{ev1, "", `{`}, "ledger line 3: "},
		{"array", []string{`[1,2]`}, "ledger line 1: "},
		{"string version", []string{`{"kind":"event","name":"a.b","version":"1","schema":{"type":"object"}}`}, "ledger line 1: "},
		{"unknown field", []string{ev1, `{"kind":"event","name":"a.b","version":1,"schema":{"type":"object"},"note":"x"}`}, `ledger line 2: json: unknown field "note"`},
		{"unknown field in a table", []string{`{"kind":"table","name":"t","version":1,"table":{"name":"t","columns":[],"engine":"x"}}`}, `ledger line 1: json: unknown field "engine"`},
		{"unknown kind", []string{ev1, `{"kind":"view","name":"v","version":1,"schema":{"type":"object"}}`}, `ledger line 2: unknown kind "view"`},
		{"no kind", []string{`{"name":"a.b","version":1,"schema":{"type":"object"}}`}, `ledger line 1: unknown kind ""`},
		{"no name", []string{`{"kind":"event","version":1,"schema":{"type":"object"}}`}, "ledger line 1: event entry has no name"},
		{"event without schema", []string{tb1, `{"kind":"event","name":"a.b","version":1}`}, "ledger line 2: event a.b has no definition"},
		{"event with a null schema", []string{`{"kind":"event","name":"a.b","version":1,"schema":null}`}, "ledger line 1: event a.b has no definition"},
		{"event with a table instead", []string{`{"kind":"event","name":"a.b","version":1,"table":{"name":"a","columns":[]}}`}, "ledger line 1: event a.b has no definition"},
		{"table without table", []string{`{"kind":"table","name":"t","version":1}`}, "ledger line 1: table t has no definition"},
		{"table with a schema instead", []string{`{"kind":"table","name":"t","version":1,"schema":{"type":"object"}}`}, "ledger line 1: table t has no definition"},
		{"table entry of another table", []string{`{"kind":"table","name":"t","version":1,"table":{"name":"u","columns":[]}}`}, `ledger line 1: table t declares table "u"`},
		{"starts at version 2", []string{ledgerEvent("orders.placed", 2, ordersV2)}, "ledger line 1: event orders.placed version 2 follows version 0"},
		{"version 0", []string{ledgerEvent("orders.placed", 0, ordersV1)}, "ledger line 1: event orders.placed version 0 follows version 0"},
		{"skips a version", []string{ev1, tb1, ledgerEvent("orders.placed", 3, ordersV2)}, "ledger line 3: event orders.placed version 3 follows version 1"},
		{"repeats a version", []string{ev1, ev2, ev2}, "ledger line 3: event orders.placed version 2 follows version 2"},
		{"repeats a table version", []string{tb1, ev1, tb1}, "ledger line 3: table pageviews version 1 follows version 1"},
		{"goes back", []string{ev1, ev2, ev1}, "ledger line 3: event orders.placed version 1 follows version 2"},
		{"two entries on a line", []string{ev1 + ev2}, "ledger line 1: data after the entry"},
		{"trailing garbage", []string{ev1 + " x"}, "ledger line 1: "},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			l, err := ParseLedger(ledgerLines(tc.lines...))
			if err == nil {
				t.Fatalf("accepted: %q", ledgerSummary(l.Entries))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestReadLedger(t *testing.T) {
	l, err := ReadLedger(filepath.Join(t.TempDir(), "missing.jsonl"))
	if err != nil || len(l.Entries) != 0 {
		t.Fatalf("missing file: %v %v", l, err)
	}
	if _, err := ReadLedger(t.TempDir()); err == nil {
		t.Fatal("a directory read as a ledger")
	}
	p := ledgerPath(t, ledgerLines(ledgerEvent("orders.placed", 1, ordersV1), "{"))
	if _, err := ReadLedger(p); err == nil || !strings.Contains(err.Error(), "ledger line 2") {
		t.Fatalf("malformed file: %v", err)
	}
}

// The ledger committed in the repository holds the schema of the record
// this package writes exactly as the kernel registers it.
func TestCommittedLedgerHoldsKernelTypes(t *testing.T) {
	l := ledgerLoad(t, "ledger.jsonl")
	r := kernelRegistry(t)
	got, ok := r.Schema(TypeRegistered, 1)
	if !ok {
		t.Fatal("kernel type not registered")
	}
	for _, e := range l.Entries {
		if e.Kind == "event" && e.Name == TypeRegistered && e.Version == 1 {
			if !sameJSON(e.Schema, got) {
				t.Fatalf("%s version 1 in the ledger differs from the code:\n%s\n%s", TypeRegistered, e.Schema, got)
			}
			return
		}
	}
	t.Fatalf("%s version 1 is not in the committed ledger", TypeRegistered)
}

func TestCheckSameAsLedger(t *testing.T) {
	c := Catalog{Events: registry(t, ordersV1, ordersV2), Tables: []Table{tablePageviews()}}
	l := ledgerLoad(t, ledgerLocked(t, c))
	if got := ledgerSummary(l.Entries); !reflect.DeepEqual(got, []string{"event orders.placed v1", "event orders.placed v2", "table pageviews v1"}) {
		t.Fatalf("locked %q", got)
	}
	r := l.Check(c)
	if !r.OK() || len(r.Unlocked) != 0 {
		t.Fatalf("same catalog: %+v", r)
	}
	// A fresh catalog value with the same content is the same too.
	r = l.Check(Catalog{Events: registry(t, ordersV1, ordersV2), Tables: []Table{tableClone(tablePageviews())}})
	if !r.OK() || len(r.Unlocked) != 0 {
		t.Fatalf("equal catalog: %+v", r)
	}
}

func TestCheckEmpty(t *testing.T) {
	var l Ledger
	if r := l.Check(Catalog{}); !r.OK() || len(r.Unlocked) != 0 {
		t.Fatalf("empty catalog, empty ledger: %+v", r)
	}
	// No registry is no event types (not a panic).
	r := l.Check(Catalog{Tables: []Table{tablePageviews()}})
	if !r.OK() || !reflect.DeepEqual(ledgerSummary(r.Unlocked), []string{"table pageviews v1"}) {
		t.Fatalf("tables only: %+v", r)
	}
	l2, err := ParseLedger(ledgerLines(ledgerEvent("orders.placed", 1, ordersV1)))
	if err != nil {
		t.Fatal(err)
	}
	ledgerWantProblem(t, l2.Check(Catalog{}), "event orders.placed version 1 has shipped")
	// Everything is new on an empty ledger, in order.
	r = l.Check(Catalog{Events: registry(t, ordersV1, ordersV2)})
	if !r.OK() || !reflect.DeepEqual(ledgerSummary(r.Unlocked), []string{"event orders.placed v1", "event orders.placed v2"}) {
		t.Fatalf("new type: %+v", r)
	}
}

func TestCheckNewCompatibleVersion(t *testing.T) {
	l := ledgerLoad(t, ledgerLocked(t, Catalog{Events: registry(t, ordersV1)}))
	c := Catalog{Events: registry(t, ordersV1, ordersV2)}
	if err := c.Events.Register("users.signed_up", 1, []byte(`{"type":"object"}`)); err != nil {
		t.Fatal(err)
	}
	r := l.Check(c)
	if !r.OK() {
		t.Fatalf("problems: %q", r.Problems)
	}
	if got := ledgerSummary(r.Unlocked); !reflect.DeepEqual(got, []string{"event orders.placed v2", "event users.signed_up v1"}) {
		t.Fatalf("unlocked %q", got)
	}
	// The entry holds the schema compacted, ready to append.
	var want bytes.Buffer
	if err := json.Compact(&want, []byte(ordersV2)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.Unlocked[0].Schema, want.Bytes()) || r.Unlocked[0].Table != nil {
		t.Fatalf("unlocked entry: %s", r.Unlocked[0].Schema)
	}
}

func TestCheckNewIncompatibleVersion(t *testing.T) {
	l := ledgerLoad(t, ledgerLocked(t, Catalog{Events: registry(t, ordersV2)}))
	// The registry itself refuses an incompatible version: a binary cannot
	// even declare one...
	c := Catalog{Events: registry(t, ordersV2)}
	if err := c.Events.Register("orders.placed", 2, []byte(ordersV1)); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("register incompatible: %v", err)
	}
	// ...and should one get past it, Check refuses it too.
	c.Events.types["orders.placed"] = append(c.Events.types["orders.placed"], &eventSchema{raw: []byte(ordersV1)})
	r := l.Check(c)
	ledgerWantProblem(t, r, `event type "orders.placed"`, `property "coupon": removed`)
	if len(r.Unlocked) != 0 {
		t.Fatalf("incompatible version unlocked: %q", ledgerSummary(r.Unlocked))
	}
}

func TestCheckShippedVersionRemoved(t *testing.T) {
	c := Catalog{Events: registry(t, ordersV1, ordersV2)}
	if err := c.Events.Register("users.signed_up", 1, []byte(`{"type":"object"}`)); err != nil {
		t.Fatal(err)
	}
	l := ledgerLoad(t, ledgerLocked(t, c))

	// The newest version dropped from code.
	ledgerWantProblem(t, l.Check(Catalog{Events: registry(t, ordersV1, ordersV2)}), "event users.signed_up version 1 has shipped", "no longer registers it")
	// A whole type dropped from code.
	r := l.Check(Catalog{Events: registry(t, ordersV1)})
	if len(r.Problems) != 2 || !strings.Contains(r.Problems[0], "event orders.placed version 2 has shipped") || !strings.Contains(r.Problems[1], "event users.signed_up version 1 has shipped") {
		t.Fatalf("problems: %q", r.Problems)
	}
	if len(r.Unlocked) != 0 {
		t.Fatalf("unlocked: %q", ledgerSummary(r.Unlocked))
	}
}

func TestCheckShippedVersionChanged(t *testing.T) {
	l := ledgerLoad(t, ledgerLocked(t, Catalog{Events: registry(t, ordersV1)}))
	changed := edit(t, func(s map[string]any) { prop(s, "total")["minimum"] = 1 })
	r := l.Check(Catalog{Events: registry(t, string(changed))})
	ledgerWantProblem(t, r, "event orders.placed version 1 changed after it shipped", "register the change as version 2")
	if len(r.Unlocked) != 0 {
		t.Fatalf("unlocked: %q", ledgerSummary(r.Unlocked))
	}
	// Even a change the checker would allow as a new version (an optional
	// property) is a change of a shipped version.
	added := edit(t, func(s map[string]any) {
		s["properties"].(map[string]any)["coupon"] = map[string]any{"type": "string"}
	})
	ledgerWantProblem(t, l.Check(Catalog{Events: registry(t, string(added))}), "event orders.placed version 1 changed after it shipped")
	// A change of the shipped version beside a new version: both named.
	r = l.Check(Catalog{Events: registry(t, string(added), ordersV2)})
	ledgerWantProblem(t, r, "event orders.placed version 1 changed after it shipped")
}

func TestCheckIgnoresFormatting(t *testing.T) {
	l := ledgerLoad(t, ledgerLocked(t, Catalog{Events: registry(t, ordersV1)}))
	var doc map[string]any
	if err := json.Unmarshal([]byte(ordersV1), &doc); err != nil {
		t.Fatal(err)
	}
	// Keys sorted (the source has "type" first), tabs and newlines.
	reordered, err := json.MarshalIndent(doc, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(compactJSON(reordered), compactJSON([]byte(ordersV1))) {
		t.Fatal("test schema has the same key order as ordersV1")
	}
	for _, s := range []string{string(reordered), "\n\n  " + strings.ReplaceAll(ordersV1, ":", " :  ") + "\n"} {
		if r := l.Check(Catalog{Events: registry(t, s)}); !r.OK() || len(r.Unlocked) != 0 {
			t.Fatalf("reformatted schema: %+v", r)
		}
	}
}

// Numbers compare as written: two integers that are the same float64 are
// still different schemas.
func TestCheckComparesNumbersAsWritten(t *testing.T) {
	big := func(n string) string {
		return `{"type":"object","properties":{"n":{"type":"integer","maximum":` + n + `}}}`
	}
	l, err := ParseLedger(ledgerLines(ledgerEvent("counts.taken", 1, big("9007199254740993"))))
	if err != nil {
		t.Fatal(err)
	}
	c := Catalog{Events: NewRegistry()}
	if err := c.Events.Register("counts.taken", 1, []byte(big("9007199254740992"))); err != nil {
		t.Fatal(err)
	}
	ledgerWantProblem(t, l.Check(c), "event counts.taken version 1 changed after it shipped")
	c = Catalog{Events: NewRegistry()}
	if err := c.Events.Register("counts.taken", 1, []byte(big("9007199254740993"))); err != nil {
		t.Fatal(err)
	}
	if r := l.Check(c); !r.OK() {
		t.Fatalf("same number: %q", r.Problems)
	}
}

func TestCheckTables(t *testing.T) {
	l := ledgerLoad(t, ledgerLocked(t, Catalog{Tables: []Table{tablePageviews()}}))

	t.Run("unchanged", func(t *testing.T) {
		if r := l.Check(Catalog{Tables: []Table{tablePageviews()}}); !r.OK() || len(r.Unlocked) != 0 {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("new nullable column is unlocked", func(t *testing.T) {
		r := l.Check(Catalog{Tables: []Table{tableWithNote()}})
		if !r.OK() || len(r.Unlocked) != 1 {
			t.Fatalf("%+v", r)
		}
		e := r.Unlocked[0]
		if e.Kind != "table" || e.Name != "pageviews" || e.Version != 2 || e.Schema != nil || !reflect.DeepEqual(*e.Table, tableWithNote()) {
			t.Fatalf("unlocked %+v", e)
		}
	})
	t.Run("new defaulted column and index", func(t *testing.T) {
		n := tableClone(tablePageviews())
		n.Columns = append(n.Columns, Column{Name: "score", Type: "REAL", NotNull: true, Default: "0"})
		n.Indexes = append(n.Indexes, Index{Name: "pageviews_path", Columns: []string{"path"}})
		r := l.Check(Catalog{Tables: []Table{n}})
		if !r.OK() || !reflect.DeepEqual(ledgerSummary(r.Unlocked), []string{"table pageviews v2"}) {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("column dropped", func(t *testing.T) {
		n := tableClone(tablePageviews())
		n.Columns = append(n.Columns[:2], n.Columns[3])
		r := l.Check(Catalog{Tables: []Table{n}})
		ledgerWantProblem(t, r, "table pageviews: column path is missing")
		if len(r.Unlocked) != 0 {
			t.Fatalf("unlocked %q", ledgerSummary(r.Unlocked))
		}
	})
	t.Run("column retyped", func(t *testing.T) {
		n := tableClone(tablePageviews())
		n.Columns[3].Type = "TEXT"
		ledgerWantProblem(t, l.Check(Catalog{Tables: []Table{n}}), "table pageviews: column hits: type changed from INTEGER to TEXT")
	})
	t.Run("new NOT NULL column without default", func(t *testing.T) {
		n := tableClone(tablePageviews())
		n.Columns = append(n.Columns, Column{Name: "must", Type: "TEXT", NotNull: true})
		ledgerWantProblem(t, l.Check(Catalog{Tables: []Table{n}}), "table pageviews: new column must is NOT NULL without a default")
	})
	t.Run("invalid declaration", func(t *testing.T) {
		n := tableClone(tablePageviews())
		n.Columns[2].Type = "VARCHAR"
		ledgerWantProblem(t, l.Check(Catalog{Tables: []Table{n}}), "table pageviews: column path: unknown type")
	})
	t.Run("declared twice", func(t *testing.T) {
		r := l.Check(Catalog{Tables: []Table{tableWithNote(), tableWithNote()}})
		ledgerWantProblem(t, r, "table pageviews is declared twice")
		var empty Ledger
		ledgerWantProblem(t, empty.Check(Catalog{Tables: []Table{tablePageviews(), tableWithNote()}}), "table pageviews is declared twice")
	})
	t.Run("dropped from code is fine", func(t *testing.T) {
		if r := l.Check(Catalog{}); !r.OK() || len(r.Unlocked) != 0 {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("new table, sorted by name", func(t *testing.T) {
		users := Table{Name: "users", Columns: []Column{{Name: "id", Type: "TEXT", PrimaryKey: true}}}
		apps := Table{Name: "apps", Columns: []Column{{Name: "id", Type: "TEXT", PrimaryKey: true}}}
		r := l.Check(Catalog{Tables: []Table{users, tableWithNote(), apps}})
		if !r.OK() || !reflect.DeepEqual(ledgerSummary(r.Unlocked), []string{"table apps v1", "table pageviews v2", "table users v1"}) {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("checked against the latest version", func(t *testing.T) {
		p := ledgerLocked(t, Catalog{Tables: []Table{tablePageviews()}})
		if _, err := Lock(p, Catalog{Tables: []Table{tableWithNote()}}); err != nil {
			t.Fatal(err)
		}
		l := ledgerLoad(t, p)
		if r := l.Check(Catalog{Tables: []Table{tableWithNote()}}); !r.OK() || len(r.Unlocked) != 0 {
			t.Fatalf("latest: %+v", r)
		}
		// Going back to v1 drops the column v2 added.
		ledgerWantProblem(t, l.Check(Catalog{Tables: []Table{tablePageviews()}}), "table pageviews: column note is missing")
	})
}

func TestLock(t *testing.T) {
	v1 := Catalog{Events: registry(t, ordersV1), Tables: []Table{tablePageviews()}}
	p := ledgerPath(t, nil)

	// A missing file is created.
	added, err := Lock(p, v1)
	if err != nil {
		t.Fatal(err)
	}
	if got := ledgerSummary(added); !reflect.DeepEqual(got, []string{"event orders.placed v1", "table pageviews v1"}) {
		t.Fatalf("locked %q", got)
	}
	first := ledgerRead(t, p)
	if !bytes.Equal(first, ledgerLines(ledgerEvent("orders.placed", 1, ordersV1), ledgerTable(1, tablePageviews()))) {
		t.Fatalf("file:\n%s", first)
	}

	// A second lock of the same catalog is a no-op.
	added, err = Lock(p, v1)
	if err != nil || len(added) != 0 {
		t.Fatalf("second lock: %q %v", ledgerSummary(added), err)
	}
	if !bytes.Equal(ledgerRead(t, p), first) {
		t.Fatal("a no-op lock changed the file")
	}

	// New versions are appended, exactly those, after the old bytes.
	v2 := Catalog{Events: registry(t, ordersV1, ordersV2), Tables: []Table{tableWithNote()}}
	if err := v2.Events.Register("users.signed_up", 1, []byte(`{"type":"object"}`)); err != nil {
		t.Fatal(err)
	}
	want := ledgerLoad(t, p).Check(v2).Unlocked
	added, err = Lock(p, v2)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(added, want) || len(added) != 3 {
		t.Fatalf("locked %q, check said %q", ledgerSummary(added), ledgerSummary(want))
	}
	second := ledgerRead(t, p)
	if !bytes.HasPrefix(second, first) {
		t.Fatalf("earlier lines rewritten:\n%s\n---\n%s", first, second)
	}
	// The tail is the three new lines, one entry each.
	tail := strings.Split(strings.TrimSuffix(string(second[len(first):]), "\n"), "\n")
	if want := []string{ledgerEvent("orders.placed", 2, ordersV2), ledgerEvent("users.signed_up", 1, `{"type":"object"}`), ledgerTable(2, tableWithNote())}; !reflect.DeepEqual(tail, want) {
		t.Fatalf("appended:\n%s\nwant:\n%s", strings.Join(tail, "\n"), strings.Join(want, "\n"))
	}
	if n := bytes.Count(second, []byte("\n")); n != 5 || !bytes.HasSuffix(second, []byte("\n")) {
		t.Fatalf("%d lines:\n%s", n, second)
	}
	l := ledgerLoad(t, p)
	if r := l.Check(v2); !r.OK() || len(r.Unlocked) != 0 {
		t.Fatalf("check after lock: %+v", r)
	}
	if err := ledgerLoad(t, ledgerPath(t, first)).IsPrefixOf(l); err != nil {
		t.Fatalf("the old ledger is not a prefix: %v", err)
	}
	if added, err := Lock(p, v2); err != nil || len(added) != 0 || !bytes.Equal(ledgerRead(t, p), second) {
		t.Fatalf("lock again: %q %v", ledgerSummary(added), err)
	}
}

func TestLockRefuses(t *testing.T) {
	p := ledgerLocked(t, Catalog{Events: registry(t, ordersV1), Tables: []Table{tablePageviews()}})
	before := ledgerRead(t, p)
	changed := edit(t, func(s map[string]any) { prop(s, "total")["minimum"] = 1 })
	dropped := tableClone(tablePageviews())
	dropped.Columns = dropped.Columns[:3]
	bad := []struct {
		name string
		c    Catalog
		want []string
	}{
		{"shipped version changed", Catalog{Events: registry(t, string(changed)), Tables: []Table{tableWithNote()}}, []string{"event orders.placed version 1 changed after it shipped"}},
		{"shipped version removed", Catalog{Events: NewRegistry(), Tables: []Table{tableWithNote()}}, []string{"event orders.placed version 1 has shipped"}},
		{"column dropped", Catalog{Events: registry(t, ordersV1, ordersV2), Tables: []Table{dropped}}, []string{"table pageviews: column hits is missing"}},
		{"two problems", Catalog{Events: NewRegistry(), Tables: []Table{dropped}}, []string{"event orders.placed version 1 has shipped", "column hits is missing"}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			added, err := Lock(p, tc.c)
			if !errors.Is(err, ErrEDDViolation) || added != nil {
				t.Fatalf("lock: %q %v", ledgerSummary(added), err)
			}
			for _, w := range append(tc.want, "nothing locked") {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not say %q", err, w)
				}
			}
			if !bytes.Equal(ledgerRead(t, p), before) {
				t.Fatal("a refused lock wrote to the ledger")
			}
		})
	}

	// A refused lock does not create a missing file either.
	invalid := tableClone(tablePageviews())
	invalid.Name = "Bad Name"
	missing := ledgerPath(t, nil)
	if _, err := Lock(missing, Catalog{Tables: []Table{invalid}}); !errors.Is(err, ErrEDDViolation) {
		t.Fatalf("invalid table: %v", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("refused lock created the file: %v", err)
	}

	// A malformed ledger is not appended to.
	broken := append(bytes.Clone(before), "{oops\n"...)
	bp := ledgerPath(t, broken)
	if _, err := Lock(bp, Catalog{Events: registry(t, ordersV1, ordersV2)}); err == nil || !strings.Contains(err.Error(), "ledger line 3") {
		t.Fatalf("malformed ledger: %v", err)
	}
	if !bytes.Equal(ledgerRead(t, bp), broken) {
		t.Fatal("lock wrote to a malformed ledger")
	}
}

func TestLockWithoutTrailingNewline(t *testing.T) {
	line := ledgerEvent("orders.placed", 1, ordersV1)
	for _, tail := range []string{"", "\r", "\n\n"} {
		before := []byte(line + tail)
		p := ledgerPath(t, before)
		added, err := Lock(p, Catalog{Events: registry(t, ordersV1, ordersV2)})
		if err != nil || len(added) != 1 {
			t.Fatalf("tail %q: %q %v", tail, ledgerSummary(added), err)
		}
		after := ledgerRead(t, p)
		if !bytes.HasPrefix(after, before) {
			t.Fatalf("tail %q: rewritten:\n%s", tail, after)
		}
		l := ledgerLoad(t, p)
		if got := ledgerSummary(l.Entries); !reflect.DeepEqual(got, []string{"event orders.placed v1", "event orders.placed v2"}) {
			t.Fatalf("tail %q: entries %q", tail, got)
		}
		if !strings.HasSuffix(string(after), "\n"+ledgerEvent("orders.placed", 2, ordersV2)+"\n") {
			t.Fatalf("tail %q: the new entry is not on its own line:\n%q", tail, after)
		}
	}
}

func TestIsPrefixOf(t *testing.T) {
	ev1 := ledgerEvent("orders.placed", 1, ordersV1)
	ev2 := ledgerEvent("orders.placed", 2, ordersV2)
	tb1 := ledgerTable(1, tablePageviews())
	parse := func(lines ...string) *Ledger {
		t.Helper()
		l, err := ParseLedger(ledgerLines(lines...))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	full := parse(ev1, ev2, tb1)

	for _, older := range []*Ledger{{}, parse(ev1), parse(ev1, ev2), full,
		// Formatting is not content.
		parse(strings.ReplaceAll(ev1, ",", " ,\t"), ev2)} {
		if err := older.IsPrefixOf(full); err != nil {
			t.Fatalf("%q is a prefix: %v", ledgerSummary(older.Entries), err)
		}
	}

	changed := edit(t, func(s map[string]any) { prop(s, "total")["minimum"] = 1 })
	wider := tableWithNote()
	bad := []struct {
		name         string
		older, newer *Ledger
		want         string
	}{
		{"schema rewritten", parse(ev1, ev2), parse(ledgerEvent("orders.placed", 1, string(changed)), ev2), "ledger entry 1 (event orders.placed version 1) was rewritten"},
		{"table rewritten", full, parse(ev1, ev2, ledgerTable(1, wider)), "ledger entry 3 (table pageviews version 1) was rewritten"},
		{"entries swapped", parse(ev1, tb1), parse(tb1, ev1), "ledger entry 1 (event orders.placed version 1) was rewritten"},
		{"last entry lost", full, parse(ev1, ev2), "ledger entry 3 (table pageviews version 1) was removed: the ledger had 3 entries, it has 2"},
		{"middle entry lost", full, parse(ev1, tb1), "ledger entry 2 (event orders.placed version 2) was rewritten or removed"},
		{"all lost", full, parse(), "ledger entry 1 (event orders.placed version 1) was removed"},
		{"middle entry lost, another appended", full, parse(ev1, tb1, ledgerTable(2, wider)), "ledger entry 2 (event orders.placed version 2) was rewritten or removed"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.older.IsPrefixOf(tc.newer)
			if !errors.Is(err, ErrEDDViolation) {
				t.Fatalf("want an EDD violation, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// A ledger line that is not JSON names the line and keeps the decoder's
// error.
func TestParseLedgerKeepsTheCause(t *testing.T) {
	_, err := ParseLedger([]byte("{\"kind\": event}\n"))
	var syntax *json.SyntaxError
	if !errors.As(err, &syntax) || !strings.HasPrefix(err.Error(), "ledger line 1: ") {
		t.Fatalf("ParseLedger: %v, want ledger line 1 wrapping a *json.SyntaxError", err)
	}
}
