package throttle_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/pam/pamtest"
	"github.com/safeperm/safeperm/internal/throttle"
)

func TestExplore(t *testing.T) {
	if os.Getenv("EXPLORE") == "" {
		t.Skip()
	}
	type sc struct {
		name    string
		f       pamtest.Faults
		clients int
		delays  []time.Duration
	}
	ms := time.Millisecond
	scs := []sc{
		{"429 C4 L25", pamtest.Faults{MaxInFlight: 4, Latency: 22 * ms, Jitter: 6 * ms}, 1, nil},
		{"429 C4 L25 x3", pamtest.Faults{MaxInFlight: 4, Latency: 22 * ms, Jitter: 6 * ms}, 3, nil},
		{"429 C64 L200", pamtest.Faults{MaxInFlight: 64, Latency: 180 * ms, Jitter: 40 * ms}, 1, nil},
		{"429 C64 L200 x3", pamtest.Faults{MaxInFlight: 64, Latency: 180 * ms, Jitter: 40 * ms}, 3, nil},
		{"Q C8 L50", pamtest.Faults{Slots: 8, Latency: 45 * ms, Jitter: 10 * ms}, 1, nil},
		{"Q C8 L50 x3", pamtest.Faults{Slots: 8, Latency: 45 * ms, Jitter: 10 * ms}, 3, nil},
		{"Q C32 L100", pamtest.Faults{Slots: 32, Latency: 90 * ms, Jitter: 20 * ms}, 1, nil},
		{"Q C32 L100 x3", pamtest.Faults{Slots: 32, Latency: 90 * ms, Jitter: 20 * ms}, 3, nil},
		{"Q C32 L100 x3 late", pamtest.Faults{Slots: 32, Latency: 90 * ms, Jitter: 20 * ms}, 3, []time.Duration{0, 2 * time.Second, 3 * time.Second}},
		{"Q C128 L200", pamtest.Faults{Slots: 128, Latency: 180 * ms, Jitter: 40 * ms}, 1, nil},
		{"Q C128 L200 x3", pamtest.Faults{Slots: 128, Latency: 180 * ms, Jitter: 40 * ms}, 3, nil},
		{"Q C16 L100 p500", pamtest.Faults{Slots: 16, Latency: 90 * ms, Jitter: 20 * ms, P500: 0.05}, 1, nil},
		{"Q C16 L100 p500 x3", pamtest.Faults{Slots: 16, Latency: 90 * ms, Jitter: 20 * ms, P500: 0.05}, 3, nil},
		{"TB 120 L20", pamtest.Faults{Slots: 64, Latency: 20 * ms, RateLimit: 120, RateBurst: 120, P429RetryAfter: 1}, 1, nil},
		{"TB 120 L20 x3", pamtest.Faults{Slots: 64, Latency: 20 * ms, RateLimit: 120, RateBurst: 120, P429RetryAfter: 1}, 3, nil},
	}
	for _, s := range scs {
		if f := os.Getenv("ONLY"); f != "" && f != s.name {
			continue
		}
		p := newPVWA(t, s.f)
		var cs []*client
		for ci := range s.clients {
			lg := testLogger(t).With().Int("client", ci).Logger()
			if os.Getenv("DEBUG") != "" {
				lg = lg.Level(zerolog.TraceLevel)
			}
			init := 0
			if s.clients == 1 {
				init = 8
			}
			cs = append(cs, newClient(throttle.NewAdaptive(throttle.AdaptiveOptions{Logger: lg, Initial: init})))
		}
		ctx, stop := context.WithCancel(context.Background())
		wg := p.drive(ctx, t, cs, 200, s.delays...)
		var ms []measured
		for range windows() {
			ms = append(ms, p.measure(cs, time.Second))
		}
		stop()
		wg.Wait()
		line := fmt.Sprintf("%-20s", s.name)
		for _, m := range ms {
			line += fmt.Sprintf(" | %.2f r%.3f w%.2f L%d", m.ratio, float64(m.refused)/float64(max(1, m.ok+m.refused)), m.waitRatio, median(m.total))
		}
		per := ""
		for _, c := range cs {
			per += fmt.Sprintf(" %d", median(c.limits))
		}
		t.Log(line + " |" + per)
		for _, c := range cs {
			t.Log("   ", c.a)
		}
	}
}

func windows() int {
	if os.Getenv("WINDOWS") != "" {
		var n int
		fmt.Sscan(os.Getenv("WINDOWS"), &n)
		return n
	}
	return 6
}

func TestExploreLate(t *testing.T) {
	if os.Getenv("EXPLORE") == "" {
		t.Skip()
	}
	p := newPVWA(t, pamtest.Faults{Slots: 24, Latency: 30 * time.Millisecond, Jitter: 6 * time.Millisecond})
	var cs []*client
	for i := range 3 {
		lg := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel).With().Int("client", i).Logger()
		cs = append(cs, newClient(throttle.NewAdaptive(throttle.AdaptiveOptions{Logger: lg})))
	}
	ctx, stop := context.WithCancel(context.Background())
	wg := p.drive(ctx, t, cs, 100, 0, 0, 2*time.Second)
	time.Sleep(4 * time.Second)
	m := p.measure(cs, 3*time.Second)
	stop()
	wg.Wait()
	t.Log(m.ratio, m.waitRatio, median(cs[0].limits), median(cs[1].limits), median(cs[2].limits))
}
