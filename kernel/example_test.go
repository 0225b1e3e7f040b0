package kernel_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
)

// A complete program: a "likes" vertical with an event type, a read model
// and an admin route whose command handler is a decider.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "fazt-example")
	defer os.RemoveAll(dir)
	k := kernel.New(dir) // tunables are exported fields, preset to their defaults
	k.Addr = "127.0.0.1:0"
	k.Logger = slog.New(slog.DiscardHandler)
	k.RegisterEvent("likes.liked", 1, []byte(`{"type":"object","properties":{"user":{"type":"string"}}}`))
	k.RegisterProjection(projections.Projection{Name: "likes", Version: 1, Filter: eventlog.Filter{Types: []string{"likes.liked"}},
		Tables: []schemas.Table{{Name: "counts", Columns: []schemas.Column{{Name: "post", Type: "TEXT", PrimaryKey: true}, {Name: "n", Type: "INTEGER"}}}},
		Apply: func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO counts VALUES (?, 1) ON CONFLICT (post) DO UPDATE SET n = n + 1`, e.Stream)
			return err
		}})
	// POST /v1/likes/{post}?user=U: a user likes a post once.
	k.Handle("POST /v1/likes/{post}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := r.URL.Query().Get("user")
		_, err := kernel.Decide(r.Context(), k, "likes."+r.PathValue("post"), kernel.Decider[map[string]bool]{
			Init: func() map[string]bool { return map[string]bool{} },
			Evolve: func(liked map[string]bool, e eventlog.Event) (map[string]bool, error) {
				var d struct{ User string }
				err := json.Unmarshal(e.Data, &d)
				liked[d.User] = true
				return liked, err
			},
			Decide: func(liked map[string]bool, _ uint64) ([]eventlog.Event, error) {
				if liked[user] {
					return nil, kernel.Refusef("%s already likes this", user)
				}
				return []eventlog.Event{{Type: "likes.liked", Data: []byte(fmt.Sprintf(`{"user":%q}`, user))}}, nil
			}})
		if err != nil {
			k.WriteError(w, r, err)
		}
	}))
	if err := k.Open(ctx); err != nil {
		panic(err)
	}
	defer k.Close(ctx)

	for _, user := range []string{"ann", "bob", "ann"} {
		req, _ := http.NewRequest("POST", "http://"+k.ListenAddr()+"/v1/likes/p1?user="+user, nil)
		req.Header.Set("Authorization", "Bearer "+k.Token)
		resp, _ := http.DefaultClient.Do(req)
		body, _ := io.ReadAll(resp.Body)
		fmt.Println(strings.TrimSpace(fmt.Sprintf("%d %s", resp.StatusCode, body)))
	}
	seq, _ := k.Log().LastSeq(ctx)
	res, _ := k.Query(ctx, "likes", "SELECT post, n FROM counts", nil, projections.QueryOptions{MinSeq: seq})
	fmt.Println(res.Rows)
	// Output:
	// 200
	// 200
	// 409 {"error":{"code":"refused","message":"ann already likes this"}}
	// [[likes.p1 2]]
}
