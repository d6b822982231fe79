package pamtest

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// iisError500 is the page IIS serves for an unhandled server error
// (cyberark/epv-api-scripts#331).
const iisError500 = `<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"/>
<title>500 - Internal server error.</title>
</head>
<body>
<div id="header"><h1>Server Error</h1></div>
<div id="content">
 <div class="content-container"><fieldset>
  <h2>500 - Internal server error.</h2>
  <h3>The page cannot be displayed because an internal server error has occurred.</h3>
 </fieldset></div>
</div>
</body>
</html>
`

// iisError404 is the page IIS serves for a path it takes for a file, such
// as a URL ending in ".017" without a trailing slash.
const iisError404 = `<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"/>
<title>404 - File or directory not found.</title>
</head>
<body>
<div id="header"><h1>Server Error</h1></div>
<div id="content">
 <div class="content-container"><fieldset>
  <h2>404 - File or directory not found.</h2>
  <h3>The resource you are looking for might have been removed, had its name changed, or is temporarily unavailable.</h3>
 </fieldset></div>
</div>
</body>
</html>
`

// faultState is one immutable configuration of the injector.
type faultState struct {
	f       Faults
	limiter *rate.Limiter // nil without RateLimit
}

// injector draws the injected faults from a seeded RNG.
type injector struct {
	state atomic.Pointer[faultState]
	mu    sync.Mutex
	rng   *rand.Rand
}

func newInjector(f Faults, seed uint64) *injector {
	in := &injector{rng: rand.New(rand.NewPCG(seed, seed^0x5eed))}
	in.set(f)
	return in
}

func (in *injector) set(f Faults) {
	fs := &faultState{f: f}
	if f.RateLimit > 0 {
		burst := f.RateBurst
		if burst == 0 {
			burst = max(1, int(math.Ceil(f.RateLimit)))
		}
		fs.limiter = rate.NewLimiter(rate.Limit(f.RateLimit), burst)
	}
	in.state.Store(fs)
}

func (in *injector) load() *faultState { return in.state.Load() }

// draw returns a uniform number in [0,1).
func (in *injector) draw() float64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.rng.Float64()
}

// retryAfter returns the Retry-After value to send with a 429, or "".
func (in *injector) retryAfter(f *Faults) string {
	if f.P429RetryAfter <= 0 || in.draw() >= f.P429RetryAfter {
		return ""
	}
	d := f.RetryAfter
	switch {
	case d == 0:
		d = DefaultRetryAfter
	case d < 0:
		d = 0
	}
	return strconv.FormatInt(int64(d/time.Second), 10)
}

// faultsJSON is the admin wire form of Faults: durations as Go duration
// strings, every field optional on input.
type faultsJSON struct {
	Latency          *string  `json:"latency,omitempty"`
	Jitter           *string  `json:"jitter,omitempty"`
	MaxInFlight      *int     `json:"maxInFlight,omitempty"`
	Slots            *int     `json:"slots,omitempty"`
	RateLimit        *float64 `json:"rateLimit,omitempty"`
	RateBurst        *int     `json:"rateBurst,omitempty"`
	P500             *float64 `json:"p500,omitempty"`
	P429             *float64 `json:"p429,omitempty"`
	P429RetryAfter   *float64 `json:"p429RetryAfter,omitempty"`
	RetryAfter       *string  `json:"retryAfter,omitempty"`
	P403             *float64 `json:"p403,omitempty"`
	PWriteApplied500 *float64 `json:"pWriteApplied500,omitempty"`
	IncludeAuth      *bool    `json:"includeAuth,omitempty"`
}

// MarshalJSON writes every field, durations as strings such as "50ms".
func (f Faults) MarshalJSON() ([]byte, error) {
	s := func(d time.Duration) *string { v := d.String(); return &v }
	return json.Marshal(faultsJSON{
		Latency: s(f.Latency), Jitter: s(f.Jitter), MaxInFlight: &f.MaxInFlight, Slots: &f.Slots,
		RateLimit: &f.RateLimit, RateBurst: &f.RateBurst, P500: &f.P500, P429: &f.P429,
		P429RetryAfter: &f.P429RetryAfter, RetryAfter: s(f.RetryAfter), P403: &f.P403,
		PWriteApplied500: &f.PWriteApplied500, IncludeAuth: &f.IncludeAuth,
	})
}

// UnmarshalJSON sets the fields present in b and leaves the others as they
// are, so that decoding into the current Faults applies a partial update.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var j faultsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	dur := func(dst *time.Duration, src *string, name string) error {
		if src == nil {
			return nil
		}
		d, err := time.ParseDuration(*src)
		if err != nil {
			return fmt.Errorf("faults: %s: %w", name, err)
		}
		*dst = d
		return nil
	}
	if err := dur(&f.Latency, j.Latency, "latency"); err != nil {
		return err
	}
	if err := dur(&f.Jitter, j.Jitter, "jitter"); err != nil {
		return err
	}
	if err := dur(&f.RetryAfter, j.RetryAfter, "retryAfter"); err != nil {
		return err
	}
	setInt := func(dst *int, src *int) {
		if src != nil {
			*dst = *src
		}
	}
	setF := func(dst *float64, src *float64) {
		if src != nil {
			*dst = *src
		}
	}
	setInt(&f.MaxInFlight, j.MaxInFlight)
	setInt(&f.Slots, j.Slots)
	setInt(&f.RateBurst, j.RateBurst)
	setF(&f.RateLimit, j.RateLimit)
	setF(&f.P500, j.P500)
	setF(&f.P429, j.P429)
	setF(&f.P429RetryAfter, j.P429RetryAfter)
	setF(&f.P403, j.P403)
	setF(&f.PWriteApplied500, j.PWriteApplied500)
	if j.IncludeAuth != nil {
		f.IncludeAuth = *j.IncludeAuth
	}
	return nil
}
