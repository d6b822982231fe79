package watch

import (
	"fmt"
	"io"
	"sync/atomic"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/safeperm/safeperm/internal/jobs"
)

// barView is an mpb progress bar. Rate, ETA and counts are computed by
// Watch (snapshot), not by mpb's own averages, so that every view agrees
// and replayed results do not count as speed.
type barView struct {
	out  io.Writer
	p    *mpb.Progress
	bar  *mpb.Bar
	snap atomic.Pointer[snapshot]
}

func newBarView(out io.Writer, runID string) *barView {
	v := &barView{out: out}
	v.snap.Store(&snapshot{provisional: true})
	// WithAutoRefresh: keep rendering even when Out is not a terminal
	// (ViewBar forced), so lines written above the bar are flushed.
	v.p = mpb.New(mpb.WithOutput(out), mpb.WithAutoRefresh())
	v.bar = v.p.AddBar(0, // total set by progress; 0 lets SetTotal change it
		mpb.PrependDecorators(
			decor.Name("run "+runID+" ", decor.WCSyncSpaceR),
			decor.Any(func(decor.Statistics) string {
				s := v.snap.Load()
				if s.provisional {
					return fmt.Sprintf("%d/%d+", s.done, s.total)
				}
				return fmt.Sprintf("%d/%d", s.done, s.total)
			}, decor.WCSyncSpace),
		),
		mpb.AppendDecorators(
			decor.Any(func(decor.Statistics) string {
				s := v.snap.Load()
				pct := fmt.Sprintf("%.1f%%", s.percent())
				if s.provisional {
					pct += " planning"
				}
				return fmt.Sprintf("%s %s | %s", pct, speed(*s), countsText(s.counts))
			}),
		),
	)
	return v
}

func (v *barView) progress(s snapshot) {
	v.snap.Store(&s)
	v.bar.SetTotal(int64(max(s.total, s.done)), false)
	v.bar.SetCurrent(int64(s.done))
}

func (v *barView) line(snapshot) {}

func (v *barView) failure(r jobs.Result) {
	_, _ = fmt.Fprintln(v.p, failureText(r))
}

func (v *barView) close(s snapshot, o Outcome, err error) {
	v.progress(s)
	if err == nil {
		v.bar.SetTotal(-1, true) // complete at the current count
	} else {
		v.bar.Abort(false)
	}
	v.p.Wait()
	if err != nil {
		// The container is shut down: plain writes no longer race it.
		_, _ = fmt.Fprintf(v.out, "run stopped at %s: %s\n", fraction(s), cleanText(err.Error()))
	}
}
