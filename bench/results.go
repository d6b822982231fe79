// Package bench holds safeperm's end-to-end benchmarks (make bench): the
// figures of the pipeline, each printed as a ratio measured in the same run
// (achieved throughput over the capacity the simulated PVWA offers, speedup
// over one request at a time, PVWA calls per Safe, the planner's peak memory
// over a budget, jobs per second through NATS), and the BENCHMARKS.md table
// they are rendered into.
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

// Recorder collects figures from concurrent benchmarks. The zero value is
// ready to use.
type Recorder struct {
	mu   sync.Mutex
	figs map[string]Figure
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

// Render writes BENCHMARKS.md: the machine, the date, the table and the
// notes of unmet targets.
func Render(w io.Writer, m Machine, date time.Time, took time.Duration, figs []Figure, preamble string) error {
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
	var notes []Figure
	for _, f := range figs {
		if f.Note != "" {
			notes = append(notes, f)
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n## Notes\n")
		for _, f := range notes {
			fmt.Fprintf(&b, "\n### %s %s\n\n%s\n", f.ID, f.Name, strings.TrimSpace(f.Note))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func esc(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
