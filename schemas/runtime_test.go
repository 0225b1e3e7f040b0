package schemas

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/eventlog/eventlogtest"
)

// writers holds the writer of the "schemas" category of each log.
var writers sync.Map // *eventlog.Log → *eventlog.Writer

// schemasWriter reserves the "schemas" category of l, once, as the
// kernel does, and returns its writer.
func schemasWriter(tb testing.TB, l *eventlog.Log) *eventlog.Writer {
	tb.Helper()
	if w, ok := writers.Load(l); ok {
		return w.(*eventlog.Writer)
	}
	w, err := l.Reserve(Category)
	if err != nil {
		tb.Fatal(err)
	}
	writers.Store(l, w)
	return w
}

// kernelRegistry returns a registry with the type this package writes,
// registered as the kernel does.
func kernelRegistry(tb testing.TB) *Registry {
	tb.Helper()
	r := NewRegistry()
	if err := r.Register(TypeRegistered, 1, []byte(RegisteredSchema)); err != nil {
		tb.Fatal(err)
	}
	return r
}

// runtimeRegistrations reads the registrations of typ back from the log.
func runtimeRegistrations(tb testing.TB, l *eventlog.Log, typ string) []eventlog.Event {
	tb.Helper()
	evs, err := l.ReadStream(context.Background(), RegistrationStream(typ), 1, 100)
	if errors.Is(err, eventlog.ErrNotFound) {
		return nil
	}
	if err != nil {
		tb.Fatal(err)
	}
	return evs
}

// runtimeSeq is the log's last sequence.
func runtimeSeq(tb testing.TB, l *eventlog.Log) uint64 {
	tb.Helper()
	seq, err := l.LastSeq(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return seq
}

// runtimeSame fails unless a and b know the same types, versions and
// schema bytes.
func runtimeSame(tb testing.TB, a, b *Registry) {
	tb.Helper()
	if !reflect.DeepEqual(a.Types(), b.Types()) {
		tb.Fatalf("types %q and %q", a.Types(), b.Types())
	}
	for _, typ := range a.Types() {
		na, _ := a.Latest(typ)
		nb, _ := b.Latest(typ)
		if na != nb {
			tb.Fatalf("%s: latest %d and %d", typ, na, nb)
		}
		for v := 1; v <= na; v++ {
			sa, _ := a.Schema(typ, v)
			sb, _ := b.Schema(typ, v)
			if string(sa) != string(sb) {
				tb.Fatalf("%s version %d:\n%s\n%s", typ, v, sa, sb)
			}
		}
	}
}

// runtimeEvents are events of the types runtime tests register, valid
// and not, for comparing registries.
var runtimeEvents = []eventlog.Event{
	{Type: "orders.placed", Schema: 1, Data: json.RawMessage(`{"total":12}`)},
	{Type: "orders.placed", Schema: 1, Data: json.RawMessage(`{"total":-1}`)},
	{Type: "orders.placed", Schema: 1, Data: json.RawMessage(`{"status":"refunded","total":1}`)},
	{Type: "orders.placed", Schema: 2, Data: json.RawMessage(`{"status":"refunded","total":1,"coupon":"X"}`)},
	{Type: "orders.placed", Schema: 2, Data: json.RawMessage(`{"coupon":7,"total":1}`)},
	{Type: "orders.placed", Schema: 3, Data: json.RawMessage(`{"total":1}`)},
	{Type: "orders.placed", Data: json.RawMessage(`{}`)},
	{Type: "users.signed_up", Schema: 1, Data: json.RawMessage(`{"email":"a@b.c","note":"<&>"}`)},
	{Type: "users.signed_up", Schema: 1, Data: json.RawMessage(`{"email":1}`)},
	{Type: "users.deleted", Schema: 1, Data: json.RawMessage(`{}`)},
	{Type: TypeRegistered, Data: json.RawMessage(`{"type":"a.b","version":1,"schema":{}}`)},
	{Type: TypeRegistered, Data: json.RawMessage(`{"type":"a.b","version":0,"schema":{}}`)},
}

// runtimeValidates fails unless a and b judge runtimeEvents alike, with
// the same messages.
func runtimeValidates(tb testing.TB, a, b *Registry) {
	tb.Helper()
	for _, e := range runtimeEvents {
		ea, eb := a.Validate(&e), b.Validate(&e)
		if fmt.Sprint(ea) != fmt.Sprint(eb) {
			tb.Fatalf("%s v%d %s: %v and %v", e.Type, e.Schema, e.Data, ea, eb)
		}
	}
}

// usersV1 has characters json.Marshal would escape.
const usersV1 = `{
  "type": "object",
  "description": "a <new> user & friends",
  "properties": {"email": {"type": "string", "pattern": "^[^<>]+$"}, "note": {"type": "string"}},
  "required": ["email"]
}`

func TestRegisterAtRuntime(t *testing.T) {
	ctx := context.Background()
	r := kernelRegistry(t)
	l := eventlogtest.Open(t, func(l *eventlog.Log) { l.Validate = r.Validate })

	for i, s := range []string{ordersV1, ordersV2} {
		v, err := r.RegisterAtRuntime(ctx, schemasWriter(t, l), "orders.placed", []byte(s))
		if err != nil || v != i+1 {
			t.Fatalf("register version %d: got %d, %v", i+1, v, err)
		}
		if n, ok := r.Latest("orders.placed"); !ok || n != i+1 {
			t.Fatalf("latest %d %v", n, ok)
		}
		if got, _ := r.Schema("orders.placed", i+1); string(got) != string(compactJSON([]byte(s))) {
			t.Fatalf("schema version %d: %s", i+1, got)
		}
	}
	if r.inCode("orders.placed") {
		t.Fatal("a run-time type counts as declared in code")
	}

	evs := runtimeRegistrations(t, l, "orders.placed")
	if len(evs) != 2 {
		t.Fatalf("%d registration events", len(evs))
	}
	for i, e := range evs {
		if e.Type != TypeRegistered || e.Stream != "schemas.orders.placed" || e.Version != uint64(i+1) || e.Schema != 1 {
			t.Fatalf("registration %d: %+v", i+1, e)
		}
		var reg struct {
			Type    string          `json:"type"`
			Version int             `json:"version"`
			Schema  json.RawMessage `json:"schema"`
		}
		dec := json.NewDecoder(strings.NewReader(string(e.Data)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&reg); err != nil {
			t.Fatalf("registration %d data %s: %v", i+1, e.Data, err)
		}
		want := []string{ordersV1, ordersV2}[i]
		if reg.Type != "orders.placed" || reg.Version != i+1 || !sameJSON(reg.Schema, []byte(want)) {
			t.Fatalf("registration %d data: %s", i+1, e.Data)
		}
		if err := r.Validate(&e); err != nil {
			t.Fatalf("registration %d does not fit its own schema: %v", i+1, err)
		}
	}

	// An incompatible v3 (v1 again: drops coupon and an enum value).
	seq := runtimeSeq(t, l)
	v, err := r.RegisterAtRuntime(ctx, schemasWriter(t, l), "orders.placed", []byte(ordersV1))
	if !errors.Is(err, ErrIncompatible) || !errors.Is(err, ErrEDDViolation) || v != 0 {
		t.Fatalf("incompatible: %d %v", v, err)
	}
	if !strings.Contains(err.Error(), `property "coupon": removed`) {
		t.Fatalf("message: %v", err)
	}
	if n, _ := r.Latest("orders.placed"); n != 2 || runtimeSeq(t, l) != seq || len(runtimeRegistrations(t, l, "orders.placed")) != 2 {
		t.Fatalf("incompatible version applied or appended: latest %d", n)
	}

	// The log now takes events of the type, checked against its schemas.
	if _, err := l.Append(ctx, []eventlog.Event{{Stream: "orders.1", Type: "orders.placed", Schema: 2, Data: json.RawMessage(`{"total":1,"coupon":"X"}`)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, []eventlog.Event{{Stream: "orders.1", Type: "orders.placed", Schema: 2, Data: json.RawMessage(`{"coupon":"X"}`)}}); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("invalid event appended: %v", err)
	}
	if _, err := l.Append(ctx, []eventlog.Event{{Stream: "orders.1", Type: "orders.placed", Schema: 3, Data: json.RawMessage(`{"total":1}`)}}); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("unknown version appended: %v", err)
	}

	// A second type, with characters encoding/json escapes by default: the
	// registry holds the bytes the log holds.
	if v, err := r.RegisterAtRuntime(ctx, schemasWriter(t, l), "users.signed_up", []byte(usersV1)); err != nil || v != 1 {
		t.Fatalf("users: %d %v", v, err)
	}
	evs = runtimeRegistrations(t, l, "users.signed_up")
	got, _ := r.Schema("users.signed_up", 1)
	if len(evs) != 1 || !strings.Contains(string(evs[0].Data), string(got)) || !strings.Contains(string(got), "a <new> user & friends") {
		t.Fatalf("registered %s, logged %s", got, evs[0].Data)
	}
}

func TestRegisterAtRuntimeRefuses(t *testing.T) {
	ctx := context.Background()
	r := kernelRegistry(t)
	l := eventlogtest.Open(t, func(l *eventlog.Log) { l.Validate = r.Validate })
	if err := r.Register("billing.paid", 1, []byte(`{"type":"object"}`)); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name, typ, schema string
		want              error
		says              string
	}{
		{"kernel type", TypeRegistered, `{"type":"object","properties":{"x":{"type":"string"}}}`, eventlog.ErrInvalid, "declared by the fazt binary itself"},
		{"type declared in code", "billing.paid", `{"type":"object","properties":{"x":{"type":"string"}}}`, eventlog.ErrInvalid, "declared by the fazt binary itself"},
		{"type declared in code, same schema", "billing.paid", `{"type":"object"}`, eventlog.ErrInvalid, "declared by the fazt binary itself"},
		{"empty type", "", ordersV1, eventlog.ErrInvalid, "event type is empty"},
		{"space in type", "orders placed", ordersV1, eventlog.ErrInvalid, "not allowed"},
		{"trailing dot", "orders.", ordersV1, eventlog.ErrInvalid, "orders."},
		{"type too long", strings.Repeat("a", eventlog.MaxTypeLen+1), ordersV1, eventlog.ErrInvalid, "the limit is"},
		{"not JSON", "orders.placed", `{"type":`, eventlog.ErrInvalid, "not valid JSON"},
		{"empty schema", "orders.placed", ``, eventlog.ErrInvalid, "not valid JSON"},
		{"two values", "orders.placed", `{"type":"object"} {}`, eventlog.ErrInvalid, "orders.placed"},
		{"does not compile", "orders.placed", `{"type":"object","properties":{"a":{"type":"strin"}}}`, eventlog.ErrInvalid, "not a valid JSON Schema"},
		{"not an object schema", "orders.placed", `{"type":"array"}`, eventlog.ErrInvalid, `"type": "object"`},
		{"external ref", "orders.placed", `{"type":"object","properties":{"a":{"$ref":"https://example.com/s.json"}}}`, eventlog.ErrInvalid, "orders.placed"},
		{"closed at the top", "orders.placed", `{"type":"object","additionalProperties":false}`, ErrEDDViolation, "additionalProperties"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			v, err := r.RegisterAtRuntime(ctx, schemasWriter(t, l), tc.typ, []byte(tc.schema))
			if !errors.Is(err, tc.want) || v != 0 {
				t.Fatalf("got %d, %v; want %v", v, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %q does not say %q", err, tc.says)
			}
		})
	}
	if seq := runtimeSeq(t, l); seq != 0 {
		t.Fatalf("refused registrations appended %d events", seq)
	}
	if got := r.Types(); !reflect.DeepEqual(got, []string{"billing.paid", TypeRegistered}) {
		t.Fatalf("types %q", got)
	}
	if n, _ := r.Latest("billing.paid"); n != 1 {
		t.Fatalf("billing.paid at version %d", n)
	}

	// Without the kernel types, a log that validates refuses the
	// registration event itself, and nothing is applied.
	bare := NewRegistry()
	l2 := eventlogtest.Open(t, func(l *eventlog.Log) { l.Validate = bare.Validate })
	if _, err := bare.RegisterAtRuntime(ctx, schemasWriter(t, l2), "orders.placed", []byte(ordersV1)); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("unvalidated registration: %v", err)
	}
	if _, ok := bare.Latest("orders.placed"); ok || runtimeSeq(t, l2) != 0 {
		t.Fatal("refused registration applied or appended")
	}
}

func TestRegistryLoad(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r := kernelRegistry(t)
	l := eventlogtest.OpenDir(t, dir, func(l *eventlog.Log) { l.Validate = r.Validate })

	// Other events around the registrations, also in the "schemas"
	// category, must not confuse Load.
	for _, typ := range []string{"audit.noted", "schemas.noted"} {
		if err := r.Register(typ, 1, []byte(`{"type":"object"}`)); err != nil {
			t.Fatal(err)
		}
	}
	// Events of other types in the "schemas" category can only come from
	// the kernel's writer: Load reports them and passes over them.
	other := func(stream, typ string) {
		t.Helper()
		app := l.Append
		if eventlog.Category(stream) == Category {
			app = schemasWriter(t, l).Append
		}
		if _, err := app(ctx, []eventlog.Event{{Stream: stream, Type: typ}}); err != nil {
			t.Fatal(err)
		}
	}
	other("audit.1", "audit.noted")
	steps := []struct{ typ, schema string }{
		{"orders.placed", ordersV1},
		{"users.signed_up", usersV1},
		{"orders.placed", ordersV2},
	}
	for i, s := range steps {
		if _, err := r.RegisterAtRuntime(ctx, schemasWriter(t, l), s.typ, []byte(s.schema)); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		other("schemas.notes", "schemas.noted")
	}
	if err := r.Register("users.deleted", 1, []byte(`{"type":"object"}`)); err != nil {
		t.Fatal(err)
	}

	// A new registry rebuilt from the log knows what r learnt at run time.
	rebuilt := func(l *eventlog.Log) *Registry {
		t.Helper()
		r2 := kernelRegistry(t)
		for _, typ := range []string{"audit.noted", "schemas.noted", "users.deleted"} { // r's types in code
			if err := r2.Register(typ, 1, []byte(`{"type":"object"}`)); err != nil {
				t.Fatal(err)
			}
		}
		if err := r2.Load(ctx, l); err != nil {
			t.Fatalf("load: %v", err)
		}
		return r2
	}
	r2 := rebuilt(l)
	runtimeSame(t, r, r2)
	runtimeValidates(t, r, r2)
	if sk := r2.Skipped(); len(sk) != len(steps) || sk[0].Stream != "schemas.notes" || !strings.Contains(sk[0].Error, "is not schemas.registered") {
		t.Fatalf("skipped %+v; want the %d other events of the category", sk, len(steps))
	}
	if n, _ := r2.Latest("orders.placed"); n != 2 || r2.inCode("orders.placed") || r2.inCode("users.signed_up") {
		t.Fatalf("rebuilt: orders.placed at %d", n)
	}
	// Load again: nothing changes, nothing fails.
	if err := r2.Load(ctx, l); err != nil {
		t.Fatal(err)
	}
	runtimeSame(t, r, r2)
	if sk := r2.Skipped(); len(sk) != len(steps) {
		t.Fatalf("a second Load reports %d skipped records, want the same %d", len(sk), len(steps))
	}
	// A rebuilt registry continues where the log is.
	if v, err := r2.RegisterAtRuntime(ctx, schemasWriter(t, l), "users.signed_up", []byte(`{"type":"object","description":"a <new> user & friends","properties":{"email":{"type":"string","pattern":"^[^<>]+$"},"note":{"type":"string"},"name":{"type":"string"}},"required":["email"]}`)); err != nil || v != 2 {
		t.Fatalf("register after load: %d %v", v, err)
	}

	// Closed and reopened on the same directory: the same registry again.
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	l2 := eventlogtest.OpenDir(t, dir)
	r3 := rebuilt(l2)
	runtimeSame(t, r2, r3)
	runtimeValidates(t, r2, r3)
	if n, _ := r3.Latest("users.signed_up"); n != 2 {
		t.Fatalf("reopened: users.signed_up at %d", n)
	}
	if v, err := r3.RegisterAtRuntime(ctx, schemasWriter(t, l2), "orders.placed", []byte(ordersV2)); err != nil || v != 3 {
		t.Fatalf("register after reopen: %d %v", v, err)
	}
	if evs := runtimeRegistrations(t, l2, "orders.placed"); len(evs) != 3 || evs[2].Version != 3 {
		t.Fatalf("registrations after reopen: %+v", evs)
	}
	// An empty log has nothing to load.
	r4 := NewRegistry()
	if err := r4.Load(ctx, eventlogtest.Open(t)); err != nil || len(r4.Types()) != 0 {
		t.Fatalf("empty log: %q %v", r4.Types(), err)
	}
}

// Load pages through the log (1,000 events per read).
func TestRegistryLoadManyPages(t *testing.T) {
	ctx := context.Background()
	l := eventlogtest.Open(t)
	const n = 2100
	var evs []eventlog.Event
	flush := func() {
		t.Helper()
		if _, err := l.Append(ctx, evs); err != nil {
			t.Fatal(err)
		}
		evs = evs[:0]
	}
	for i := range n {
		typ := fmt.Sprintf("t%04d.happened", i)
		data := fmt.Sprintf(`{"type":%q,"version":1,"schema":{"type":"object","properties":{"i":{"const":%d}}}}`, typ, i)
		evs = append(evs, eventlog.Event{Stream: RegistrationStream(typ), Type: TypeRegistered, Data: json.RawMessage(data)})
		if i%7 == 0 {
			// Noise in the same category, and outside it.
			evs = append(evs, eventlog.Event{Stream: "schemas.noise", Type: "schemas.noise"}, eventlog.Event{Stream: "other.x", Type: "other.noise"})
		}
		if len(evs) >= eventlog.MaxAppendEvents-2 {
			flush()
		}
	}
	flush()
	r := NewRegistry()
	if err := r.Load(ctx, l); err != nil {
		t.Fatal(err)
	}
	if got := len(r.Types()); got != n {
		t.Fatalf("loaded %d types, want %d", got, n)
	}
	if got := len(r.Skipped()); got != (n+6)/7 {
		t.Fatalf("skipped %d records, want the %d noise events", got, (n+6)/7)
	}
	last := fmt.Sprintf("t%04d.happened", n-1)
	if err := r.Validate(&eventlog.Event{Type: last, Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, n-1))}); err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(&eventlog.Event{Type: last, Data: json.RawMessage(`{"i":0}`)}); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("wrong data: %v", err)
	}
}

// Registrations that Load cannot apply, written around RegisterAtRuntime
// (before the category was reserved), are skipped and reported with
// their position, and the type stays at its last good version: nothing
// in the log can stop a start. The next registration continues after
// them.
func TestRegistryLoadSkipsBadRegistrations(t *testing.T) {
	ctx := context.Background()
	deep := `{"type":"object","properties":{"a":` + strings.Repeat(`{"type":"object","properties":{"a":`, 100) + `{}` + strings.Repeat(`}}`, 100) + `}}`
	bad := []struct {
		name   string
		data   []string
		latest int    // a.b's version after Load
		seq    uint64 // of the skipped record
		says   string
	}{
		{"data not a registration", []string{`[1]`}, 0, 1, "not a schema registration"},
		{"schema does not compile", []string{`{"type":"a.b","version":1,"schema":{"type":"object","properties":{"x":{"type":"strin"}}}}`}, 0, 1, "not a valid JSON Schema"},
		{"version skipped", []string{`{"type":"a.b","version":2,"schema":{"type":"object"}}`}, 0, 1, "out of order"},
		{"incompatible", []string{`{"type":"a.b","version":1,"schema":{"type":"object","properties":{"x":{"type":"string"}}}}`, `{"type":"a.b","version":2,"schema":{"type":"object"}}`}, 1, 2, "not a compatible extension"},
		{"over a limit", []string{`{"type":"a.b","version":1,"schema":` + deep + `}`}, 0, 1, "MaxSchemaDepth"},
		{"another type's stream", []string{`{"type":"c.d","version":1,"schema":{"type":"object"}}`}, 0, 1, "belongs to another type"},
		{"duplicate version", []string{`{"type":"a.b","version":1,"schema":{"type":"object"}}`, `{"type":"a.b","version":1,"schema":{"type":"object","title":"x"}}`}, 1, 2, "registered already"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			l := eventlogtest.Open(t)
			for _, d := range tc.data {
				if _, err := l.Append(ctx, []eventlog.Event{{Stream: "schemas.a.b", Type: TypeRegistered, Data: json.RawMessage(d)}}); err != nil {
					t.Fatal(err)
				}
			}
			r := NewRegistry()
			if err := r.Load(ctx, l); err != nil {
				t.Fatalf("load: %v", err)
			}
			sk := r.Skipped()
			if len(sk) != 1 || sk[0].Seq != tc.seq || sk[0].Stream != "schemas.a.b" || !strings.Contains(sk[0].Error, tc.says) {
				t.Fatalf("skipped %+v; want seq %d saying %q", sk, tc.seq, tc.says)
			}
			if n, _ := r.Latest("a.b"); n != tc.latest {
				t.Fatalf("a.b at version %d, want %d", n, tc.latest)
			}
			// The next registration gets the next schema version, at the
			// stream's next version.
			next := `{"type":"object","properties":{"y":{"type":"string"}}}`
			if tc.name == "incompatible" {
				next = `{"type":"object","properties":{"x":{"type":"string"},"y":{"type":"string"}}}`
			}
			v, err := r.RegisterAtRuntime(ctx, schemasWriter(t, l), "a.b", []byte(next))
			if err != nil || v != tc.latest+1 {
				t.Fatalf("register after a skipped record: %d %v; want version %d", v, err, tc.latest+1)
			}
			// A fresh registry reads the same.
			r2 := NewRegistry()
			if err := r2.Load(ctx, l); err != nil || len(r2.Skipped()) != 1 {
				t.Fatalf("load again: %v, skipped %+v", err, r2.Skipped())
			}
			runtimeSame(t, r, r2)
		})
	}
}

// Load skips versions the registry already knows: the binary may declare
// in code a type that was first registered at run time.
func TestRegistryLoadSkipsKnownVersions(t *testing.T) {
	ctx := context.Background()
	l := eventlogtest.Open(t)
	r := NewRegistry()
	for _, s := range []string{ordersV1, ordersV2} {
		if _, err := r.RegisterAtRuntime(ctx, schemasWriter(t, l), "orders.placed", []byte(s)); err != nil {
			t.Fatal(err)
		}
	}

	// The binary now declares both versions.
	both := registry(t, ordersV1, ordersV2)
	if err := both.Load(ctx, l); err != nil {
		t.Fatalf("load over code: %v", err)
	}
	if n, _ := both.Latest("orders.placed"); n != 2 || !both.inCode("orders.placed") {
		t.Fatalf("latest %d, in code %v", n, both.inCode("orders.placed"))
	}
	if got, _ := both.Schema("orders.placed", 2); string(got) != ordersV2 {
		t.Fatalf("the code's schema was replaced by the log's: %s", got)
	}

	// The binary declares version 1 only: version 2 comes from the log.
	one := registry(t, ordersV1)
	if err := one.Load(ctx, l); err != nil {
		t.Fatalf("load over code: %v", err)
	}
	if n, _ := one.Latest("orders.placed"); n != 2 {
		t.Fatalf("latest %d", n)
	}
	runtimeValidates(t, r, one)
	// Still the binary's type: not changeable at run time.
	if _, err := one.RegisterAtRuntime(ctx, schemasWriter(t, l), "orders.placed", []byte(ordersV2)); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("run-time change of a type in code: %v", err)
	}
	if len(runtimeRegistrations(t, l, "orders.placed")) != 2 {
		t.Fatal("refused registration appended")
	}
}

// Two registries over one log race to register the first version of the
// same types: for each, exactly one wins; the other gets ErrConflict,
// learns the winner's version by Load, and can register the next.
func TestRegisterAtRuntimeRace(t *testing.T) {
	ctx := context.Background()
	l := eventlogtest.Open(t)
	schemasWriter(t, l) // before the goroutines use it
	regs := []*Registry{NewRegistry(), NewRegistry()}
	schema := func(who int) []byte {
		return []byte(fmt.Sprintf(`{"type":"object","properties":{"by%d":{"type":"string"}}}`, who))
	}
	const types = 25
	for i := range types {
		typ := fmt.Sprintf("race%d.happened", i)
		var wg sync.WaitGroup
		start := make(chan struct{})
		versions := make([]int, len(regs))
		errs := make([]error, len(regs))
		for j, r := range regs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				versions[j], errs[j] = r.RegisterAtRuntime(ctx, schemasWriter(t, l), typ, schema(j))
			}()
		}
		close(start)
		wg.Wait()
		winner := -1
		for j := range regs {
			switch {
			case errs[j] == nil && versions[j] == 1:
				if winner >= 0 {
					t.Fatalf("%s: both won", typ)
				}
				winner = j
			case errors.Is(errs[j], eventlog.ErrConflict) && versions[j] == 0:
			default:
				t.Fatalf("%s: registry %d: %d %v", typ, j, versions[j], errs[j])
			}
		}
		if winner < 0 {
			t.Fatalf("%s: nobody won: %v", typ, errs)
		}
		loser := regs[1-winner]
		if _, ok := loser.Latest(typ); ok {
			t.Fatalf("%s: the loser applied its registration", typ)
		}
		evs := runtimeRegistrations(t, l, typ)
		if len(evs) != 1 || !strings.Contains(string(evs[0].Data), fmt.Sprintf(`"by%d"`, winner)) {
			t.Fatalf("%s: registrations %+v", typ, evs)
		}
	}
	// The losers catch up from the log and agree with the winners.
	for _, r := range regs {
		if err := r.Load(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	runtimeSame(t, regs[0], regs[1])
	if len(regs[0].Types()) != types {
		t.Fatalf("types %q", regs[0].Types())
	}
	// Both now know version 1; racing for version 2 again lets one win.
	typ := "race0.happened"
	v1, _ := regs[0].Schema(typ, 1)
	var doc map[string]any
	if err := json.Unmarshal(v1, &doc); err != nil {
		t.Fatal(err)
	}
	doc["properties"].(map[string]any)["extra"] = map[string]any{"type": "integer"}
	v2, _ := json.Marshal(doc)
	var wg sync.WaitGroup
	errs := make([]error, len(regs))
	for j, r := range regs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[j] = r.RegisterAtRuntime(ctx, schemasWriter(t, l), typ, v2)
		}()
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) || !errors.Is(errors.Join(errs...), eventlog.ErrConflict) {
		t.Fatalf("version 2 race: %v", errs)
	}
	if evs := runtimeRegistrations(t, l, typ); len(evs) != 2 {
		t.Fatalf("%d registrations", len(evs))
	}
}

// Many goroutines registering through one registry: versions are handed
// out once each, in order, with no gaps.
func TestRegisterAtRuntimeConcurrentOneRegistry(t *testing.T) {
	ctx := context.Background()
	l := eventlogtest.Open(t)
	schemasWriter(t, l) // before the goroutines use it
	r := NewRegistry()
	const n = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := map[int]bool{}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each adds its own optional property to the newest version
			// it sees; a conflict is retried against the new state.
			for {
				latest, _ := r.Latest("busy.thing")
				props := map[string]any{}
				if latest > 0 {
					s, _ := r.Schema("busy.thing", latest)
					var doc map[string]any
					_ = json.Unmarshal(s, &doc)
					props = doc["properties"].(map[string]any)
				}
				props[fmt.Sprintf("p%d", i)] = map[string]any{"type": "string"}
				s, _ := json.Marshal(map[string]any{"type": "object", "properties": props})
				v, err := r.RegisterAtRuntime(ctx, schemasWriter(t, l), "busy.thing", s)
				if errors.Is(err, eventlog.ErrConflict) || errors.Is(err, ErrIncompatible) ||
					errors.Is(err, eventlog.ErrInvalid) && strings.Contains(err.Error(), "already registered") {
					continue // someone registered first: retry against the new state
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if won[v] {
					t.Errorf("version %d handed out twice", v)
				}
				won[v] = true
				mu.Unlock()
				return
			}
		}()
	}
	wg.Wait()
	if latest, _ := r.Latest("busy.thing"); latest != n || len(won) != n {
		t.Fatalf("latest %d, won %v", latest, won)
	}
	evs := runtimeRegistrations(t, l, "busy.thing")
	if len(evs) != n {
		t.Fatalf("%d registrations", len(evs))
	}
	r2 := NewRegistry()
	if err := r2.Load(ctx, l); err != nil {
		t.Fatal(err)
	}
	runtimeSame(t, r, r2)
	if sk := r2.Skipped(); len(sk) != 0 {
		t.Fatalf("skipped %+v", sk)
	}
}
