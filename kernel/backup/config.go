package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
)

// The service's events tell a running node which replicas to copy to,
// without a restart. They live on ConfigStream, in the category
// Category, which only the service writes.
const (
	Category           = "backup"
	ConfigStream       = "backup.replicas"
	TypeReplicaAdded   = "backup.replica_added"
	TypeReplicaRemoved = "backup.replica_removed"
)

// ReplicaChange is the data of TypeReplicaAdded and TypeReplicaRemoved
// (version 1): the replica URL, without secrets (credentials come from
// the environment).
type ReplicaChange struct {
	URL string `json:"url"`
}

const replicaSchema = `{"type":"object","description":"a backup replica URL (Litestream's: file:///dir, s3://bucket/path?endpoint=…)","properties":{"url":{"type":"string","minLength":1,"maxLength":2048}},"required":["url"]}`

// AddReplica records that the node copies to u from now on, and
// returns the event's sequence: the running service starts copying to
// it at once, and so does every later start. Errors: ErrInvalid for a
// URL Litestream cannot use or one with a password in it, ErrRefused
// (409) when u is a replica already.
func (s *Service) AddReplica(ctx context.Context, u string) (uint64, error) {
	return s.change(ctx, u, TypeReplicaAdded)
}

// RemoveReplica records that the node no longer copies to u (a last
// sync happens first); the replica's files stay where they are.
// Errors: ErrRefused when u is not a replica added by AddReplica
// (those given with --backup go with a restart without the flag).
func (s *Service) RemoveReplica(ctx context.Context, u string) (uint64, error) {
	return s.change(ctx, u, TypeReplicaRemoved)
}

func (s *Service) change(ctx context.Context, u, typ string) (uint64, error) {
	if typ == TypeReplicaAdded {
		if _, err := newReplicaClient(u); err != nil {
			return 0, err
		}
		if Redact(u) != u {
			return 0, kernel.Invalidf("replica %s: the URL holds a secret, and events are kept for ever: give credentials in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)", Redact(u))
		}
	}
	for range 5 {
		evs, err := s.k.Log().ReadStream(ctx, ConfigStream, 1, maxConfigEvents)
		if err != nil && !errors.Is(err, eventlog.ErrNotFound) {
			return 0, err
		}
		var set []string
		var version uint64
		for _, e := range evs {
			version = e.Version
			var c ReplicaChange
			if json.Unmarshal(e.Data, &c) != nil {
				continue
			}
			if e.Type == TypeReplicaAdded && !slices.Contains(set, c.URL) {
				set = append(set, c.URL)
			} else if e.Type == TypeReplicaRemoved {
				set = slices.DeleteFunc(set, func(x string) bool { return x == c.URL })
			}
		}
		has := slices.Contains(set, u)
		switch {
		case typ == TypeReplicaAdded && (has || slices.Contains(s.cfg.Replicas, u)):
			return 0, kernel.Refusef("%s is a replica already", Redact(u))
		case typ == TypeReplicaRemoved && slices.Contains(s.cfg.Replicas, u):
			return 0, kernel.Refusef("%s is given with --backup: restart the server without it", Redact(u))
		case typ == TypeReplicaRemoved && !has:
			return 0, kernel.Refusef("%s is not a replica of this node (fazt backup status lists them)", Redact(u))
		}
		data, _ := json.Marshal(ReplicaChange{URL: u})
		expect := eventlog.ExpectVersion(ConfigStream, version)
		if version == 0 {
			expect = eventlog.ExpectNew(ConfigStream)
		}
		res, err := s.w.Append(ctx, []eventlog.Event{{Stream: ConfigStream, Type: typ, Data: data}}, expect)
		if errors.Is(err, eventlog.ErrConflict) {
			continue // another change came first: decide again
		}
		if err != nil {
			return 0, err
		}
		return res.LastSeq, nil
	}
	return 0, fmt.Errorf("%w: the backup configuration kept changing; try again", eventlog.ErrUnavailable)
}

type replicaRequest struct {
	URL string `json:"url"`
}

func (s *Service) handleAdd(w http.ResponseWriter, r *http.Request) {
	var req replicaRequest
	if err := kernel.DecodeJSON(w, r, &req); err != nil {
		s.k.WriteError(w, r, err)
		return
	}
	seq, err := s.AddReplica(r.Context(), req.URL)
	if err != nil {
		s.k.WriteError(w, r, err)
		return
	}
	kernel.WriteJSON(w, http.StatusOK, map[string]any{"url": Redact(req.URL), "seq": seq})
}

func (s *Service) handleRemove(w http.ResponseWriter, r *http.Request) {
	q, err := kernel.CheckQuery(r, "url")
	if err != nil {
		s.k.WriteError(w, r, err)
		return
	}
	u := ""
	if v := q["url"]; len(v) > 0 {
		u = v[0]
	}
	seq, err := s.RemoveReplica(r.Context(), u)
	if err != nil {
		s.k.WriteError(w, r, err)
		return
	}
	kernel.WriteJSON(w, http.StatusOK, map[string]any{"url": Redact(u), "seq": seq})
}
