package schemas

import (
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// A recursive schema (a "$ref" back to an enclosing schema) is checked
// once per level of the data it describes. When one level can reach the
// next along two different paths that apply to the same place in the
// data (both branches of an "anyOf", two alternatives of a "oneOf" that
// each have the same property referring back), validating data nested n
// levels deep evaluates 2^n subschemas: a small event would keep a CPU
// busy for hours. MaxSchemaExpansion cannot see it (it counts the
// recursion once), so recursive parts of a schema are checked for it:
// this is the exponential ambiguity of the automaton whose states are
// the subschemas and whose letters are the steps into the data
// (property names, array items), which has it when two different cycles
// from one subschema spell the same steps (Weber and Seidl, 1991).

// MaxSchemaRecursion bounds the subschemas of one recursive part of a
// schema (its strongly connected component), which keeps that check
// quick.
const MaxSchemaRecursion = 300

// Labels of the steps from a subschema into the data.
const (
	stepInPlace = ""  // allOf, anyOf, $ref...: the same place
	stepAnyKey  = "*" // additionalProperties, patternProperties...: some property
	stepItem    = "[]"
	stepName    = "name"    // propertyNames: a property's name
	stepContent = "content" // contentSchema: the decoded string
)

type schemaEdge struct {
	to   int
	step string // stepInPlace, "." + a property name, or another step
}

// schemaGraph returns the subschemas reachable from root (root is 0) and
// their edges.
func schemaGraph(root *jsonschema.Schema) ([]*jsonschema.Schema, [][]schemaEdge) {
	ids := map[*jsonschema.Schema]int{root: 0}
	nodes := []*jsonschema.Schema{root}
	var adj [][]schemaEdge
	for i := 0; i < len(nodes); i++ {
		var out []schemaEdge
		add := func(step string, cs ...*jsonschema.Schema) {
			for _, c := range cs {
				if c == nil {
					continue
				}
				id, ok := ids[c]
				if !ok {
					id = len(nodes)
					ids[c] = id
					nodes = append(nodes, c)
				}
				out = append(out, schemaEdge{to: id, step: step})
			}
		}
		s := nodes[i]
		add(stepInPlace, s.Ref, s.RecursiveRef, s.Not, s.If, s.Then, s.Else)
		if s.DynamicRef != nil {
			add(stepInPlace, s.DynamicRef.Ref)
		}
		add(stepInPlace, s.AllOf...)
		add(stepInPlace, s.AnyOf...)
		add(stepInPlace, s.OneOf...)
		for _, c := range s.DependentSchemas {
			add(stepInPlace, c)
		}
		for _, d := range s.Dependencies {
			if c, ok := d.(*jsonschema.Schema); ok {
				add(stepInPlace, c)
			}
		}
		for k, c := range s.Properties {
			add("."+k, c)
		}
		for _, c := range s.PatternProperties {
			add(stepAnyKey, c)
		}
		add(stepAnyKey, s.UnevaluatedProperties)
		add(stepName, s.PropertyNames)
		add(stepItem, s.Contains, s.Items2020, s.UnevaluatedItems)
		add(stepItem, s.PrefixItems...)
		add(stepContent, s.ContentSchema)
		for _, v := range []any{s.AdditionalProperties, s.AdditionalItems, s.Items} {
			step := stepItem
			if v == s.AdditionalProperties {
				step = stepAnyKey
			}
			switch x := v.(type) {
			case *jsonschema.Schema:
				add(step, x)
			case []*jsonschema.Schema:
				add(step, x...)
			}
		}
		adj = append(adj, out)
	}
	return nodes, adj
}

// sccs returns the strongly connected component of each node (Tarjan);
// succ visits a node's successors.
func sccs(n int, succ func(v int, visit func(w int))) []int {
	comp := make([]int, n)
	index := make([]int, n)
	low := make([]int, n)
	on := make([]bool, n)
	for i := range comp {
		comp[i], index[i] = -1, -1
	}
	var stack []int
	next, ncomp := 0, 0
	var strong func(v int)
	strong = func(v int) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		on[v] = true
		succ(v, func(w int) {
			switch {
			case index[w] < 0:
				strong(w)
				low[v] = min(low[v], low[w])
			case on[w]:
				low[v] = min(low[v], index[w])
			}
		})
		if low[v] == index[v] {
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				on[w] = false
				comp[w] = ncomp
				if w == v {
					break
				}
			}
			ncomp++
		}
	}
	for v := range n {
		if index[v] < 0 {
			strong(v)
		}
	}
	return comp
}

// stepsMeet reports whether two steps can go to the same place.
func stepsMeet(a, b string) bool {
	objA := a == stepAnyKey || len(a) > 0 && a[0] == '.'
	objB := b == stepAnyKey || len(b) > 0 && b[0] == '.'
	return a == b || objA && objB && (a == stepAnyKey || b == stepAnyKey)
}

// eventRecursion returns why validating against root can take time
// exponential in the depth of the data, or "".
func eventRecursion(root *jsonschema.Schema) string {
	nodes, adj := schemaGraph(root)
	n := len(nodes)
	comp := sccs(n, func(v int, visit func(int)) {
		for _, e := range adj[v] {
			visit(e.to)
		}
	})
	// A schema referring to itself in place loops for ever.
	inPlace := sccs(n, func(v int, visit func(int)) {
		for _, e := range adj[v] {
			if e.step == stepInPlace {
				visit(e.to)
			}
		}
	})
	members := map[int][]int{}
	for v := range n {
		members[comp[v]] = append(members[comp[v]], v)
	}
	for v := range n {
		for _, e := range adj[v] {
			if e.step == stepInPlace && inPlace[e.to] == inPlace[v] {
				return "refers to itself at " + where(nodes[v]) + " without a step into the data: validating it would never end"
			}
		}
	}
	for _, vs := range members {
		cyclic := len(vs) > 1
		for _, e := range adj[vs[0]] {
			cyclic = cyclic || e.to == vs[0]
		}
		if !cyclic {
			continue
		}
		if len(vs) > MaxSchemaRecursion {
			return "has a recursive part of more than " + strconv.Itoa(MaxSchemaRecursion) + " subschemas (MaxSchemaRecursion)"
		}
		if why := ambiguous(nodes, adj, comp, vs); why != "" {
			return why
		}
	}
	return ""
}

// closureEdge is a step from a subschema into the data, through any
// in-place references first; mult counts the paths (at most 2).
type closureEdge struct {
	to   int // local index in the component
	step string
	mult int
}

// ambiguous checks one recursive component, vs, for two different
// cycles that take the same steps into the data.
func ambiguous(nodes []*jsonschema.Schema, adj [][]schemaEdge, comp []int, vs []int) string {
	c := comp[vs[0]]
	local := map[int]int{}
	for i, v := range vs {
		local[v] = i
	}
	k := len(vs)
	// In-place edges within the component form a DAG (checked above):
	// count paths from each node in topological order.
	order := topo(k, func(i int, visit func(int)) {
		for _, e := range adj[vs[i]] {
			if e.step == stepInPlace && comp[e.to] == c {
				visit(local[e.to])
			}
		}
	})
	cl := make([][]closureEdge, k)
	cnt := make([]int, k)
	for q := range k {
		clear(cnt)
		cnt[q] = 1
		merged := map[[2]any]int{}
		for _, x := range order {
			if cnt[x] == 0 {
				continue
			}
			for _, e := range adj[vs[x]] {
				if comp[e.to] != c {
					continue
				}
				to := local[e.to]
				if e.step == stepInPlace {
					cnt[to] = min(cnt[to]+cnt[x], 2)
					continue
				}
				key := [2]any{to, e.step}
				if j, ok := merged[key]; ok {
					cl[q][j].mult = min(cl[q][j].mult+cnt[x], 2)
				} else {
					merged[key] = len(cl[q])
					cl[q] = append(cl[q], closureEdge{to: to, step: e.step, mult: cnt[x]})
				}
			}
		}
	}
	// The product of the component with itself: a pair of places the
	// two copies of a cycle are at. Two different cycles from q with the
	// same steps are a path from (q,q) that leaves the diagonal, or takes
	// two different edges, and comes back.
	type pair struct{ a, b int }
	type move struct {
		to       int
		distinct bool
	}
	ids := map[pair]int{}
	var pairs []pair
	var moves [][]move
	id := func(p pair) int {
		if i, ok := ids[p]; ok {
			return i
		}
		ids[p] = len(pairs)
		pairs = append(pairs, p)
		moves = append(moves, nil)
		return len(pairs) - 1
	}
	for q := range k {
		id(pair{q, q})
	}
	budget := 4_000_000
	for i := 0; i < len(pairs); i++ {
		p := pairs[i]
		for x, e1 := range cl[p.a] {
			for y, e2 := range cl[p.b] {
				if !stepsMeet(e1.step, e2.step) {
					continue
				}
				if budget--; budget < 0 {
					return "has a recursive part too intricate to check (MaxSchemaRecursion)"
				}
				distinct := p.a == p.b && x != y
				j := id(pair{e1.to, e2.to})
				moves[i] = append(moves[i], move{to: j, distinct: distinct})
				if p.a == p.b && x == y && e1.mult > 1 {
					moves[i] = append(moves[i], move{to: j, distinct: true})
				}
			}
		}
	}
	pc := sccs(len(pairs), func(v int, visit func(int)) {
		for _, m := range moves[v] {
			visit(m.to)
		}
	})
	diagonal := map[int]bool{}
	for i, p := range pairs {
		if p.a == p.b {
			diagonal[pc[i]] = true
		}
	}
	for i, p := range pairs {
		if !diagonal[pc[i]] {
			continue
		}
		if p.a != p.b {
			return twice(where(nodes[vs[p.a]]) + " and " + where(nodes[vs[p.b]]))
		}
		for _, m := range moves[i] {
			if m.distinct && pc[m.to] == pc[i] {
				return twice(where(nodes[vs[p.a]]))
			}
		}
	}
	return ""
}

// topo orders the nodes of a DAG so that every edge goes forward.
func topo(n int, succ func(v int, visit func(int))) []int {
	seen := make([]bool, n)
	var out []int
	var dfs func(v int)
	dfs = func(v int) {
		seen[v] = true
		succ(v, func(w int) {
			if !seen[w] {
				dfs(w)
			}
		})
		out = append(out, v)
	}
	for v := range n {
		if !seen[v] {
			dfs(v)
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// twice is the message for an exponential recursion found at where.
func twice(where string) string {
	return "is recursive with two paths to the same data at every level (at " + where + "): validating data nested n levels deep would evaluate about 2^n subschemas; make each level refer back once"
}

// where is a subschema's JSON pointer in its schema.
func where(s *jsonschema.Schema) string {
	if i := strings.LastIndexByte(s.Location, '#'); i >= 0 {
		return s.Location[i:]
	}
	return s.Location
}
