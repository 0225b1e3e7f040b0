package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes the report as one JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report for people: the conditions, a table of
// the cases and the notes.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "fazt bench  %s  %s %s, %d CPUs (GOMAXPROCS %d), wall %.1fs\n", r.Date, r.Go, r.Platform, r.CPUs, r.GOMAXPROCS, r.WallSecs)
	if r.Load != "" {
		fmt.Fprintf(w, "load average: %s\n", r.Load)
	}
	fmt.Fprintf(w, "sync: %s\n", r.Conditions)
	fmt.Fprintf(w, "peak RSS: %s\n", r.RSS)
	fmt.Fprintf(w, "ratio: the kernel's speed over the raw ingredient's, median of %d alternated rounds (start-up: raw time over kernel time)\n\n", r.Config.Rounds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tscenario\tcase\tkernel\traw\tratio\tp50\tp99\tpeak RSS\ttarget")
	prev := 0
	var notes []string
	var prevRow Row
	for _, row := range r.Results {
		num, title := "", ""
		if row.Scenario != prev {
			num, title, prev = fmt.Sprint(row.Scenario), row.Title, row.Scenario
		}
		raw, ratio := "—", "—"
		if row.Raw > 0 {
			raw = value(row.Raw, row.Unit)
		}
		if row.Ratio > 0 {
			ratio = fmt.Sprintf("%.2fx", row.Ratio)
		}
		p50, p99 := "—", "—"
		if row.P50 > 0 || row.P99 > 0 {
			p50, p99 = millis(row.P50), millis(row.P99)
		}
		target := "—"
		if row.Target != "" {
			target = row.Target
			if row.Met != nil && *row.Met {
				target += " met"
			} else {
				target += " NOT met"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", num, title, row.Case, value(row.Kernel, row.Unit), raw, ratio, p50, p99, bytesIEC(row.PeakRSS), target)
		notes = append(notes, rowNotes(row, prevRow)...)
		prevRow = row
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range notes {
			fmt.Fprintln(w, "  "+n)
		}
	}
	what := "removed"
	if r.Kept {
		what = "kept"
	}
	_, err := fmt.Fprintf(w, "\nfiles: %s (the disk measured; %s)\n", r.Dir, what)
	return err
}

// rowNotes explains a row, saying once per scenario what its latency
// and its raw baseline are, and each row's note unless the row before
// said the same.
func rowNotes(row, prev Row) []string {
	var out []string
	first := row.Scenario != prev.Scenario
	var what []string
	if row.Latency != "" && (first || row.Latency != prev.Latency) {
		what = append(what, "latency is "+row.Latency)
	}
	if row.Baseline != "" && (first || row.Baseline != prev.Baseline) {
		what = append(what, "raw is "+row.Baseline)
	}
	if len(what) > 0 {
		out = append(out, fmt.Sprintf("%d %s: %s", row.Scenario, row.Title, strings.Join(what, "; ")))
	}
	if row.Note != "" && (first || row.Note != prev.Note) {
		out = append(out, fmt.Sprintf("%d %s: %s", row.Scenario, row.Case, row.Note))
	}
	return out
}

func value(v float64, unit string) string {
	if unit == "s" {
		return fmt.Sprintf("%.2f s", v)
	}
	return si(v) + " " + unit
}

// si writes 12345 as 12.3k: three significant digits at most.
func si(v float64) string {
	for _, u := range []struct {
		div  float64
		unit string
	}{{1e6, "M"}, {1e3, "k"}, {1, ""}} {
		x := v / u.div
		if math.Abs(x) < 0.9995 && u.div > 1 {
			continue
		}
		var s string
		switch a := math.Abs(x); {
		case a >= 99.95:
			s = fmt.Sprintf("%.0f", x)
		case a >= 9.995:
			s = fmt.Sprintf("%.1f", x)
		default:
			s = fmt.Sprintf("%.2f", x)
		}
		if strings.Contains(s, ".") {
			s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
		}
		return s + u.unit
	}
	return ""
}

func millis(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f ms", v)
	}
	return fmt.Sprintf("%.3g ms", v)
}

func bytesIEC(n int64) string {
	if n <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}
