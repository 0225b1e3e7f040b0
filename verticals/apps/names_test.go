package apps

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/vfs"
)

// natsServer starts one plain NATS server with JetStream on loopback,
// for kernels that share it by URL as other writers of one log, and
// returns its client URL.
func natsServer(t *testing.T) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(30 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	return s.ClientURL()
}

// call is env.api for goroutines: it reports a failed request instead
// of ending the test.
func (e *env) call(method, path string, body any) (int, string, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, "", err
	}
	req, err := http.NewRequest(method, e.base+path, bytes.NewReader(b))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	r, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer r.Body.Close()
	out, err := io.ReadAll(r.Body)
	return r.StatusCode, string(out), err
}

// appsOf lists the apps e shows, without their URLs (they name e's port).
func appsOf(t *testing.T, e *env) []App {
	t.Helper()
	r := wantStatus(t, "list apps", e.api(t, "GET", AppsPath, nil), http.StatusOK)
	var out struct{ Apps []App }
	if err := json.Unmarshal([]byte(r.body), &out); err != nil {
		t.Fatal(err)
	}
	for i := range out.Apps {
		out.Apps[i].URL = ""
	}
	return out.Apps
}

func namesRounds() int {
	if os.Getenv("FAZT_SOAK") != "" {
		return 150
	}
	return 15
}

// Two kernels share one log through one NATS server, as two fazt serve
// --nats-url processes or the nodes of a cluster do, each with its own
// read models. In every round they claim one new name at the same
// moment: a new app against an alias, two aliases, two domains. Exactly
// one claim wins, the other is answered 409 naming the winner; both
// nodes' read models agree; and a name released (an alias or a domain
// removed) is claimed by the other node at once.
func TestNamesClaimedAcrossNodes(t *testing.T) {
	url := natsServer(t)
	tune := func(k *kernel.Kernel) { k.NATSURL = url }
	e1 := start(t, t.TempDir(), tune, Config{})
	e2 := start(t, t.TempDir(), tune, Config{})
	raceNames(t, e1, e2)
}

// The same on two nodes of a three-node cluster (the stream and the
// buckets replicated, each node reading its own replica, which may be a
// moment behind).
func TestNamesClaimedAcrossClusterNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a cluster")
	}
	var addrs []string
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		ln.Close()
	}
	envs := make([]*env, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range envs {
		e := &env{k: newKernel(t.TempDir())}
		e.k.Cluster = &eventlog.Cluster{Name: "names", Node: fmt.Sprintf("n%d", i), Listen: addrs[i], Peers: addrs, Secret: "a-cluster-secret-for-tests",
			Insecure: true} // loopback; route TLS is eventlog's own test
		files, err := vfs.Register(e.k, vfs.Config{})
		if err == nil {
			err = Register(e.k, files, Config{})
		}
		if err != nil {
			t.Fatal(err)
		}
		envs[i] = e
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if errs[i] = e.k.Open(ctx); errs[i] == nil {
				errs[i] = e.k.WaitReady(ctx)
			}
		}()
	}
	wg.Wait()
	for i, e := range envs {
		if errs[i] != nil {
			e.closed = true
			continue
		}
		t.Cleanup(func() { e.close(t) })
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, e := range envs {
		e.base, e.token = "http://"+e.k.ListenAddr(), e.k.Token
		_, e.port, _ = net.SplitHostPort(e.k.ListenAddr())
	}
	raceNames(t, envs[1], envs[2])
}

// raceNames claims names from e1 and e2 at once, round after round.
func raceNames(t *testing.T, e1, e2 *env) {
	files := map[string]string{"index.html": "<p>hi</p>"}
	e1.deploy(t, "base-a", files)
	e2.deploy(t, "base-b", files) // the blob is in the shared bucket already
	m := manifestOf(files)

	type claim struct {
		e          *env
		method     string
		path       string
		body       any
		app        string // the app that holds the name if this one wins
		undo       string // DELETE path releasing it (empty: none)
		status     int
		answer     string
		requestErr error
	}
	wins := [2]int{}
	for i := range namesRounds() {
		name := fmt.Sprintf("n%d", i)
		var c [2]*claim
		switch i % 3 {
		case 0: // a new app on one node, the same name as an alias on the other
			c[0] = &claim{e: e1, method: "POST", path: DeploysPath(name), body: m, app: name}
			c[1] = &claim{e: e2, method: "POST", path: AliasesPath("base-b"), body: AliasRequest{Alias: name}, app: "base-b", undo: AliasesPath("base-b") + "/" + name}
		case 1: // one alias for two apps
			c[0] = &claim{e: e1, method: "POST", path: AliasesPath("base-a"), body: AliasRequest{Alias: name}, app: "base-a", undo: AliasesPath("base-a") + "/" + name}
			c[1] = &claim{e: e2, method: "POST", path: AliasesPath("base-b"), body: AliasRequest{Alias: name}, app: "base-b", undo: AliasesPath("base-b") + "/" + name}
		case 2: // one domain for two apps
			name += ".example.com"
			c[0] = &claim{e: e1, method: "POST", path: DomainsPath("base-a"), body: DomainRequest{Domain: name}, app: "base-a", undo: DomainsPath("base-a") + "/" + name}
			c[1] = &claim{e: e2, method: "POST", path: DomainsPath("base-b"), body: DomainRequest{Domain: name}, app: "base-b", undo: DomainsPath("base-b") + "/" + name}
		}
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for _, x := range c {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				x.status, x.answer, x.requestErr = x.e.call(x.method, x.path, x.body)
			}()
		}
		close(gate)
		wg.Wait()
		won := -1
		for j, x := range c {
			switch {
			case x.requestErr != nil:
				t.Fatalf("round %d, %s %s: %v", i, x.method, x.path, x.requestErr)
			case x.status == http.StatusCreated && won < 0:
				won = j
			case x.status == http.StatusCreated:
				t.Fatalf("round %d: both claims of %s won: %s / %s", i, name, c[0].answer, c[1].answer)
			case x.status != http.StatusConflict:
				t.Fatalf("round %d, %s %s: %d %s, want 201 or 409", i, x.method, x.path, x.status, x.answer)
			}
		}
		if won < 0 {
			t.Fatalf("round %d: neither claim of %s won: %s / %s", i, name, c[0].answer, c[1].answer)
		}
		wins[won]++
		winner, loser := c[won], c[1-won]
		if !bytes.Contains([]byte(loser.answer), []byte(winner.app)) {
			t.Errorf("round %d: the refusal does not name the holder %s: %s", i, winner.app, loser.answer)
		}
		a1, a2 := appsOf(t, e1), appsOf(t, e2)
		if !slices.EqualFunc(a1, a2, sameApp) {
			t.Fatalf("round %d: the read models differ:\n%+v\n%+v", i, a1, a2)
		}
		holds := false
		for _, a := range a1 {
			holds = holds || a.Name == name && a.Name == winner.app || a.Name == winner.app && (slices.Contains(a.Aliases, name) || slices.Contains(a.Domains, name))
		}
		if !holds {
			t.Fatalf("round %d: %s is not %s's: %+v", i, name, winner.app, a1)
		}
		// A released name is free again, for the other node.
		if winner.undo != "" && i%2 == 0 {
			if st, ans, err := winner.e.call("DELETE", winner.undo, nil); err != nil || st != http.StatusOK {
				t.Fatalf("round %d: release %s: %d %s %v", i, name, st, ans, err)
			}
			if st, ans, err := loser.e.call(loser.method, loser.path, loser.body); err != nil || st != http.StatusCreated {
				t.Fatalf("round %d: claim of %s once released: %d %s %v", i, name, st, ans, err)
			}
		}
	}
	t.Logf("%d rounds: node 1 won %d, node 2 won %d", namesRounds(), wins[0], wins[1])
	if a1, a2 := appsOf(t, e1), appsOf(t, e2); !slices.EqualFunc(a1, a2, sameApp) {
		t.Fatalf("the read models differ:\n%+v\n%+v", a1, a2)
	}
}

func sameApp(a, b App) bool {
	return a.Name == b.Name && a.Live == b.Live && a.Deleted == b.Deleted && a.Deploys == b.Deploys &&
		a.Updated.Equal(b.Updated) && slices.Equal(a.Aliases, b.Aliases) && slices.Equal(a.Domains, b.Domains)
}

// Two first deploys of one new app at once, on two nodes: the name is
// the app's either way, and both deploys are recorded (the second is a
// redeploy), as on one node.
func TestNamesSameNewAppTwice(t *testing.T) {
	url := natsServer(t)
	tune := func(k *kernel.Kernel) { k.NATSURL = url }
	e1 := start(t, t.TempDir(), tune, Config{})
	e2 := start(t, t.TempDir(), tune, Config{})
	files := map[string]string{"index.html": "<p>hi</p>"}
	e1.deploy(t, "first", files)
	m := manifestOf(files)
	var wg sync.WaitGroup
	var st [2]int
	var ans [2]string
	for j, e := range []*env{e1, e2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if st[j], ans[j], err = e.call("POST", DeploysPath("twice"), m); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if st[0] != http.StatusCreated || st[1] != http.StatusCreated {
		t.Fatalf("two first deploys: %d %s / %d %s", st[0], ans[0], st[1], ans[1])
	}
	for _, e := range []*env{e1, e2} {
		r := wantStatus(t, "show", e.api(t, "GET", AppPath("twice"), nil), http.StatusOK)
		var a App
		if err := json.Unmarshal([]byte(r.body), &a); err != nil || a.Deploys != 2 {
			t.Fatalf("app after two first deploys: %s %v", r.body, err)
		}
	}
	// Its name is an app's: no alias takes it.
	r := e2.api(t, "POST", AliasesPath("first"), AliasRequest{Alias: "twice"})
	wantStatus(t, "alias on an app's name", r, http.StatusConflict)
}

// Names bound before claims existed have no name stream: the read model
// decides for them, and releasing one writes its stream's first event,
// after which it is claimable like any other.
func TestNamesBoundBeforeClaims(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir, nil, Config{})
	files := map[string]string{"index.html": "<p>hi</p>"}
	e.deploy(t, "blog", files)
	e.deploy(t, "shop", files)
	e.close(t)

	// An older fazt bound alias "old" to blog: the binding event alone.
	k := newKernel(dir)
	for _, s := range eventSchemas {
		if err := k.RegisterEvent(s.typ, s.version, []byte(s.schema)); err != nil {
			t.Fatal(err)
		}
	}
	w, err := k.Log().Reserve(Category, NamesCategory)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := k.Open(ctx); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(AliasChanged{App: "blog", Alias: "old"})
	if _, err := w.Append(ctx, []eventlog.Event{{Stream: AppStream("blog"), Type: TypeAliasAdded, Data: b}}); err != nil {
		t.Fatal(err)
	}
	if err := k.Close(ctx); err != nil {
		t.Fatal(err)
	}

	e = start(t, dir, nil, Config{})
	if evs, err := e.k.Log().ReadStream(ctx, NameStream(kindAlias, "old"), 1, 10); len(evs) != 0 {
		t.Fatalf("the legacy alias has a name stream: %v %v", evs, err)
	}
	wantStatus(t, "the legacy alias for another app", e.api(t, "POST", AliasesPath("shop"), AliasRequest{Alias: "old"}), http.StatusConflict)
	wantStatus(t, "a new app on the legacy alias", e.api(t, "POST", DeploysPath("old"), manifestOf(files)), http.StatusConflict)
	wantStatus(t, "the legacy alias again for its app", e.api(t, "POST", AliasesPath("blog"), AliasRequest{Alias: "old"}), http.StatusOK)
	wantStatus(t, "remove the legacy alias", e.api(t, "DELETE", AliasesPath("blog")+"/old", nil), http.StatusOK)
	wantStatus(t, "the released name for another app", e.api(t, "POST", AliasesPath("shop"), AliasRequest{Alias: "old"}), http.StatusCreated)
	if r := e.site(t, "old.localhost", "/"); r.status != http.StatusOK {
		t.Errorf("old.localhost: %d %s", r.status, r.body)
	}
	var a App
	if err := json.Unmarshal([]byte(wantStatus(t, "show shop", e.api(t, "GET", AppPath("shop"), nil), http.StatusOK).body), &a); err != nil || !slices.Equal(a.Aliases, []string{"old"}) {
		t.Fatalf("shop: %+v %v", a, err)
	}
}
