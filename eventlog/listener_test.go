package eventlog_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fazt-sh/fazt/eventlog"
)

// The listener's clients read the log with the standard nats CLI, and
// nothing else: every other JetStream verb is refused and the log, its
// configuration and the kernel's consumers are left as they were.

// natsCLI finds the nats CLI (go install github.com/nats-io/natscli/nats@v0.5.0).
func natsCLI(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nats"); err == nil {
		return p
	}
	dirs := []string{os.Getenv("GOBIN")}
	for _, gopath := range filepath.SplitList(os.Getenv("GOPATH")) {
		dirs = append(dirs, filepath.Join(gopath, "bin"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	for _, d := range dirs {
		if p := filepath.Join(d, "nats"); d != "" && fileExists(p) {
			return p
		}
	}
	if os.Getenv("CI") == "" {
		t.Skip("the nats CLI is not installed: go install github.com/nats-io/natscli/nats@v0.5.0")
	}
	t.Fatal("the nats CLI is not installed: go install github.com/nats-io/natscli/nats@v0.5.0")
	return ""
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// cli runs the nats CLI against url with a clean configuration.
type cli struct {
	t        *testing.T
	bin, url string
	home     string
}

func newCLI(t *testing.T, url string) *cli {
	return &cli{t: t, bin: natsCLI(t), url: url, home: t.TempDir()}
}

func (c *cli) cmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NATS_") && !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "HOME="+c.home, "XDG_CONFIG_HOME="+filepath.Join(c.home, ".config"))
	return cmd
}

// run runs nats with args and returns its output; err is its failure.
func (c *cli) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := c.cmd(ctx, c.bin, append([]string{"--server", c.url, "--no-context"}, args...)...).CombinedOutput()
	return string(out), err
}

// view runs "nats stream view", which pages only on a terminal: script(1)
// gives it one.
func (c *cli) view(args ...string) (string, error) {
	script, err := exec.LookPath("script")
	if err != nil {
		if os.Getenv("CI") == "" {
			c.t.Skip("script(1) is not installed: stream view needs a terminal")
		}
		c.t.Fatal("script(1) is not installed: stream view needs a terminal")
	}
	line := c.bin + " --server " + c.url + " --no-context stream view " + strings.Join(args, " ")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := c.cmd(ctx, script, "-qec", line, "/dev/null").CombinedOutput()
	return string(out), err
}

// listenerLog opens a log with a listener and three events, and a
// durable consumer of the kernel's (named like a reactor's) holding one
// delivered, unacknowledged message.
type listenerLog struct {
	l       *eventlog.Log
	kernel  jetstream.Consumer
	pending jetstream.Msg // delivered to the kernel's consumer, not acked
}

func openListenerLog(t *testing.T, writable bool) *listenerLog {
	l := openLog(t, func(l *eventlog.Log) { l.Listen, l.ListenWritable = "127.0.0.1:0", writable })
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		if _, err := l.Append(ctx, []eventlog.Event{ev(fmt.Sprintf("probe.%d", i), "probe.seen", map[string]int{"n": i})}); err != nil {
			t.Fatal(err)
		}
	}
	js, err := jetstream.New(l.Conn())
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateConsumer(ctx, eventlog.DefaultStreamName, jetstream.ConsumerConfig{
		Durable: "reactor_probe", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1)
	if err != nil {
		t.Fatal(err)
	}
	var pending jetstream.Msg
	for m := range batch.Messages() {
		pending = m
	}
	if pending == nil {
		t.Fatalf("the kernel's consumer got nothing: %v", batch.Error())
	}
	ll := &listenerLog{l: l, kernel: cons}
	ll.pending = pending
	ll.checkIntact(t, "setup", 3)
	return ll
}

// checkIntact asserts, through the kernel's own connection, that the log
// holds want messages with its immutable configuration, that it is the
// only stream, that the kernel's consumer is the only consumer and still
// has its one message delivered and unacknowledged.
func (ll *listenerLog) checkIntact(t *testing.T, after string, want uint64) {
	t.Helper()
	ctx := context.Background()
	info, err := ll.l.StreamInfo(ctx)
	if err != nil {
		t.Fatalf("after %s: stream info: %v", after, err)
	}
	c := info.Config
	if info.State.Msgs != want || info.State.LastSeq != want || info.State.FirstSeq != 1 {
		t.Errorf("after %s: the log holds %d messages (%d..%d), want %d", after, info.State.Msgs, info.State.FirstSeq, info.State.LastSeq, want)
	}
	if !c.DenyDelete || !c.DenyPurge || c.MaxMsgs != -1 || c.MaxBytes != -1 || c.MaxAge != 0 || c.MaxMsgsPerSubject != -1 ||
		c.Storage != jetstream.FileStorage || !slices.Equal(c.Subjects, []string{"fazt.ev.>"}) || c.Sealed || c.RePublish != nil || c.Mirror != nil || len(c.Sources) != 0 {
		t.Errorf("after %s: stream configuration changed: %+v", after, c)
	}
	js, _ := jetstream.New(ll.l.Conn())
	var streams []string
	names := js.StreamNames(ctx)
	for n := range names.Name() {
		streams = append(streams, n)
	}
	if names.Err() != nil || !slices.Equal(streams, []string{eventlog.DefaultStreamName}) {
		t.Errorf("after %s: streams %v (%v), want only %s", after, streams, names.Err(), eventlog.DefaultStreamName)
	}
	s, err := js.Stream(ctx, eventlog.DefaultStreamName)
	if err != nil {
		t.Fatal(err)
	}
	var consumers []string
	cn := s.ConsumerNames(ctx)
	for n := range cn.Name() {
		consumers = append(consumers, n)
	}
	if cn.Err() != nil || !slices.Equal(consumers, []string{"reactor_probe"}) {
		t.Errorf("after %s: consumers %v (%v), want only the kernel's reactor_probe", after, consumers, cn.Err())
	}
	ci, err := ll.kernel.Info(ctx)
	if err != nil {
		t.Fatalf("after %s: the kernel's consumer: %v", after, err)
	}
	if ci.Delivered.Consumer != 1 || ci.NumAckPending != 1 || ci.AckFloor.Stream != 0 || ci.Config.AckPolicy != jetstream.AckExplicitPolicy {
		t.Errorf("after %s: the kernel's consumer was touched: delivered %d, ack pending %d, ack floor %d, ack policy %v",
			after, ci.Delivered.Consumer, ci.NumAckPending, ci.AckFloor.Stream, ci.Config.AckPolicy)
	}
}

func TestListenerReadsWithTheNATSCLI(t *testing.T) {
	ll := openListenerLog(t, false)
	c := newCLI(t, ll.l.ClientURL())
	for _, tc := range []struct {
		args []string
		want []string // regular expressions
	}{
		{[]string{"stream", "info", "FAZT_EVENTS"}, []string{`Subjects: fazt\.ev\.>`, `Messages: 3\b`, `Last Sequence: 3\b`, `Allows Msg Delete: false`, `Allows Purge: false`}},
		{[]string{"stream", "ls"}, []string{`FAZT_EVENTS\s+│[^\n]*│\s+3\s+│`}},
		{[]string{"stream", "ls", "--names"}, []string{`(?m)^FAZT_EVENTS$`}},
		{[]string{"stream", "get", "FAZT_EVENTS", "1"}, []string{`FAZT_EVENTS#1 .* on Subject fazt\.ev\.probe\.1`, `Fazt-Type: probe\.seen`, `Fazt-Version: 1`, `\{"n":1\}`}},
		{[]string{"stream", "get", "FAZT_EVENTS", "--last-for", "fazt.ev.probe.2"}, []string{`FAZT_EVENTS#2 `, `\{"n":2\}`}},
		{[]string{"stream", "subjects", "FAZT_EVENTS"}, []string{`fazt\.ev\.probe\.3`}},
	} {
		out, err := c.run(tc.args...)
		if err != nil {
			t.Errorf("nats %s: %v\n%s", strings.Join(tc.args, " "), err, out)
			continue
		}
		for _, w := range tc.want {
			if !regexp.MustCompile(w).MatchString(out) {
				t.Errorf("nats %s: no %q in\n%s", strings.Join(tc.args, " "), w, out)
			}
		}
	}
	// stream view pages with a consumer of its own, made through the
	// listener and deleted when done: from sequence 2, both events.
	out, err := c.view("FAZT_EVENTS", "10", "--id", "2")
	if err != nil {
		t.Fatalf("nats stream view: %v\n%s", err, out)
	}
	for _, w := range []string{`\[2\] Subject: fazt\.ev\.probe\.2`, `\{"n":2\}`, `\[3\] Subject: fazt\.ev\.probe\.3`, `\{"n":3\}`, `Reached apparent end of data`} {
		if !regexp.MustCompile(w).MatchString(out) {
			t.Errorf("nats stream view: no %q in\n%s", w, out)
		}
	}
	if strings.Contains(out, "[1] Subject") {
		t.Errorf("nats stream view --id 2 showed sequence 1:\n%s", out)
	}
	ll.checkIntact(t, "the reading verbs", 3)
}

// The verbs a listener client may not use, each tried with the real CLI.
// The proof is the log's state afterwards; the CLI also shows the
// refusal, by failing or (nats req, nats account info) by printing it.
type refusedVerb struct {
	name string
	args []string
	// silent: the CLI ignores the error (stream seal shows the stream).
	silent bool
}

var refusal = regexp.MustCompile(`No responders|no responders|"code":403|fazt's NATS listener`)

func checkRefused(t *testing.T, v refusedVerb, out string, err error) {
	t.Helper()
	if err == nil && !v.silent && !refusal.MatchString(out) {
		t.Errorf("%s: nats %s was not refused:\n%s", v.name, strings.Join(v.args, " "), out)
	}
}

func refusedVerbs(ll *listenerLog) []refusedVerb {
	ack := ll.pending.Reply()
	return []refusedVerb{
		{name: "stream rm", args: []string{"stream", "rm", "FAZT_EVENTS", "-f"}},
		{name: "stream edit max-msgs", args: []string{"stream", "edit", "FAZT_EVENTS", "--max-msgs", "2", "-f"}},
		{name: "stream purge", args: []string{"stream", "purge", "FAZT_EVENTS", "-f"}},
		{name: "stream rmm", args: []string{"stream", "rmm", "FAZT_EVENTS", "1", "-f"}},
		{name: "stream seal", args: []string{"stream", "seal", "FAZT_EVENTS", "-f"}, silent: true},
		{name: "stream add file", args: []string{"stream", "add", "FILES", "--subjects", "files.>", "--storage", "file", "--defaults"}},
		{name: "stream add memory", args: []string{"stream", "add", "MEM", "--subjects", "mem.>", "--storage", "memory", "--defaults"}},
		{name: "stream add into fazt.ev", args: []string{"stream", "add", "FORGE", "--subjects", "forge.>", "--republish-source", ">", "--republish-destination", "fazt.ev.forged.1", "--defaults"}},
		{name: "stream copy", args: []string{"stream", "copy", "FAZT_EVENTS", "COPY", "--subjects", "copy.>"}},
		{name: "stream snapshot (backup)", args: []string{"req", "$JS.API.STREAM.SNAPSHOT.FAZT_EVENTS", `{"deliver_subject":"backup.x"}`}},
		{name: "stream restore", args: []string{"req", "$JS.API.STREAM.RESTORE.RESTORED", `{"config":{"name":"RESTORED","subjects":["fazt.ev.>"]}}`}},
		{name: "stream update (raw)", args: []string{"req", "$JS.API.STREAM.UPDATE.FAZT_EVENTS", `{"name":"FAZT_EVENTS","subjects":["fazt.ev.>"],"storage":"file","max_msgs":2}`}},
		{name: "consumer add durable", args: []string{"consumer", "add", "FAZT_EVENTS", "DURABLE", "--pull", "--defaults"}},
		{name: "consumer add durable, idle for ever", args: []string{"consumer", "add", "FAZT_EVENTS", "LONG", "--pull", "--inactive-threshold", "1000h", "--defaults"}},
		{name: "consumer add push into fazt.ev", args: []string{"consumer", "add", "FAZT_EVENTS", "LOOP", "--target", "fazt.ev.loop.1", "--inactive-threshold", "1m", "--defaults"}},
		{name: "consumer add named like a reactor", args: []string{"consumer", "add", "FAZT_EVENTS", "reactor_billing", "--pull", "--inactive-threshold", "1m", "--defaults"}},
		{name: "consumer create, legacy durable", args: []string{"req", "$JS.API.CONSUMER.CREATE.FAZT_EVENTS", `{"stream_name":"FAZT_EVENTS","config":{"durable_name":"OLD","ack_policy":"explicit","deliver_policy":"all"}}`}},
		{name: "consumer rm of the kernel's", args: []string{"consumer", "rm", "FAZT_EVENTS", "reactor_probe", "-f"}},
		{name: "consumer info of the kernel's", args: []string{"consumer", "info", "FAZT_EVENTS", "reactor_probe"}},
		{name: "consumer next of the kernel's", args: []string{"consumer", "next", "FAZT_EVENTS", "reactor_probe", "--count", "1", "--timeout", "2s"}},
		{name: "consumer ls", args: []string{"consumer", "ls", "FAZT_EVENTS"}},
		{name: "ack of the kernel's message", args: []string{"req", ack, "+ACK", "--timeout", "2s"}},
		{name: "kv add", args: []string{"kv", "add", "BUCKET"}},
		{name: "kv put", args: []string{"kv", "put", "BUCKET", "k", "v"}},
		{name: "object store add", args: []string{"object", "add", "OBJECTS"}},
		{name: "publish an event", args: []string{"req", "fazt.ev.x.y", `{"x":1}`, "--timeout", "2s"}},
		{name: "publish an event to JetStream", args: []string{"pub", "--jetstream", "fazt.ev.x.y", `{"x":1}`}},
		{name: "account info", args: []string{"account", "info"}},
		{name: "account-level request", args: []string{"req", "$JS.API.INFO", ""}},
		{name: "account purge", args: []string{"req", "$JS.API.ACCOUNT.PURGE.$G", "", "--timeout", "2s"}},
	}
}

func TestListenerRefusesEverythingElse(t *testing.T) {
	ll := openListenerLog(t, false)
	c := newCLI(t, ll.l.ClientURL())
	for _, v := range refusedVerbs(ll) {
		out, err := c.run(v.args...)
		checkRefused(t, v, out, err)
		ll.checkIntact(t, v.name, 3)
	}
	// A fire-and-forget ack reaches nothing either.
	if out, err := c.run("pub", ll.pending.Reply(), "+ACK"); err != nil {
		t.Fatalf("publish: %v\n%s", err, out)
	}
	ll.checkIntact(t, "a published ack", 3)
}

// A writable listener lets clients publish events (the log reads them
// as valid or malformed as their headers say) and still refuses every
// verb that is not reading.
func TestWritableListenerPublishesButAdministersNothing(t *testing.T) {
	ll := openListenerLog(t, true)
	ctx := context.Background()
	c := newCLI(t, ll.l.ClientURL())
	out, err := c.run("req", "fazt.ev.orders.1", `{"total":12}`,
		"-H", "Fazt-Id:01J0000000000000000000000A", "-H", "Fazt-Type:orders.placed", "-H", "Fazt-Version:1")
	if err != nil || !strings.Contains(out, `"seq":4`) {
		t.Fatalf("publish an event: %v\n%s", err, out)
	}
	if out, err := c.run("pub", "fazt.ev.rogue.1", `not json`); err != nil {
		t.Fatalf("publish a message: %v\n%s", err, out)
	}
	evs, err := ll.l.ReadStream(ctx, "orders.1", 1, 10)
	if err != nil || len(evs) != 1 || evs[0].Seq != 4 || evs[0].Type != "orders.placed" || string(evs[0].Data) != `{"total":12}` {
		t.Fatalf("the published event: %+v %v", evs, err)
	}
	waitSeq(t, ll.l, 5)
	page, err := ll.l.Read(ctx, 4, 10, eventlog.Filter{})
	if err != nil || len(page.Events) != 1 || page.Events[0].Malformed == nil || page.Events[0].Seq != 5 {
		t.Fatalf("the message without headers reads as %+v %v", page.Events, err)
	}
	var de *eventlog.DecodeError
	if err := page.Events[0].Err(); !errors.As(err, &de) || de.Seq != 5 {
		t.Fatalf("its error: %v", err)
	}
	ll.checkIntact(t, "two publishes", 5)
	for _, v := range refusedVerbs(ll) {
		if strings.HasPrefix(v.name, "publish an event") {
			continue // allowed here
		}
		out, err := c.run(v.args...)
		checkRefused(t, v, out, err)
		ll.checkIntact(t, v.name, 5)
	}
}

func waitSeq(t *testing.T, l *eventlog.Log, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := l.WaitTail(ctx, seq-1); err != nil || got < seq {
		t.Fatalf("the log did not reach %d: %d %v", seq, got, err)
	}
}

// The guard's rules, through a plain NATS client of the listener (these
// need no CLI).
func TestListenerConsumers(t *testing.T) {
	ll := openListenerLog(t, false)
	ctx := context.Background()
	nc, err := nats.Connect(ll.l.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream := eventlog.DefaultStreamName
	api := func(subject, body string) (code int, desc string, name string) {
		t.Helper()
		m, err := nc.Request(subject, []byte(body), 5*time.Second)
		if err != nil {
			return 0, err.Error(), ""
		}
		var r struct {
			Name  string `json:"name"`
			Error *struct {
				Code        int    `json:"code"`
				Description string `json:"description"`
			} `json:"error"`
		}
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatalf("%s: %s", subject, m.Data)
		}
		if r.Error != nil {
			return r.Error.Code, r.Error.Description, r.Name
		}
		return 200, "", r.Name
	}

	// An ordered consumer, the way the nats.go and the log's cursors read:
	// it streams every event, and leaves nothing behind.
	oc, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for got < 3 {
		m, err := oc.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("ordered consumer: %v after %d", err, got)
		}
		md, _ := m.Metadata()
		got++
		if md.Sequence.Stream != uint64(got) {
			t.Fatalf("ordered consumer: message %d is sequence %d", got, md.Sequence.Stream)
		}
	}
	if err := js.DeleteConsumer(ctx, stream, oc.CachedInfo().Name); err != nil {
		t.Fatalf("delete its own consumer: %v", err)
	}

	// The legacy ephemeral form: the guard names it; the client pulls it.
	code, desc, name := api("$JS.API.CONSUMER.CREATE."+stream, `{"stream_name":"`+stream+`","config":{"deliver_policy":"all","ack_policy":"explicit","max_waiting":1000000}}`)
	if code != 200 || name == "" {
		t.Fatalf("legacy ephemeral: %d %s", code, desc)
	}
	sub, err := nc.SubscribeSync(nats.NewInbox())
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+stream+"."+name, sub.Subject, []byte(`{"batch":3,"expires":2000000000}`)); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("pull %d: %v", i, err)
		}
		md, err := m.Metadata() // the $JS.ACK reply carries it
		if err != nil || md.Sequence.Stream != uint64(i) {
			t.Fatalf("pull %d: %+v %v (reply %q)", i, md, err, m.Reply)
		}
	}
	info, err := ll.l.Conn().Request("$JS.API.CONSUMER.INFO."+stream+"."+name, nil, 5*time.Second)
	if err != nil || !strings.Contains(string(info.Data), `"ack_policy":"none"`) || !strings.Contains(string(info.Data), `"mem_storage":true`) ||
		!strings.Contains(string(info.Data), `"max_waiting":512`) || !strings.Contains(string(info.Data), `"max_expires":60000000000`) {
		t.Fatalf("the guard's consumer: %s %v", info.Data, err)
	}
	if code, desc, _ := api("$JS.API.CONSUMER.DELETE."+stream+"."+name, ""); code != 200 {
		t.Fatalf("delete: %d %s", code, desc)
	}
	// The other forms of create, within the bounds: each made and deleted.
	for _, tc := range []struct{ subject, body, name string }{
		{"$JS.API.CONSUMER.CREATE." + stream, `{"stream_name":"` + stream + `","config":{"durable_name":"legacy","inactive_threshold":60000000000}}`, "legacy"},
		{"$JS.API.CONSUMER.CREATE." + stream + ".filtered.fazt.ev.probe.>", `{"stream_name":"` + stream + `","config":{"name":"filtered","filter_subject":"fazt.ev.probe.>"}}`, "filtered"},
		{"$JS.API.CONSUMER.DURABLE.CREATE." + stream + ".dur", `{"stream_name":"` + stream + `","config":{"durable_name":"dur","inactive_threshold":60000000000}}`, "dur"},
	} {
		if code, desc, name := api(tc.subject, tc.body); code != 200 || name != tc.name {
			t.Fatalf("%s: %d %s %q", tc.subject, code, desc, name)
		}
		if code, desc, _ := api("$JS.API.CONSUMER.DELETE."+stream+"."+tc.name, ""); code != 200 {
			t.Fatalf("delete %s: %d %s", tc.name, code, desc)
		}
	}

	for _, tc := range []struct{ name, subject, body string }{
		{"push into the log", "$JS.API.CONSUMER.CREATE." + stream + ".loop", `{"stream_name":"` + stream + `","config":{"name":"loop","deliver_subject":"fazt.ev.loop.1","inactive_threshold":60000000000}}`},
		{"durable", "$JS.API.CONSUMER.DURABLE.CREATE." + stream + ".dur", `{"stream_name":"` + stream + `","config":{"durable_name":"dur","ack_policy":"explicit"}}`},
		{"durable by its subject", "$JS.API.CONSUMER.DURABLE.CREATE." + stream + ".dur2", `{"stream_name":"` + stream + `","config":{"ack_policy":"explicit"}}`},
		{"idle for ever", "$JS.API.CONSUMER.CREATE." + stream + ".idle", `{"stream_name":"` + stream + `","config":{"name":"idle","inactive_threshold":36000000000000}}`},
		{"a reactor's name", "$JS.API.CONSUMER.CREATE." + stream + ".reactor_x", `{"stream_name":"` + stream + `","config":{"name":"reactor_x","inactive_threshold":60000000000}}`},
		{"the kernel's name", "$JS.API.CONSUMER.CREATE." + stream + ".reactor_probe", `{"stream_name":"` + stream + `","config":{"durable_name":"reactor_probe","ack_policy":"explicit","ack_wait":3600000000000,"inactive_threshold":60000000000}}`},
		{"sourcing", "$JS.API.CONSUMER.CREATE." + stream + ".src", `{"stream_name":"` + stream + `","config":{"name":"src","sourcing":true}}`},
		{"unknown field", "$JS.API.CONSUMER.CREATE." + stream + ".odd", `{"stream_name":"` + stream + `","config":{"name":"odd","surprise":1}}`},
		{"another stream", "$JS.API.CONSUMER.CREATE.OTHER.o", `{"stream_name":"OTHER","config":{"name":"o"}}`},
	} {
		if code, desc, _ := api(tc.subject, tc.body); code == 200 {
			t.Errorf("%s: created", tc.name)
		} else if code != 403 && !strings.Contains(desc, "no responders") {
			t.Errorf("%s: %d %s", tc.name, code, desc)
		}
		ll.checkIntact(t, tc.name, 3)
	}

	// Pulls and acks of the kernel's consumer reach nothing.
	if _, err := nc.Request("$JS.API.CONSUMER.MSG.NEXT."+stream+".reactor_probe", []byte(`{"batch":1,"no_wait":true}`), 2*time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("pull of the kernel's consumer: %v", err)
	}
	if err := nc.Publish(ll.pending.Reply(), []byte("+ACK")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	ll.checkIntact(t, "a pull and an ack of the kernel's consumer", 3)

	// At most maxListenerConsumers open at a time; deleting one makes room.
	var names []string
	for i := 0; ; i++ {
		n := fmt.Sprintf("c%d", i)
		code, desc, _ := api("$JS.API.CONSUMER.CREATE."+stream+"."+n, `{"stream_name":"`+stream+`","config":{"name":"`+n+`","inactive_threshold":600000000000}}`)
		if code != 200 {
			if code != 403 || !strings.Contains(desc, "the most it allows") || i != 64 {
				t.Fatalf("consumer %d: %d %s", i, code, desc)
			}
			break
		}
		names = append(names, n)
	}
	if code, desc, _ := api("$JS.API.CONSUMER.DELETE."+stream+"."+names[0], ""); code != 200 {
		t.Fatalf("delete: %d %s", code, desc)
	}
	if code, desc, _ := api("$JS.API.CONSUMER.CREATE."+stream+".again", `{"stream_name":"`+stream+`","config":{"name":"again","inactive_threshold":600000000000}}`); code != 200 {
		t.Fatalf("after a delete: %d %s", code, desc)
	}
}

// Another fazt process can read the log through a read-only listener:
// it opens on the stream as it is (the listener refuses the update Open
// would make), reads with direct gets and with a cursor, and cannot
// append.
func TestLogReadsThroughAReadOnlyListener(t *testing.T) {
	ll := openListenerLog(t, false)
	ctx := context.Background()
	other := openLog(t, func(l *eventlog.Log) { l.URL = ll.l.ClientURL() })
	p, err := other.Read(ctx, 0, 10, eventlog.Filter{})
	if err != nil || len(p.Events) != 3 || p.Events[2].Stream != "probe.3" {
		t.Fatalf("read: %+v %v", p, err)
	}
	c, err := other.OpenCursor(ctx, 1, eventlog.Filter{Categories: []string{"probe"}})
	if err != nil {
		t.Fatal(err)
	}
	p, err = c.Next(ctx, 10)
	c.Close()
	if err != nil || len(p.Events) != 2 || p.Events[0].Seq != 2 || p.LastSeq != 3 {
		t.Fatalf("cursor: %+v %v", p, err)
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := other.Append(actx, []eventlog.Event{ev("probe.4", "probe.seen", nil)}); err == nil {
		t.Fatal("appended through a read-only listener")
	}
	// The cursor's consumer idles out in JetStream: it is the bounded kind.
	js, _ := jetstream.New(ll.l.Conn())
	s, _ := js.Stream(ctx, eventlog.DefaultStreamName)
	for n := range s.ConsumerNames(ctx).Name() {
		if n == "reactor_probe" {
			continue
		}
		info, err := js.Consumer(ctx, eventlog.DefaultStreamName, n)
		if err != nil {
			t.Fatal(err)
		}
		if cfg := info.CachedInfo().Config; cfg.AckPolicy != jetstream.AckNonePolicy || !cfg.MemoryStorage || cfg.InactiveThreshold <= 0 || cfg.InactiveThreshold > time.Hour {
			t.Errorf("the cursor's consumer %s: %+v", n, cfg)
		}
		if err := js.DeleteConsumer(ctx, eventlog.DefaultStreamName, n); err != nil {
			t.Fatal(err)
		}
	}
	ll.checkIntact(t, "another process", 3)
}
