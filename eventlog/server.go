package eventlog

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"
)

// startEmbedded starts a NATS server with JetStream file storage under
// dir, the way NATS's own tests embed it. It listens on the network only
// when listen is set ("127.0.0.1:4222"); the listener's clients then live
// in an account of their own (see listener).
func startEmbedded(dir, listen string, writable bool, d Durability, syncInterval time.Duration, maxStore int64, stream string, reserved []string, writerPass, readerPass string, cluster *Cluster) (*server.Server, error) {
	// Two users: the log's own connection, the only one that may publish
	// events, and a reader for everything else in the process (consumers,
	// inspection).
	readOnly := &server.Permissions{Publish: &server.SubjectPermission{Deny: []string{AllSubjects}}}
	opts := &server.Options{
		Users: []*server.User{
			{Username: writerUser, Password: writerPass},
			{Username: readerUser, Password: readerPass, Permissions: readOnly},
		},
		ServerName: "fazt",
		JetStream:  true,
		StoreDir:   dir, // the server keeps its files in dir/jetstream
		NoLog:      true,
		NoSigs:     true,
		MaxPayload: 4 << 20,
		DontListen: listen == "",
		// A deliberate limit: left at 0, JetStream would cap itself at 75%
		// of the space free at start and never look again.
		JetStreamMaxStore: maxStore,
	}
	// Strict logs fsync each group of appends themselves (see blockSyncer),
	// so the server never fsyncs per message.
	if d == Relaxed {
		opts.SyncInterval = syncInterval
	}
	if cluster != nil {
		// A node's acknowledgement comes from the stream's leader once a
		// quorum of replicas has the write, so no local fsync can make
		// it durable: the replicas sync themselves (cluster.go).
		if err := applyCluster(opts, cluster, d, syncInterval); err != nil {
			return nil, err
		}
		if listen == "" {
			// The server starts its routes only once a client port
			// listens: a random one on loopback, where every user needs
			// its password (no user goes without one).
			opts.DontListen = false
			opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
		}
	}
	var ln *listener
	if listen != "" {
		host, port, err := net.SplitHostPort(listen)
		if err != nil {
			return nil, fmt.Errorf("nats listen address %q: %w", listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return nil, fmt.Errorf("nats listen address %q: bad port", listen)
		}
		opts.Host, opts.Port = host, p
		if p == 0 {
			opts.Port = server.RANDOM_PORT
		}
		if ln, err = newListener(opts, stream, writable, reserved); err != nil {
			return nil, fmt.Errorf("embedded nats: %w", err)
		}
	}
	if cluster != nil {
		// The server would only log a route port it cannot bind, and
		// then never turn ready: say so at once.
		rl, err := net.Listen("tcp", cluster.Listen)
		if err != nil {
			return nil, fmt.Errorf("%w: cluster listen address %s: %v (another process, or another node, holds it)", ErrUnavailable, cluster.Listen, err)
		}
		rl.Close()
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats did not become ready within 30s (store %s)", opts.StoreDir)
	}
	if ln != nil {
		if err := ln.start(srv); err != nil {
			srv.Shutdown()
			return nil, fmt.Errorf("embedded nats listener: %w", err)
		}
	}
	return srv, nil
}

// The embedded server's users.
const (
	writerUser   = "fazt-log"
	readerUser   = "fazt-reader"
	listenerUser = "fazt-listener" // a listener's clients (no password)
	guardUser    = "fazt-guard"    // the listener's gate, in process
)

// The listener.
//
// The kernel's users stay in the global account ($G), where the event
// stream has always lived (its files are dir/jetstream/$G). A listener's
// clients are put in an account of their own, without JetStream: all
// they reach of the kernel's account is what it exports to them.
//
//   - $JS.API.DIRECT.GET.<stream>[.>]: direct gets of the event stream,
//     answered by JetStream itself.
//   - $JS.API.INFO, $JS.API.STREAM.> and the consumer verbs CREATE,
//     DURABLE, INFO and DELETE are mapped onto subjects the guard answers,
//     in process: it asks JetStream the reading requests about the event
//     stream and relays the answer, lets a client create bounded consumers
//     on it and use only those, and refuses everything else with a 403
//     that says why.
//   - $JS.API.CONSUMER.MSG.NEXT.<stream>.<name>: pulls, one import for
//     each consumer the guard made for a client, answered by JetStream
//     itself (so messages keep their $JS.ACK reply subject, which carries
//     their sequence). A pull of any other consumer has no responder.
//   - fazt.ev.> (writable listener only): publishing events, which the
//     stream stores and acknowledges.
//
// Any other subject (other consumer verbs, $JS.ACK.>, $KV.>, the server's
// own API) has no responder in the listener's account: nothing reaches
// the kernel's account.
const (
	listenerAccount = "fazt-listener"
	guardSubjects   = "fazt.listener.api."
	jsAPI           = jetstream.DefaultAPIPrefix
	// At most this many consumers made through the listener are open at a
	// time, each in memory, removed by JetStream once idle for at most
	// maxListenerIdle, pulled for at most maxListenerPull per request.
	maxListenerConsumers = 64
	maxListenerIdle      = time.Hour
	maxListenerPull      = time.Minute
	maxListenerRequest   = 64 << 10 // bytes of a consumer create request
	maxListenerWaiting   = 512      // pending pulls of a consumer (JetStream's default)
	// NATS keeps a route back to the client for each request that crosses
	// into the kernel's account until its answer, or, for answers that are
	// streams of messages (pulls, batched gets), until they have been
	// quiet this long: longer than any pull may wait.
	listenerResponseWindow = maxListenerPull + 10*time.Second
	// A server cannot drop an import, so each name a client ever gave a
	// consumer keeps its pull import (about a kilobyte) until fazt stops:
	// at most this many names, made at most listenerCreateRate a second.
	maxListenerNames   = 20000
	listenerCreateRate = 20
)

// kernelConsumerPrefixes begin the names of the kernel's own durable
// consumers (reactor.ConsumerName): a listener client may not
// take such a name before the kernel uses it.
var kernelConsumerPrefixes = []string{"reactor_"}

// listener is the accounts, users and guard of a listening server.
type listener struct {
	stream    string
	guardPass string
	timeout   time.Duration
	creates   *rate.Limiter
	exports   []string // the kernel's account's exports to the clients'

	srv     *server.Server
	nc      *nats.Conn          // the guard's connection, in the kernel's account
	live    map[string]struct{} // consumers made through the listener, maybe gone since
	granted map[string]struct{} // names a listener client may pull, inspect, delete
}

// newListener adds the listener's accounts and users to opts.
func newListener(opts *server.Options, stream string, writable bool, reserved []string) (*listener, error) {
	ln := &listener{
		stream:    stream,
		guardPass: rand.Text(),
		timeout:   DefaultRequestTimeout,
		creates:   rate.NewLimiter(listenerCreateRate, 2*listenerCreateRate),
		live:      map[string]struct{}{},
		granted:   map[string]struct{}{},
	}
	kernel := server.NewAccount(server.DEFAULT_GLOBAL_ACCOUNT)
	clients := server.NewAccount(listenerAccount)
	to := []*server.Account{clients}
	direct := jsAPI + "DIRECT.GET." + stream
	streamed := map[string]bool{ // the kernel's exports: answered by a stream of messages?
		direct:        true, // a batched get answers several messages
		direct + ".>": true,
		jsAPI + "CONSUMER.MSG.NEXT." + stream + ".*": true,
		guardSubjects + ">":                          false,
	}
	imports := map[string]string{ // a subject of the clients': the kernel's
		direct:        direct,
		direct + ".>": direct + ".>",
		// Importing $JS.API.INFO also keeps the server from giving the
		// account its own JetStream API, which would answer too.
		jsAPI + "INFO":     guardSubjects + "INFO",
		jsAPI + "STREAM.>": guardSubjects + "STREAM.>",
	}
	if writable {
		streamed[AllSubjects] = false
		imports[AllSubjects] = AllSubjects
	}
	for subject, many := range streamed {
		rt := server.Singleton
		if many {
			rt = server.Streamed
		}
		if err := kernel.AddServiceExportWithResponse(subject, rt, to); err != nil {
			return nil, fmt.Errorf("export %s: %w", subject, err)
		}
		ln.exports = append(ln.exports, subject)
	}
	for _, verb := range []string{"CREATE", "DURABLE", "INFO", "DELETE"} {
		imports[jsAPI+"CONSUMER."+verb+".>"] = guardSubjects + "CONSUMER." + verb + ".>"
	}
	for local, remote := range imports {
		if err := clients.AddServiceImport(kernel, local, remote); err != nil {
			return nil, fmt.Errorf("import %s: %w", local, err)
		}
	}
	opts.Accounts = append(opts.Accounts, kernel, clients)
	for _, u := range opts.Users {
		u.Account = kernel
	}
	// Even a writable listener may not publish into the categories
	// reserved when the log opened (the kernel's own records).
	var clientPerms *server.Permissions
	if len(reserved) > 0 {
		deny := make([]string, len(reserved))
		for i, c := range reserved {
			deny[i] = CategorySubject(c)
		}
		clientPerms = &server.Permissions{Publish: &server.SubjectPermission{Deny: deny}}
	}
	opts.Users = append(opts.Users,
		&server.User{Username: listenerUser, Password: rand.Text(), Account: clients, Permissions: clientPerms},
		&server.User{Username: guardUser, Password: ln.guardPass, Account: kernel, Permissions: &server.Permissions{
			// What the guard may pass on, and answers to clients: even a
			// bug in it could not touch the stream.
			Publish: &server.SubjectPermission{Allow: []string{
				jsAPI + "STREAM.INFO." + stream, jsAPI + "STREAM.MSG.GET." + stream, jsAPI + "STREAM.NAMES", jsAPI + "STREAM.LIST",
				jsAPI + "CONSUMER.CREATE." + stream + ".>", jsAPI + "CONSUMER.DURABLE.CREATE." + stream + ".*",
				jsAPI + "CONSUMER.INFO." + stream + ".*", jsAPI + "CONSUMER.DELETE." + stream + ".*",
				"_R_.>",
			}},
			Subscribe: &server.SubjectPermission{Allow: []string{guardSubjects + ">", "_INBOX.>"}},
		}},
	)
	opts.NoAuthUser = listenerUser
	return ln, nil
}

// start turns JetStream on in the kernel's account and starts the guard.
// With other accounts configured, the server enables JetStream only in
// accounts configured for it, which the global account cannot be in a
// configuration: it is enabled here, with the same (unlimited) limits a
// server with the global account alone gives it.
func (ln *listener) start(srv *server.Server) error {
	if err := srv.GlobalAccount().EnableJetStream(nil, nil); err != nil {
		return fmt.Errorf("jetstream for the kernel's account: %w", err)
	}
	ln.srv = srv
	for _, e := range ln.exports {
		if err := srv.GlobalAccount().SetServiceExportResponseThreshold(e, listenerResponseWindow); err != nil {
			return fmt.Errorf("export %s: %w", e, err)
		}
	}
	// The guard's connection ends with the server.
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name("fazt-guard"), nats.NoReconnect(), nats.UserInfo(guardUser, ln.guardPass))
	if err != nil {
		return err
	}
	ln.nc = nc
	// One request at a time, in order.
	if _, err := nc.Subscribe(guardSubjects+">", ln.handle); err != nil {
		nc.Close()
		return err
	}
	if err := nc.Flush(); err != nil {
		nc.Close()
		return err
	}
	return nil
}

// handle answers one request of a listener client.
func (ln *listener) handle(m *nats.Msg) {
	rest := strings.TrimPrefix(m.Subject, guardSubjects)
	api := jsAPI + rest
	t := strings.Split(rest, ".")
	s := ln.stream
	switch {
	case rest == "STREAM.NAMES", rest == "STREAM.LIST",
		rest == "STREAM.INFO."+s, rest == "STREAM.MSG.GET."+s:
		ln.relay(m, api, m.Data)
	case len(t) >= 3 && t[0] == "CONSUMER" && t[1] == "CREATE" && t[2] == s:
		name := ""
		if len(t) >= 4 {
			name = t[3]
		}
		ln.create(m, name, false)
	case len(t) == 5 && t[0] == "CONSUMER" && t[1] == "DURABLE" && t[2] == "CREATE" && t[3] == s:
		ln.create(m, t[4], true)
	case len(t) == 4 && t[0] == "CONSUMER" && (t[1] == "INFO" || t[1] == "DELETE") && t[2] == s:
		if _, ok := ln.granted[t[3]]; !ok {
			ln.refuse(m, fmt.Sprintf("consumer %s was not made through fazt's NATS listener: a listener client uses only the consumers it made", t[3]))
			return
		}
		ln.relay(m, api, m.Data)
	case rest == "INFO":
		ln.refuse(m, "account information is not available through fazt's NATS listener")
	default:
		ln.refuse(m, fmt.Sprintf("fazt's NATS listener lets clients read the event log (stream %s), and publish to %s only when it is writable: %s is not permitted. The log is immutable: write events through the fazt API", s, AllSubjects, api))
	}
}

// relay asks JetStream and passes its answer on. (A client may not use
// the reply subject of an imported request as its own, so the guard
// cannot simply forward the request.)
func (ln *listener) relay(m *nats.Msg, api string, body []byte) {
	resp, err := ln.nc.RequestMsg(&nats.Msg{Subject: api, Data: body}, ln.timeout)
	if err != nil {
		ln.answer(m, 503, fmt.Sprintf("JetStream did not answer %s: %v", api, err))
		return
	}
	if m.Reply != "" {
		_ = ln.nc.PublishMsg(&nats.Msg{Subject: m.Reply, Header: resp.Header, Data: resp.Data})
	}
}

// refuse answers the way JetStream answers a refused request.
func (ln *listener) refuse(m *nats.Msg, why string) { ln.answer(m, 403, why) }

func (ln *listener) answer(m *nats.Msg, code int, why string) {
	if m.Reply == "" {
		return
	}
	b, _ := json.Marshal(server.ApiResponse{Type: server.JSApiSystemResponseType, Error: &server.ApiError{Code: code, Description: why}})
	_ = ln.nc.Publish(m.Reply, b)
}

// create makes a consumer for a listener client, if it is one a reader
// needs: a pull consumer on the event stream, in memory, removed by
// JetStream once idle (at most maxListenerIdle), that acknowledges
// nothing (so the client needs no $JS.ACK, which could reach the
// kernel's consumers), under a name no consumer has.
func (ln *listener) create(m *nats.Msg, name string, durable bool) {
	if len(m.Data) > maxListenerRequest {
		ln.refuse(m, fmt.Sprintf("consumer create request of %d bytes: at most %d", len(m.Data), maxListenerRequest))
		return
	}
	var req server.CreateConsumerRequest
	dec := json.NewDecoder(bytes.NewReader(m.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		ln.refuse(m, fmt.Sprintf("consumer create request: %v", err))
		return
	}
	c := &req.Config
	for _, n := range []string{c.Durable, c.Name} {
		switch {
		case n == "":
		case name == "":
			name = n
		case n != name:
			ln.refuse(m, fmt.Sprintf("consumer names %q and %q differ", name, n))
			return
		}
	}
	if name == "" { // the legacy ephemeral form: the guard names it
		name = strings.ToLower(rand.Text())
		c.Name = name
	}
	// Always the form with the name in the subject (a filter there is
	// only a repeat of the request's).
	api := jsAPI + "CONSUMER.CREATE." + ln.stream + "." + name
	if durable {
		api = jsAPI + "CONSUMER.DURABLE.CREATE." + ln.stream + "." + name
	}
	for _, p := range kernelConsumerPrefixes {
		if strings.HasPrefix(name, p) {
			ln.refuse(m, fmt.Sprintf("consumer names beginning with %q are the kernel's", p))
			return
		}
	}
	switch {
	case req.Stream != ln.stream:
		ln.refuse(m, fmt.Sprintf("stream %q: only %s is readable", req.Stream, ln.stream))
		return
	case c.DeliverSubject != "":
		ln.refuse(m, "push consumers are not available through fazt's NATS listener: use a pull or ordered consumer")
		return
	case c.Direct || c.Sourcing:
		ln.refuse(m, "direct and sourcing consumers are the server's own")
		return
	case (durable || c.Durable != "") && c.InactiveThreshold == 0:
		ln.refuse(m, fmt.Sprintf("durable consumers are not available through fazt's NATS listener: set an inactive threshold of at most %v", maxListenerIdle))
		return
	case c.InactiveThreshold < 0 || c.InactiveThreshold > maxListenerIdle:
		ln.refuse(m, fmt.Sprintf("inactive threshold %v: at most %v through fazt's NATS listener", c.InactiveThreshold, maxListenerIdle))
		return
	}
	// The client reads: it acknowledges nothing and keeps nothing on disk.
	c.AckPolicy, c.AckWait, c.MaxDeliver, c.BackOff, c.MaxAckPending = server.AckNone, 0, 0, nil, 0
	c.MemoryStorage = true
	if c.MaxRequestExpires <= 0 || c.MaxRequestExpires > maxListenerPull {
		c.MaxRequestExpires = maxListenerPull
	}
	if c.MaxWaiting <= 0 || c.MaxWaiting > maxListenerWaiting {
		c.MaxWaiting = maxListenerWaiting // pending pulls, kept in memory
	}
	req.Action = server.ActionCreate
	body, err := json.Marshal(&req)
	if err != nil {
		ln.refuse(m, err.Error())
		return
	}
	_, granted := ln.granted[name]
	if !granted && len(ln.granted) >= maxListenerNames {
		ln.refuse(m, fmt.Sprintf("fazt's NATS listener has made consumers under %d names, the most it allows until fazt restarts", maxListenerNames))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), ln.timeout)
	err = ln.creates.Wait(ctx)
	cancel()
	if err != nil {
		ln.answer(m, 429, "too many consumers created through fazt's NATS listener: try again shortly")
		return
	}
	// A name in use is someone else's consumer, even if its settings match.
	if _, err := ln.request(jsAPI+"CONSUMER.INFO."+ln.stream+"."+name, nil); !isNotFound(err) {
		ln.refuse(m, fmt.Sprintf("consumer %s exists or cannot be looked up (%v): choose another name", name, err))
		return
	}
	if !ln.room() {
		ln.refuse(m, fmt.Sprintf("%d consumers are open through fazt's NATS listener, the most it allows: delete some, or wait for them to go idle", maxListenerConsumers))
		return
	}
	if !granted {
		// Pulls of this consumer, and of no other, reach JetStream.
		next := jsAPI + "CONSUMER.MSG.NEXT." + ln.stream + "." + name
		clients, err := ln.srv.LookupAccount(listenerAccount)
		if err == nil {
			err = clients.AddServiceImport(ln.srv.GlobalAccount(), next, next)
		}
		if err != nil {
			ln.answer(m, 500, fmt.Sprintf("consumer %s: %v", name, err))
			return
		}
		ln.granted[name] = struct{}{}
	}
	resp, err := ln.request(api, body)
	if resp == nil {
		ln.answer(m, 503, fmt.Sprintf("create consumer %s: %v", name, err))
		return
	}
	if err == nil {
		ln.live[name] = struct{}{}
	}
	_ = ln.nc.PublishMsg(&nats.Msg{Subject: m.Reply, Header: resp.Header, Data: resp.Data})
}

// request asks JetStream, returning its answer and the error it reports.
func (ln *listener) request(subject string, body []byte) (*nats.Msg, error) {
	resp, err := ln.nc.Request(subject, body, ln.timeout)
	if err != nil {
		return nil, err
	}
	var r server.ApiResponse
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return resp, err
	}
	if r.Error != nil {
		return resp, r.Error
	}
	return resp, nil
}

// room reports whether another consumer may be made, first forgetting
// those JetStream has removed (idle, or deleted).
func (ln *listener) room() bool {
	if len(ln.live) < maxListenerConsumers {
		return true
	}
	for name := range ln.live {
		if _, err := ln.request(jsAPI+"CONSUMER.INFO."+ln.stream+"."+name, nil); isNotFound(err) {
			delete(ln.live, name)
		}
	}
	return len(ln.live) < maxListenerConsumers
}

// isNotFound reports whether JetStream answered 404.
func isNotFound(err error) bool {
	e, ok := err.(*server.ApiError)
	return ok && e.Code == 404
}
