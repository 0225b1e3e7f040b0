package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/schemas"
)

const ordersV1 = `{"type":"object","properties":{"total":{"type":"number"},"sku":{"type":"string"}},"required":["total"]}`

// Event types registered at run time validate appends, survive a restart,
// and evolve only by compatible versions.
func TestSchemaRegistrationOverHTTP(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	post := func(path, body string) (int, string) {
		status, b, _ := s.do(t, "POST", path, strings.NewReader(body), nil)
		return status, b
	}

	// Unknown types are refused, and nothing is written.
	if st, b := post("/v1/events", `{"events":[{"stream":"shop.1","type":"shop.ordered","data":{"total":1}}]}`); st != 400 || !strings.Contains(b, `not registered`) {
		t.Fatalf("unknown type: %d %s", st, b)
	}
	if st, b := post("/v1/schemas/shop.ordered", ordersV1); st != 201 || !strings.Contains(b, `"version":1`) {
		t.Fatalf("register v1: %d %s", st, b)
	}
	if st, b := post("/v1/events", `{"events":[{"stream":"shop.1","type":"shop.ordered","data":{"total":12.5,"sku":"A"}}]}`); st != 200 {
		t.Fatalf("valid event: %d %s", st, b)
	}
	// Invalid data is refused with the field and the rule.
	if st, b := post("/v1/events", `{"events":[{"stream":"shop.1","type":"shop.ordered","data":{"total":"lots"}}]}`); st != 400 || !strings.Contains(b, "/total") || !strings.Contains(b, "want number") {
		t.Fatalf("invalid data: %d %s", st, b)
	}
	if st, b := post("/v1/events", `{"events":[{"stream":"shop.1","type":"shop.ordered","data":{"sku":"A"}}]}`); st != 400 || !strings.Contains(b, "total") {
		t.Fatalf("missing required: %d %s", st, b)
	}
	before := len(s.events(t))
	// An incompatible version is an EDD violation; a compatible one lands.
	if st, b := post("/v1/schemas/shop.ordered", `{"type":"object","properties":{"total":{"type":"string"}},"required":["total"]}`); st != 422 || !strings.Contains(b, `"edd_violation"`) || !strings.Contains(b, "total") {
		t.Fatalf("incompatible v2: %d %s", st, b)
	}
	if n := len(s.events(t)); n != before {
		t.Fatalf("a refused registration wrote %d events", n-before)
	}
	if st, b := post("/v1/schemas/shop.ordered", `{"type":"object","properties":{"total":{"type":"number"},"sku":{"type":"string"},"coupon":{"type":"string"}},"required":["total"]}`); st != 201 || !strings.Contains(b, `"version":2`) {
		t.Fatalf("compatible v2: %d %s", st, b)
	}
	if st, b := post("/v1/events", `{"events":[{"stream":"shop.2","type":"shop.ordered","schema":2,"data":{"total":3,"coupon":"X"}}]}`); st != 200 {
		t.Fatalf("v2 event: %d %s", st, b)
	}
	// The binary's own types cannot be changed at run time.
	if st, b := post("/v1/schemas/schemas.registered", anyObject); st != 400 || !strings.Contains(b, "declared by the fazt binary") {
		t.Fatalf("kernel type: %d %s", st, b)
	}
	if st, b := post("/v1/schemas/shop.ordered", `{nope`); st != 400 {
		t.Fatalf("bad JSON: %d %s", st, b)
	}
	if st, b, _ := s.do(t, "GET", "/v1/schemas/shop.ordered", nil, nil); st != 200 || !strings.Contains(b, `"latest":2`) || !strings.Contains(b, `"coupon"`) || !strings.Contains(b, `"in_code":false`) {
		t.Fatalf("show: %d %s", st, b)
	}
	if st, b, _ := s.do(t, "GET", "/v1/schemas/nope.nope", nil, nil); st != 404 {
		t.Fatalf("show unknown: %d %s", st, b)
	}

	// After a restart the registry is rebuilt from the log.
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	s2 := startServer(t, dir)
	if st, b, _ := s2.do(t, "GET", "/v1/schemas", nil, nil); st != 200 || !strings.Contains(b, `{"type":"shop.ordered","latest":2,"in_code":false}`) || !strings.Contains(b, `"schemas.registered","latest":1,"in_code":true`) {
		t.Fatalf("list after restart: %d %s", st, b)
	}
	if st, b, _ := s2.do(t, "POST", "/v1/events", strings.NewReader(`{"events":[{"stream":"shop.3","type":"shop.ordered","data":{"total":"x"}}]}`), nil); st != 400 {
		t.Fatalf("validation after restart: %d %s", st, b)
	}
}

func TestSchemaCLI(t *testing.T) {
	s := startServer(t, t.TempDir())
	d := []string{"--data", s.dir}
	out, _, err := fazt(t, nil, ordersV1, append([]string{"schema", "register", "shop.ordered", "--file", "-"}, d...)...)
	if err != nil || out != "registered shop.ordered version 1\n" {
		t.Fatalf("register: %q %v", out, err)
	}
	file := filepath.Join(t.TempDir(), "v2.json")
	os.WriteFile(file, []byte(`{"type":"object","properties":{"total":{"type":"boolean"}}}`), 0o644)
	if _, _, err := fazt(t, nil, "", append([]string{"schema", "register", "shop.ordered", "--file", file}, d...)...); err == nil || !strings.Contains(err.Error(), "edd_violation") {
		t.Fatalf("incompatible register: %v", err)
	}
	out, _, err = fazt(t, nil, "", append([]string{"schema", "list"}, d...)...)
	if err != nil || !strings.Contains(out, "shop.ordered  v1  registered at run time\n") || !strings.Contains(out, "schemas.registered  v1  declared by the binary\n") {
		t.Fatalf("list: %q %v", out, err)
	}
	out, _, err = fazt(t, nil, "", append([]string{"schema", "show", "shop.ordered"}, d...)...)
	if err != nil || !strings.Contains(out, `"total"`) {
		t.Fatalf("show: %q %v", out, err)
	}
}

// The ledger committed in the repository is kept by this code.
func TestCommittedLedgerHolds(t *testing.T) {
	out, _, err := fazt(t, nil, "", "schema", "check", "--ledger", filepath.Join("..", "..", schemas.DefaultLedger))
	if err != nil || !strings.Contains(out, "ok: the code keeps every promise") {
		t.Fatalf("schema check: %q %v", out, err)
	}
}

func TestSchemaCheckAndLock(t *testing.T) {
	ledger := filepath.Join(t.TempDir(), "ledger.jsonl")
	// An empty ledger: everything is unlocked, nothing is broken.
	out, _, err := fazt(t, nil, "", "schema", "check", "--ledger", ledger)
	if err != nil || !strings.Contains(out, "not yet locked: event schemas.registered version 1") {
		t.Fatalf("check empty: %q %v", out, err)
	}
	if out, _, err = fazt(t, nil, "", "schema", "lock", "--ledger", ledger); err != nil || !strings.Contains(out, "locked event schemas.registered version 1") {
		t.Fatalf("lock: %q %v", out, err)
	}
	locked, _ := os.ReadFile(ledger)
	if out, _, err = fazt(t, nil, "", "schema", "lock", "--ledger", ledger); err != nil || !strings.Contains(out, "nothing to lock") {
		t.Fatalf("second lock: %q %v", out, err)
	}
	// A shipped schema that the code changed breaks the ledger.
	tampered := strings.Replace(string(locked), `"minimum":1`, `"minimum":2`, 1)
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	os.WriteFile(bad, []byte(tampered), 0o644)
	out, _, err = fazt(t, nil, "", "schema", "check", "--ledger", bad)
	if !errors.Is(err, schemas.ErrEDDViolation) || !strings.Contains(out, "version 1 changed after it shipped") {
		t.Fatalf("tampered: %q %v", out, err)
	}
	// The ledger only grows: an older copy must be a prefix.
	if _, _, err = fazt(t, nil, "", "schema", "check", "--ledger", ledger, "--base", bad); !errors.Is(err, schemas.ErrEDDViolation) {
		t.Fatalf("rewritten base accepted: %v", err)
	}
	if _, _, err = fazt(t, nil, "", "schema", "check", "--ledger", ledger, "--base", ledger); err != nil {
		t.Fatalf("identical base: %v", err)
	}
}
