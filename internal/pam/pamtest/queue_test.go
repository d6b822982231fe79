package pamtest

import (
	"testing"
	"time"
)

func TestWaitHistQuantiles(t *testing.T) {
	t.Parallel()
	// Every bucket's middle falls back into that bucket, within 4% of the
	// durations it holds.
	for d := time.Microsecond; d < time.Hour; d = d*21/20 + time.Microsecond {
		i := histIndex(d)
		mid := histMid(i)
		if histIndex(mid) != i {
			t.Fatalf("histMid(histIndex(%s)) = %s lands in bucket %d, not %d", d, mid, histIndex(mid), i)
		}
		if d >= 16*time.Microsecond {
			if r := float64(mid) / float64(d); r < 0.96 || r > 1.04 {
				t.Fatalf("%s is reported as %s (%.3f)", d, mid, r)
			}
		}
	}
	var h waitHist
	for range 50 {
		h.add(0)
	}
	for i := 1; i <= 50; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	q := h.snapshot()
	if q.Count != 100 || q.Waited != 50 {
		t.Errorf("count %d waited %d", q.Count, q.Waited)
	}
	// rank 50 of 100 is the last zero; p95 is the 45th of the waits.
	if q.MedianMs != 0 || q.P95Ms < 43 || q.P95Ms > 47 || q.MaxMs != 50 {
		t.Errorf("median %.2f p95 %.2f max %.2f ms", q.MedianMs, q.P95Ms, q.MaxMs)
	}
	if q.MeanMs < 12.7 || q.MeanMs > 12.8 {
		t.Errorf("mean %.3f ms, want 12.75", q.MeanMs)
	}
}
