package watch

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/safeperm/safeperm/internal/jobs"
)

// view shows a run's progress. progress, line and close are called from
// Watch's goroutine; failure from the Follow goroutine, concurrently with
// them, and never after close.
type view interface {
	// progress is called on every poll and after results arrive.
	progress(s snapshot)
	// line is called every Interval.
	line(s snapshot)
	// failure is called for the first failed or conflict result of each
	// cause as it arrives.
	failure(r jobs.Result)
	// close shows the end and releases the view.
	close(s snapshot, o Outcome, err error)
}

func newView(opt Options, runID string) view {
	switch opt.Mode {
	case ViewBar:
		return newBarView(opt.Out, runID)
	case ViewJSON:
		return &jsonView{out: opt.Out, runID: runID}
	case ViewNone:
		return noView{}
	}
	return &plainView{out: opt.Out, runID: runID}
}

// noView shows nothing.
type noView struct{}

func (noView) progress(snapshot)              {}
func (noView) line(snapshot)                  {}
func (noView) failure(jobs.Result)            {}
func (noView) close(snapshot, Outcome, error) {}

// plainView writes one line per Interval and one per failure.
type plainView struct {
	mu    sync.Mutex
	out   io.Writer
	runID string
}

func (v *plainView) println(s string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	_, _ = io.WriteString(v.out, s+"\n")
}

func (v *plainView) progress(snapshot) {}

func (v *plainView) line(s snapshot) {
	v.println(fmt.Sprintf("run %s: %s %s | %s", v.runID, fraction(s), speed(s), countsText(s.counts)))
}

func (v *plainView) failure(r jobs.Result) {
	v.println(fmt.Sprintf("run %s: %s", v.runID, failureText(r)))
}

func (v *plainView) close(s snapshot, o Outcome, err error) {
	if err == nil {
		v.println(fmt.Sprintf("run %s: done %s in %s | %s", v.runID, fraction(s), fmtDuration(o.Took), countsText(s.counts)))
		return
	}
	v.println(fmt.Sprintf("run %s: stopped at %s: %s | %s", v.runID, fraction(s), cleanText(err.Error()), countsText(s.counts)))
}

// jsonView writes one JSON object per Interval. The last object of a run
// is the command's (Final), which knows the report and the next steps.
type jsonView struct {
	mu    sync.Mutex
	out   io.Writer
	runID string
}

// RunCounts are the fields every JSON object about a run's progress
// starts with: the progress lines and the Final summary.
type RunCounts struct {
	Type         string              `json:"type"`
	Run          string              `json:"run"`
	Mode         jobs.Mode           `json:"mode"`
	State        jobs.RunState       `json:"state"`
	Planned      int                 `json:"planned"`
	Done         int                 `json:"done"`
	Expected     int                 `json:"expected"`
	Total        int                 `json:"total"`
	PlanningDone bool                `json:"planningDone"`
	Counts       map[jobs.Status]int `json:"counts"`
}

// runCounts fills a RunCounts; every status is present in Counts.
func runCounts(typ, id string, run jobs.Run, done, total int, counts map[jobs.Status]int) RunCounts {
	c := RunCounts{Type: typ, Run: id, Mode: run.Mode, State: run.State, Planned: run.Planned, Done: done,
		Expected: run.Expected(), Total: total, PlanningDone: run.PlanningDone, Counts: make(map[jobs.Status]int)}
	for _, st := range jobs.AllStatuses() {
		c.Counts[st] = counts[st]
	}
	return c
}

// jsonLine is one object of the JSON view (see the package documentation).
type jsonLine struct {
	RunCounts
	Rate       float64   `json:"rate"`
	ETASeconds *float64  `json:"etaSeconds"`
	Time       time.Time `json:"time"`
	// Final and Complete are always false here (the Final object has
	// them true), kept so every line has the same fields.
	Final    bool `json:"final"`
	Complete bool `json:"complete"`
}

func (v *jsonView) write(s snapshot) {
	l := jsonLine{
		RunCounts: runCounts(TypeProgress, v.runID, s.run, s.done, s.total, s.counts),
		Rate:      math.Round(s.rate*10) / 10, Time: s.time.UTC(),
	}
	if s.etaKnown {
		eta := s.eta.Seconds()
		l.ETASeconds = &eta
	}
	b, mErr := json.Marshal(l)
	if mErr != nil {
		return // cannot happen: every field marshals
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	_, _ = v.out.Write(append(b, '\n'))
}

func (v *jsonView) progress(snapshot)              {}
func (v *jsonView) line(s snapshot)                { v.write(s) }
func (v *jsonView) failure(jobs.Result)            {}
func (v *jsonView) close(snapshot, Outcome, error) {}

// fraction is "1234/5000 (24.7%)", or "1234/5000+ (24.7%, planning)"
// while the total is provisional.
func fraction(s snapshot) string {
	if s.provisional {
		return fmt.Sprintf("%d/%d+ (%.1f%%, planning)", s.done, s.total, s.percent())
	}
	return fmt.Sprintf("%d/%d (%.1f%%)", s.done, s.total, s.percent())
}

// speed is "310.2 Safes/s ETA 12s" ("ETA -" when unknown).
func speed(s snapshot) string {
	return fmt.Sprintf("%.1f Safes/s ETA %s", s.rate, etaText(s))
}

func etaText(s snapshot) string {
	if !s.etaKnown {
		return "-"
	}
	return fmtDuration(s.eta)
}

// countsText is "applied 800 unchanged 400 failed 2": the non-zero counts
// in the order of jobs.AllStatuses.
func countsText(counts map[jobs.Status]int) string {
	var parts []string
	for _, st := range jobs.AllStatuses() {
		if n := counts[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", st, n))
		}
	}
	if len(parts) == 0 {
		return "no results yet"
	}
	return strings.Join(parts, " ")
}

// failureText is one line about a failed or conflict result:
// `failed "Linux Root": MAX_DELIVERIES: gave up after 8 deliveries`.
func failureText(r jobs.Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Status, quoteName(r.Safe.Name))
	if r.ErrorCode != "" {
		b.WriteString(": " + cleanText(r.ErrorCode))
	}
	if r.Error != "" {
		b.WriteString(": " + cleanText(r.Error))
	}
	return b.String()
}

// quoteName quotes a Safe name for a terminal: Safe names are chosen by
// vault users, so control characters (ANSI escapes, newlines, bidi
// overrides) are shown escaped, never interpreted.
func quoteName(name string) string { return strconv.Quote(name) }

// cleanText replaces the characters a terminal would interpret (controls,
// bidi overrides and other invisible format characters) with '?' and
// line breaks and tabs with spaces.
func cleanText(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case unicode.IsPrint(r):
			return r
		}
		return '?'
	}, s)
}

// fmtDuration rounds d to seconds (to 100ms below 10s).
func fmtDuration(d time.Duration) string {
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
