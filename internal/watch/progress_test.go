package watch

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/jobs"
)

func TestRateMeter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		times   []time.Time // result times
		started time.Time
		want    float64
	}{
		{"empty", nil, time.Time{}, 0},
		{"60 in the window", repeat(now.Add(-10*time.Second), 60), time.Time{}, 2},
		{"old results replayed do not count", repeat(now.Add(-time.Hour), 1000), time.Time{}, 0},
		{"young run: since started", repeat(now.Add(-time.Second), 20), now.Add(-4 * time.Second), 5},
		{"zero and future times count as now", []time.Time{{}, now.Add(time.Hour)}, time.Time{}, 2.0 / 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newRateMeter(rateWindow)
			for _, ts := range tt.times {
				m.add(ts, now)
			}
			if got := m.rate(now, tt.started); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("rate = %v, want %v", got, tt.want)
			}
		})
	}
}

func repeat(t time.Time, n int) []time.Time {
	out := make([]time.Time, n)
	for i := range out {
		out[i] = t
	}
	return out
}

func TestTotal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		run      jobs.Run
		done     int
		want     int
		wantProv bool
	}{
		{"planning done", jobs.Run{Published: 10, Skipped: 2, PlanningDone: true}, 3, 12, false},
		{"planning: planned so far plus skipped", jobs.Run{Planned: 10, Published: 8, Skipped: 2}, 3, 12, true},
		{"planning: never below done", jobs.Run{Planned: 1}, 5, 5, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, prov := total(tt.run, tt.done)
			if got != tt.want || prov != tt.wantProv {
				t.Errorf("total = %d, %v; want %d, %v", got, prov, tt.want, tt.wantProv)
			}
		})
	}
}

func TestViewMode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    ViewMode
		wantErr bool
	}{
		{"auto", ViewAuto, false}, {"BAR", ViewBar, false}, {" plain", ViewPlain, false},
		{"json", ViewJSON, false}, {"none", ViewNone, false}, {"fancy", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseViewMode(tt.in)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("ParseViewMode(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
		if !tt.wantErr && got.String() != strings.ToLower(strings.TrimSpace(tt.in)) {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
}

func TestCleanText(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"plain Zürich", "plain Zürich"},
		{"a\nb\tc\r", "a b c "},
		{"\x1b[31mred", "?[31mred"},
		{"rtl\u202eoverride", "rtl?override"},
	}
	for _, tt := range tests {
		if got := cleanText(tt.in); got != tt.want {
			t.Errorf("cleanText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
