package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// progress shows done/total, rate and ETA on a line that updates itself
// on a terminal, or as plain lines now and then otherwise.
type progress struct {
	w     io.Writer
	what  string
	total int64
	start time.Time
	tty   bool

	mu    sync.Mutex
	last  time.Time
	done  int64
	shown bool
}

func newProgress(w io.Writer, what string, total int64) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, what: what, total: total, start: time.Now(), tty: tty}
}

func (p *progress) set(done int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = done
	every := 2 * time.Second
	if p.tty {
		every = 100 * time.Millisecond
	}
	if now := time.Now(); now.Sub(p.last) >= every && done > 0 && done < p.total {
		p.last = now
		p.print(false)
	}
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty || p.shown || p.done > 0 {
		p.print(true)
	}
}

func (p *progress) print(final bool) {
	el := time.Since(p.start)
	rate := float64(p.done) / max(el.Seconds(), 1e-3)
	line := fmt.Sprintf("%s: %s/%s (%.0f%%)  %s/s", p.what, thousands(p.done), thousands(p.total), 100*float64(p.done)/float64(max(p.total, 1)), thousands(int64(rate)))
	if final {
		line += "  in " + el.Round(100*time.Millisecond).String()
	} else if rate > 0 {
		eta := time.Duration(float64(p.total-p.done) / rate * float64(time.Second))
		line += "  ETA " + eta.Round(time.Second).String()
	}
	p.shown = true
	if !p.tty {
		fmt.Fprintln(p.w, line)
		return
	}
	end := "\x1b[K" // clear what a longer line left
	if final {
		end += "\n"
	}
	fmt.Fprintf(p.w, "\r%s%s", line, end)
}
