// Package bench holds safeperm's end-to-end benchmarks (make bench): the
// figures of the pipeline, each printed as a ratio measured in the same run
// (the time the shipped binaries take at their defaults over the least time
// the simulated PVWA's capacity allows, the calls throttled, the time
// requests wait in the PVWA's queue, PVWA calls per Safe, the run's rate
// cap, the planner's peak memory over a budget, jobs per second through
// NATS), and the BENCHMARKS.md tables they are rendered into.
//
// The benchmarks live in bench_test.go; this file only collects figures and
// renders them, so the rendering is testable without running a benchmark.
package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
)

// Figure is one measured figure of BENCHMARKS.md.
type Figure struct {
	// ID orders the table ("1a", "1b", ...) and keys the notes.
	ID string `json:"id"`
	// Name says what was measured.
	Name string `json:"name"`
	// Measured is the value as printed, e.g. "0.97".
	Measured string `json:"measured"`
	// Target is the goal as printed, e.g. "≥ 0.95"; empty for information.
	Target string `json:"target"`
	// Met says whether the target was met; nil when there is no target.
	Met *bool `json:"met,omitempty"`
	// Detail holds the raw numbers the ratio came from.
	Detail string `json:"detail"`
	// Note explains an unmet target (what the profile showed).
	Note string `json:"note,omitempty"`
}

// Row is one line of the throughput table: the shipped binaries at their
// defaults, in one deployment, against a simulated PVWA of one shape.
type Row struct {
	// ID orders the table ("1e", "1w", ...) and keys its note.
	ID string `json:"id"`
	// PVWA describes the server's shape; Deployment how safeperm ran.
	PVWA       string `json:"pvwa"`
	Deployment string `json:"deployment"`
	// Ratio is the ideal time over the measured time of the whole
	// command; RatioTarget its least acceptable value.
	Ratio       float64 `json:"ratio"`
	RatioTarget float64 `json:"ratioTarget"`
	// Throttled is the fraction of calls answered 429; ThrottledTarget its
	// greatest acceptable value, or 0 for information only.
	Throttled       float64 `json:"throttled"`
	ThrottledTarget float64 `json:"throttledTarget"`
	// Wait is the median time a request waited for a slot at the PVWA over
	// its service time, on servers that queue (Queueing); WaitTarget its
	// greatest acceptable value.
	Queueing   bool    `json:"queueing"`
	Wait       float64 `json:"wait"`
	WaitTarget float64 `json:"waitTarget"`
	// Detail holds the raw numbers; Note explains an unmet target from the
	// measurement.
	Detail string `json:"detail"`
	Note   string `json:"note,omitempty"`
}

// Met reports whether every target of the row was met.
func (r Row) Met() bool {
	return r.Ratio >= r.RatioTarget && (r.ThrottledTarget == 0 || r.Throttled <= r.ThrottledTarget) &&
		(!r.Queueing || r.Wait <= r.WaitTarget)
}

// Recorder collects figures from concurrent benchmarks. The zero value is
// ready to use.
type Recorder struct {
	mu   sync.Mutex
	figs map[string]Figure
	rows map[string]Row
}

// AddRow records r, replacing an earlier row with the same ID.
func (r *Recorder) AddRow(row Row) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rows == nil {
		r.rows = map[string]Row{}
	}
	r.rows[row.ID] = row
}

// Rows returns the recorded rows ordered by ID.
func (r *Recorder) Rows() []Row {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Row, 0, len(r.rows))
	for _, x := range r.rows {
		out = append(out, x)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Add records f, replacing an earlier figure with the same ID.
func (r *Recorder) Add(f Figure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.figs == nil {
		r.figs = map[string]Figure{}
	}
	r.figs[f.ID] = f
}

// Figures returns the recorded figures ordered by ID.
func (r *Recorder) Figures() []Figure {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Figure, 0, len(r.figs))
	for _, f := range r.figs {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// AtLeast returns a figure whose target is v >= target.
func AtLeast(id, name string, v, target float64, prec int, detail string) Figure {
	met := v >= target
	return Figure{ID: id, Name: name, Measured: fmt.Sprintf("%.*f", prec, v),
		Target: fmt.Sprintf("≥ %.*f", prec, target), Met: &met, Detail: detail}
}

// AtMost returns a figure whose target is v <= target.
func AtMost(id, name string, v, target float64, prec int, detail string) Figure {
	met := v <= target
	return Figure{ID: id, Name: name, Measured: fmt.Sprintf("%.*f", prec, v),
		Target: fmt.Sprintf("≤ %.*f", prec, target), Met: &met, Detail: detail}
}

// Near returns a figure whose target is |v - target| <= tol.
func Near(id, name string, v, target, tol float64, prec int, detail string) Figure {
	met := v >= target-tol && v <= target+tol
	return Figure{ID: id, Name: name, Measured: fmt.Sprintf("%.*f", prec, v),
		Target: fmt.Sprintf("%.*f ± %.*f", prec, target, prec, tol), Met: &met, Detail: detail}
}

// Machine describes where the benchmarks ran.
type Machine struct {
	CPU   string
	Cores int
	Go    string
	OS    string
}

// ThisMachine reads the CPU model and core count from /proc/cpuinfo (falling
// back to runtime.NumCPU) and the Go version of the running binary.
func ThisMachine() Machine {
	m := Machine{CPU: "unknown", Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	f, err := os.Open("/proc/cpuinfo")
	if err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "model name":
				m.CPU = strings.TrimSpace(v)
			case "processor":
				m.Cores++
			}
		}
	}
	if m.Cores == 0 {
		m.Cores = runtime.NumCPU()
	}
	return m
}

// Render writes BENCHMARKS.md: the machine, the date, the throughput table,
// the table of the other figures and the notes of unmet targets.
func Render(w io.Writer, m Machine, date time.Time, took time.Duration, rows []Row, figs []Figure, preamble string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\n")
	fmt.Fprintf(&b, "Written by `make bench` (package `bench`); do not edit by hand.\n\n")
	fmt.Fprintf(&b, "- machine: %s, %d cores (/proc/cpuinfo), GOMAXPROCS %d, %s\n", m.CPU, m.Cores, runtime.GOMAXPROCS(0), m.OS)
	fmt.Fprintf(&b, "- Go: %s\n", m.Go)
	fmt.Fprintf(&b, "- date: %s (benchmarks took %s)\n\n", date.UTC().Format("2006-01-02 15:04 MST"), took.Round(time.Second))
	if preamble != "" {
		b.WriteString(preamble)
		b.WriteString("\n\n")
	}
	if len(rows) > 0 {
		b.WriteString("## Throughput of the shipped binaries at their defaults\n\n")
		b.WriteString("| # | PVWA | deployment | ideal ÷ measured time | throttled | median queue wait ÷ service time | met? | from |\n|---|---|---|---|---|---|---|---|\n")
		for _, r := range rows {
			thr := fmt.Sprintf("%.4f", r.Throttled)
			if r.ThrottledTarget > 0 {
				thr += fmt.Sprintf(" (≤ %.2f)", r.ThrottledTarget)
			}
			wait := "—"
			if r.Queueing {
				wait = fmt.Sprintf("%.3f (≤ %.2f)", r.Wait, r.WaitTarget)
			}
			met := map[bool]string{true: "yes", false: "**no**"}[r.Met()]
			fmt.Fprintf(&b, "| %s | %s | %s | %.3f (≥ %.2f) | %s | %s | %s | %s |\n", r.ID, esc(r.PVWA), esc(r.Deployment),
				r.Ratio, r.RatioTarget, thr, wait, met, esc(r.Detail))
		}
		b.WriteString("\n")
	}
	if len(figs) > 0 {
		b.WriteString("## Other figures\n\n")
		b.WriteString("| # | figure | measured | target | met? | from |\n|---|---|---|---|---|---|\n")
		for _, f := range figs {
			met := "—"
			if f.Met != nil {
				met = map[bool]string{true: "yes", false: "**no**"}[*f.Met]
			}
			target := f.Target
			if target == "" {
				target = "(information)"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", f.ID, esc(f.Name), f.Measured, target, met, esc(f.Detail))
		}
	}
	var notes []string
	for _, r := range rows {
		if r.Note != "" {
			notes = append(notes, fmt.Sprintf("\n### %s %s, %s\n\n%s\n", r.ID, r.PVWA, r.Deployment, strings.TrimSpace(r.Note)))
		}
	}
	for _, f := range figs {
		if f.Note != "" {
			notes = append(notes, fmt.Sprintf("\n### %s %s\n\n%s\n", f.ID, f.Name, strings.TrimSpace(f.Note)))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n## Notes\n")
		for _, n := range notes {
			b.WriteString(n)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func esc(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
