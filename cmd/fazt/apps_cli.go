package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ignore "github.com/sabhiram/go-gitignore"
	"github.com/spf13/cobra"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/vfs"
	"github.com/fazt-sh/fazt/verticals/apps"
)

// ignoreFile lists, gitignore-style, what fazt deploy leaves out.
const ignoreFile = ".faztignore"

// defaultUploadJobs bounds the concurrent uploads of fazt deploy.
const defaultUploadJobs = 4

func (a *app) deployCmd() *cobra.Command {
	var (
		sf   serverFlags
		name string
		spa  bool
		jobs int
	)
	cmd := &cobra.Command{
		Use:   "deploy DIR --app NAME",
		Short: "Deploy a folder as an app, live at http://NAME.localhost:PORT/",
		Long: `Deploy sends the files of DIR to a running server as app NAME and makes
them live at once: a request is answered from the old deploy or the new
one, never a mix. Only the files the server lacks are uploaded, so a
redeploy that changes one file uploads one file. The first deploy of a
name creates the app; "fazt apps rollback NAME" goes back.

Left out: dotfiles and dot-folders, and what DIR/.faztignore lists
(gitignore patterns). Symlinks are followed only to files inside DIR.
A 404.html at the top is served for paths that match no file; with
--spa, index.html is (a single-page app).`,
		Example: `  fazt deploy ./public --app blog
  fazt deploy dist --app shop --spa`,
		Args: cobra.ExactArgs(1),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			if !vfs.ValidSite(name) {
				return usagef(cmd, "--app %q: app names are lower-case letters, digits and -, like blog or my-site (at most 63)", name)
			}
			if jobs < 1 {
				return usagef(cmd, "--jobs must be at least 1")
			}
			return a.deploy(cmd.Context(), sf, args[0], name, spa, jobs)
		}),
	}
	serverFlagsOn(cmd, &sf)
	f := cmd.Flags()
	f.StringVar(&name, "app", "", "the app's name: it is served at http://NAME.localhost:PORT/ (required)")
	f.BoolVar(&spa, "spa", false, "serve index.html for paths that match no file (single-page apps)")
	f.IntVar(&jobs, "jobs", defaultUploadJobs, "concurrent uploads")
	_ = cmd.MarkFlagRequired("app")
	return cmd
}

// localFile is a file of the folder being deployed.
type localFile struct {
	rel  string // the manifest path
	abs  string
	size int64
	hash string
}

// collectDeploy walks dir and returns its files to deploy, sorted by path.
func collectDeploy(dir string) ([]*localFile, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a folder: deploy a folder of files", dir)
	}
	if root, err = filepath.EvalSymlinks(root); err != nil {
		return nil, err
	}
	var ign *ignore.GitIgnore
	if _, err := os.Stat(filepath.Join(root, ignoreFile)); err == nil {
		if ign, err = ignore.CompileIgnoreFile(filepath.Join(root, ignoreFile)); err != nil {
			return nil, fmt.Errorf("read %s: %w", ignoreFile, err)
		}
	}
	var out []*localFile
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if ign != nil && (ign.MatchesPath(rel) || (d.IsDir() && ign.MatchesPath(rel+"/"))) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		abs := p
		if d.Type()&fs.ModeSymlink != 0 {
			target, err := filepath.EvalSymlinks(p)
			if err != nil {
				return fmt.Errorf("%s: a broken symlink: remove it or list it in %s", rel, ignoreFile)
			}
			if in, err := filepath.Rel(root, target); err != nil || in == ".." || strings.HasPrefix(in, ".."+string(filepath.Separator)) || filepath.IsAbs(in) {
				return fmt.Errorf("%s: a symlink that leaves %s (to %s): refused; copy the file in or list it in %s", rel, dir, target, ignoreFile)
			}
			abs = target
		}
		info, err := os.Stat(abs)
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			if info.IsDir() {
				return fmt.Errorf("%s: a symlink to a folder: not followed; copy the folder in or list it in %s", rel, ignoreFile)
			}
			return fmt.Errorf("%s is not a regular file: list it in %s", rel, ignoreFile)
		}
		if err := vfs.ValidatePath(rel); err != nil {
			return fmt.Errorf("%s: %w; rename it or list it in %s", rel, err, ignoreFile)
		}
		out = append(out, &localFile{rel: rel, abs: abs, size: info.Size()})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s has no files to deploy (dotfiles and what %s lists are left out)", dir, ignoreFile)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].rel < out[j].rel })
	return out, nil
}

// hashFile returns the SHA-256 of a file, adding its bytes to done.
func hashFile(f *localFile, done *atomic.Int64, p *progress) error {
	fh, err := os.Open(f.abs)
	if err != nil {
		return err
	}
	defer fh.Close()
	h := sha256.New()
	n, err := io.Copy(h, fh)
	if err != nil {
		return fmt.Errorf("read %s: %w", f.rel, err)
	}
	f.size = n
	f.hash = hex.EncodeToString(h.Sum(nil))
	if p != nil {
		p.set(done.Add(n))
	}
	return nil
}

// ttyProgress is a progress line on a terminal; nil otherwise.
func ttyProgress(w io.Writer, what string, total int64) *progress {
	p := newProgress(w, what, total)
	if !p.tty {
		return nil
	}
	return p
}

func (a *app) deploy(ctx context.Context, sf serverFlags, dir, name string, spa bool, jobs int) error {
	files, err := collectDeploy(dir)
	if err != nil {
		return err
	}
	var total int64
	for _, f := range files {
		total += f.size
	}
	p := ttyProgress(a.stderr, "hashing bytes", total)
	var done atomic.Int64
	for _, f := range files {
		if err := hashFile(f, &done, p); err != nil {
			return err
		}
	}
	if p != nil {
		p.finish()
	}
	m := vfs.Manifest{Files: map[string]vfs.File{}}
	byHash := map[string]*localFile{}
	for _, f := range files {
		m.Files[f.rel] = vfs.File{SHA256: f.hash, Size: f.size}
		byHash[f.hash] = f
	}
	if _, ok := m.Files["404.html"]; ok {
		m.NotFound = "404.html"
	}
	if spa {
		if _, ok := m.Files["index.html"]; !ok {
			return fmt.Errorf("--spa serves index.html for unknown paths, but %s has no index.html at its top", dir)
		}
		m.Fallback = "index.html"
	}

	c, err := a.connect(sf)
	if err != nil {
		return err
	}
	defer c.close()
	var mr apps.ManifestResponse
	if _, err := c.call(ctx, http.MethodPost, apps.ManifestPath(name), nil, m, &mr); err != nil {
		return err
	}
	var upBytes int64
	for _, h := range mr.Missing {
		f, ok := byHash[h]
		if !ok {
			return fmt.Errorf("the server asked for blob %s, which no file has", h)
		}
		upBytes += f.size
	}
	if err := a.uploadAll(ctx, c, name, mr.Missing, byHash, upBytes, jobs); err != nil {
		return err
	}
	var dr apps.DeployResponse
	if _, err := c.call(ctx, http.MethodPost, apps.DeploysPath(name), nil, m, &dr); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "deployed %s: %s files, %s uploaded (%s bytes), deploy %s\n%s\n",
		safe(dr.App), thousands(int64(len(files))), thousands(int64(len(mr.Missing))), thousands(upBytes), safe(dr.ID), safe(dr.URL))
	return nil
}

// uploadAll PUTs the missing blobs, jobs at a time; the first error
// stops the rest.
func (a *app) uploadAll(ctx context.Context, c *client, name string, missing []string, byHash map[string]*localFile, total int64, jobs int) error {
	if len(missing) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p := ttyProgress(a.stderr, "uploading bytes", total)
	var done atomic.Int64
	work := make(chan string)
	var wg sync.WaitGroup
	for range min(jobs, len(missing)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for h := range work {
				f := byHash[h]
				if err := c.putFile(ctx, apps.BlobPath(name, h), f); err != nil {
					cancel(fmt.Errorf("upload %s: %w", f.rel, err))
					continue
				}
				if p != nil {
					p.set(done.Add(f.size))
				}
			}
		}()
	}
feed:
	for _, h := range missing {
		select {
		case work <- h:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	if p != nil {
		p.finish()
	}
	return nil
}

// putFile PUTs a file's bytes to path.
func (c *client) putFile(ctx context.Context, path string, f *localFile) error {
	fh, err := os.Open(f.abs)
	if err != nil {
		return err
	}
	defer fh.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+path, fh)
	if err != nil {
		return err
	}
	req.ContentLength = f.size
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("cannot reach the fazt server at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	return responseError(resp)
}

func (a *app) appsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apps",
		Short: "The apps of a running server: list, history, rollback, delete, aliases, domains",
		Long: `The apps commands manage the apps "fazt deploy" made: list them, show an
app's deploys, make an earlier deploy live again, delete an app (its
history stays), and give an app more names: aliases (ALIAS.localhost)
and custom domains.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.appsListCmd(), a.appsHistoryCmd(), a.appsRollbackCmd(), a.appsDeleteCmd(),
		a.appsNamesCmd("alias", "ALIAS", "another name: ALIAS.localhost serves the app too", apps.AliasesPath,
			func(v string) any { return apps.AliasRequest{Alias: v} }),
		a.appsNamesCmd("domain", "DOMAIN", "a custom domain bound to the app (the edge will certify and serve it)", apps.DomainsPath,
			func(v string) any { return apps.DomainRequest{Domain: v} }))
	return cmd
}

func (a *app) appsListCmd() *cobra.Command {
	var (
		sf     serverFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the apps: live deploy, deploys, names, URL",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			var out struct{ Apps []apps.App }
			raw, err := a.get(cmd.Context(), sf, apps.AppsPath, &out)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printRaw(raw)
			}
			if len(out.Apps) == 0 {
				_, err := fmt.Fprintln(a.stdout, "no apps yet: deploy one with `fazt deploy DIR --app NAME`")
				return err
			}
			rows := [][]string{{"app", "live", "deploys", "updated", "url", "aliases", "domains"}}
			for _, ap := range out.Apps {
				live := ap.Live
				if ap.Deleted {
					live = "(deleted)"
				} else if live == "" {
					live = "(none)"
				}
				rows = append(rows, []string{safe(ap.Name), safe(live), thousands(int64(ap.Deploys)), formatTime(ap.Updated),
					safe(ap.URL), safe(orDash(strings.Join(ap.Aliases, ","))), safe(orDash(strings.Join(ap.Domains, ",")))})
			}
			return writeLeftTable(a.stdout, rows)
		}),
	}
	serverFlagsOn(cmd, &sf)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the server's JSON answer")
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeLeftTable writes rows in left-aligned columns.
func writeLeftTable(w io.Writer, rows [][]string) error {
	var widths []int
	for _, r := range rows {
		for i, cell := range r {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len([]rune(cell)))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for i, cell := range r {
			if i == len(r)-1 {
				b.WriteString(cell)
				break
			}
			b.WriteString(cell + strings.Repeat(" ", widths[i]-len([]rune(cell))+2))
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (a *app) appsHistoryCmd() *cobra.Command {
	var (
		sf     serverFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "history NAME",
		Short: "List an app's deploys, newest first, the live one marked",
		Args:  cobra.ExactArgs(1),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			var out struct{ Deploys []vfs.Deploy }
			raw, err := a.get(cmd.Context(), sf, apps.DeploysPath(args[0]), &out)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printRaw(raw)
			}
			rows := [][]string{{"", "deploy", "at", "files", "bytes"}}
			for _, d := range out.Deploys {
				mark := ""
				if d.Live {
					mark = "*"
				}
				rows = append(rows, []string{mark, safe(d.ID), formatTime(d.At), thousands(int64(d.Files)), thousands(d.Bytes)})
			}
			if err := writeLeftTable(a.stdout, rows); err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "(* live; go back with `fazt apps rollback %s [--to DEPLOY]`)\n", safe(args[0]))
			return err
		}),
	}
	serverFlagsOn(cmd, &sf)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the server's JSON answer")
	return cmd
}

func (a *app) appsRollbackCmd() *cobra.Command {
	var (
		sf serverFlags
		to string
	)
	cmd := &cobra.Command{
		Use:   "rollback NAME",
		Short: "Make an earlier deploy live again (by default the one before the live one)",
		Example: `  fazt apps rollback blog
  fazt apps rollback blog --to 01JB3Z5X0S8P2N4J6D0W5Y7K9Q`,
		Args: cobra.ExactArgs(1),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			var out struct{ App, Live, URL string }
			if _, err := a.once(cmd.Context(), sf, http.MethodPost, apps.RollbackPath(args[0]), apps.RollbackRequest{To: to}, &out); err != nil {
				return err
			}
			_, err := fmt.Fprintf(a.stdout, "%s now serves deploy %s\n%s\n", safe(out.App), safe(out.Live), safe(out.URL))
			return err
		}),
	}
	serverFlagsOn(cmd, &sf)
	cmd.Flags().StringVar(&to, "to", "", "the deploy to make live (see fazt apps history NAME)")
	return cmd
}

func (a *app) appsDeleteCmd() *cobra.Command {
	var sf serverFlags
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete an app: it serves nothing; its history stays (rollback --to brings it back)",
		Args:  cobra.ExactArgs(1),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			if _, err := a.once(cmd.Context(), sf, http.MethodDelete, apps.AppPath(args[0]), nil, nil); err != nil {
				return err
			}
			_, err := fmt.Fprintf(a.stdout, "deleted %s: it serves nothing now; its deploys stay (fazt apps history %s)\n", safe(args[0]), safe(args[0]))
			return err
		}),
	}
	serverFlagsOn(cmd, &sf)
	return cmd
}

// appsNamesCmd is `fazt apps alias|domain add|remove NAME VALUE`.
func (a *app) appsNamesCmd(kind, arg, what string, path func(string) string, body func(string) any) *cobra.Command {
	cmd := &cobra.Command{
		Use:   kind,
		Short: "Add or remove " + what,
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var sfAdd, sfRemove serverFlags
	add := &cobra.Command{
		Use:   "add NAME " + arg,
		Short: "Add " + what,
		Args:  cobra.ExactArgs(2),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			out := map[string]string{}
			if _, err := a.once(cmd.Context(), sfAdd, http.MethodPost, path(args[0]), body(args[1]), &out); err != nil {
				return err
			}
			_, err := fmt.Fprintf(a.stdout, "%s %s now serves %s\n", kind, safe(out[kind]), safe(args[0]))
			return err
		}),
	}
	remove := &cobra.Command{
		Use:   "remove NAME " + arg,
		Short: "Remove " + what,
		Args:  cobra.ExactArgs(2),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			if _, err := a.once(cmd.Context(), sfRemove, http.MethodDelete, path(args[0])+"/"+url.PathEscape(strings.ToLower(strings.TrimSuffix(args[1], "."))), nil, nil); err != nil {
				return err
			}
			_, err := fmt.Fprintf(a.stdout, "%s %s no longer serves %s\n", kind, safe(args[1]), safe(args[0]))
			return err
		}),
	}
	serverFlagsOn(add, &sfAdd)
	serverFlagsOn(remove, &sfRemove)
	cmd.AddCommand(add, remove)
	return cmd
}

// responseError turns an error answer into a *serverError, as client.do
// does.
func responseError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var er kernel.ErrorResponse
	if json.Unmarshal(b, &er) == nil && er.Error.Code != "" {
		return &serverError{Status: resp.StatusCode, Code: er.Error.Code, Message: er.Error.Message}
	}
	return &serverError{Status: resp.StatusCode, Code: strconv.Itoa(resp.StatusCode), Message: fmt.Sprintf("server answered %s: %s", resp.Status, strings.TrimSpace(string(b)))}
}
