package deploy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/metrics"
	"github.com/safeperm/safeperm/internal/pam"
)

// dashboardPath is the Grafana dashboard shipped for the workers.
const dashboardPath = "grafana/safeperm.json"

// TestGrafanaDashboard checks deploy/grafana/safeperm.json against what a
// worker really exports: a real metrics.Metrics is exercised the way a
// worker uses it and its /metrics handler scraped; then every PromQL
// expression of the dashboard (panels and template variables) may name only
// scraped series (histograms by their _bucket, _sum and _count series) and
// only labels those series carry, in matchers and in by/without/on/ignoring
// clauses (le included), and every safeperm_* family appears somewhere.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	exported := scrapeWorkerMetrics(t)
	dash := readDashboard(t)
	exprs := dash.exprs()
	if len(exprs) < 10 {
		t.Fatalf("dashboard has %d queries, want a panel for each aspect", len(exprs))
	}
	used := map[string]bool{}
	for _, e := range exprs {
		refs, err := parsePromQL(e.expr)
		if err != nil {
			t.Errorf("%s: %q: %v", e.where, e.expr, err)
			continue
		}
		for _, err := range refs.check(exported, e.labels) {
			t.Errorf("%s: %q: %v", e.where, e.expr, err)
		}
		for _, s := range refs.selectors {
			used[family(s.metric)] = true
		}
		for _, v := range grafanaVarRE.FindAllStringSubmatch(e.expr, -1) {
			if name := v[1] + v[2]; !strings.HasPrefix(name, "__") && !dash.hasVar(name) {
				t.Errorf("%s: variable $%s is not defined in templating", e.where, name)
			}
		}
	}
	for name := range exported {
		if f := family(name); strings.HasPrefix(f, "safeperm_") && !used[f] {
			t.Errorf("the worker exports %s but no dashboard panel shows it", f)
		}
	}
	for _, p := range dash.allPanels() {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if p.Type != "row" && (p.Datasource == nil || p.Datasource.UID != "${datasource}") {
			t.Errorf("panel %q does not use the $datasource variable", p.Title)
		}
	}
	if err := dash.overlaps(); err != nil {
		t.Error(err)
	}
}

// TestGrafanaCheckerBites proves the checks find what they are for.
func TestGrafanaCheckerBites(t *testing.T) {
	t.Parallel()
	exported := map[string]map[string]bool{
		"safeperm_jobs_total":                           {"worker": true, "status": true},
		"safeperm_pvwa_request_duration_seconds_bucket": {"worker": true, "route": true, "le": true},
		"safeperm_pvwa_request_duration_seconds_count":  {"worker": true, "route": true},
	}
	tests := []struct {
		expr string
		err  string // "" = valid
	}{
		{`sum by (status) (rate(safeperm_jobs_total{worker=~"$worker"}[$__rate_interval]))`, ""},
		{`histogram_quantile(0.95, sum by (le, route) (rate(safeperm_pvwa_request_duration_seconds_bucket[5m])))`, ""},
		{`sum(rate(safeperm_jobs_total[5m])) by (status)`, ""},
		{`rate(safeperm_job_total[5m])`, "not exported: safeperm_job_total"},
		{`sum by (code) (rate(safeperm_jobs_total[5m]))`, `label "code" in by/without/on/ignoring`},
		{`rate(safeperm_jobs_total{route="x"}[5m])`, `label "route" of safeperm_jobs_total`},
		{`sum by (le) (rate(safeperm_pvwa_request_duration_seconds_count[5m]))`, `label "le"`},
		{`sum by (route) (rate(safeperm_pvwa_request_duration_seconds_bucket[5m])) / sum by (route) (rate(safeperm_jobs_total[5m]))`, `label "route" in by`},
		{`sum(rate({__name__="safeperm_jobs_total"}[5m]))`, "selector without a metric name"},
		{`vector(1)`, "names no metric"},
	}
	for _, tt := range tests {
		refs, err := parsePromQL(tt.expr)
		var errs []error
		if err != nil {
			errs = append(errs, err)
		} else {
			errs = refs.check(exported, nil)
		}
		switch {
		case tt.err == "" && len(errs) > 0:
			t.Errorf("%s: %v, want valid", tt.expr, errs)
		case tt.err != "" && !strings.Contains(fmt.Sprint(errs), tt.err):
			t.Errorf("%s: %v, want an error with %q", tt.expr, errs, tt.err)
		}
	}
}

// scrapeWorkerMetrics exercises every instrument the way a worker does and
// returns each series name scraped from the real /metrics handler with the
// labels it carries.
func scrapeWorkerMetrics(t *testing.T) map[string]map[string]bool {
	t.Helper()
	m := metrics.New("host-1/4121")
	for _, st := range jobs.AllStatuses() {
		m.JobStarted()
		m.JobFinished(st, 40*time.Millisecond)
	}
	m.JobStarted()
	m.JobRetried(1)
	m.JobStarted() // one left in flight
	for _, ci := range []pam.CallInfo{
		{Route: "GET /API/Safes/{id}/Members/{name}", Status: 200, Duration: 12 * time.Millisecond, Attempt: 1},
		{Route: "PUT /API/Safes/{id}/Members/{name}", Status: 403, Duration: 9 * time.Millisecond, Attempt: 2},
		{Route: "POST /API/Safes/{id}/Members", Status: 0, Duration: time.Second, Attempt: 1},
	} {
		m.ObservePVWA(ci)
	}
	for _, r := range []string{metrics.ReasonTooMany, metrics.ReasonServer, metrics.ReasonLatency, metrics.ReasonRetryAfter} {
		m.Throttled(r)
	}
	lim := m.Limiter(rate.NewLimiter(rate.Inf, 1))
	if err := lim.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	m.SetConcurrencyLimit(12)
	m.SetRateBudget(25)

	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	out, err := parseExposition(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("no series scraped")
	}
	return out
}

// parseExposition reads the Prometheus text format: for every sample line,
// the series name and its label names.
func parseExposition(r io.Reader) (map[string]map[string]bool, error) {
	out := map[string]map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end <= 0 {
			return nil, fmt.Errorf("malformed sample line %q", line)
		}
		name := line[:end]
		if out[name] == nil {
			out[name] = map[string]bool{}
		}
		if line[end] != '{' {
			continue
		}
		rest := line[end+1:]
		for {
			rest = strings.TrimLeft(rest, ", ")
			if strings.HasPrefix(rest, "}") {
				break
			}
			eq := strings.Index(rest, `="`)
			if eq <= 0 {
				return nil, fmt.Errorf("malformed labels in %q", line)
			}
			out[name][rest[:eq]] = true
			// Skip the quoted value, escapes included.
			i := eq + 2
			for ; i < len(rest) && rest[i] != '"'; i++ {
				if rest[i] == '\\' {
					i++
				}
			}
			if i >= len(rest) {
				return nil, fmt.Errorf("unterminated label value in %q", line)
			}
			rest = rest[i+1:]
		}
	}
	return out, sc.Err()
}

// family is the metric family of a series name (histogram suffixes off).
func family(series string) string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if f, ok := strings.CutSuffix(series, suf); ok && f != "" {
			return f
		}
	}
	return series
}

// dashboard is the part of a Grafana dashboard JSON the test reads.
type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's panels
}

func readDashboard(t *testing.T) *dashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(dashboardPath))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("%s: want a uid and a title", dashboardPath)
	}
	return &d
}

func (d *dashboard) allPanels() []panel {
	var out []panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

// query is one PromQL expression and where it is; labels lists label names
// the expression must find on its metrics besides those it names itself
// (label_values).
type query struct {
	where, expr string
	labels      []string
}

var labelValuesRE = regexp.MustCompile(`^\s*label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$`)

func (d *dashboard) exprs() []query {
	var out []query
	for _, p := range d.allPanels() {
		for i, tg := range p.Targets {
			out = append(out, query{where: fmt.Sprintf("panel %q target %d", p.Title, i), expr: tg.Expr})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			_ = json.Unmarshal(v.Query, &q.Query) // a plain string
		}
		where := fmt.Sprintf("variable %q", v.Name)
		if m := labelValuesRE.FindStringSubmatch(q.Query); m != nil {
			out = append(out, query{where: where, expr: m[1], labels: []string{m[2]}})
			continue
		}
		out = append(out, query{where: where, expr: q.Query})
	}
	return out
}

func (d *dashboard) hasVar(name string) bool {
	for _, v := range d.Templating.List {
		if v.Name == name {
			return true
		}
	}
	return false
}

// overlaps reports panels that cover the same grid cells.
func (d *dashboard) overlaps() error {
	cells := map[[2]int]string{}
	for _, p := range d.allPanels() {
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X+g.W > 24 {
			return fmt.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := cells[[2]int{x, y}]; ok {
					return fmt.Errorf("panels %q and %q overlap", other, p.Title)
				}
				cells[[2]int{x, y}] = p.Title
			}
		}
	}
	return nil
}

// grafanaVarRE finds $name and ${name} outside the label values too.
var grafanaVarRE = regexp.MustCompile(`\$(?:\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|([A-Za-z_][A-Za-z0-9_]*))`)

// promRefs is what an expression refers to.
type promRefs struct {
	selectors []selector
	// grouping are the labels of by, without, on, ignoring, group_left
	// and group_right clauses.
	grouping []string
}

type selector struct {
	metric string
	labels []string // matcher label names
}

// check returns every reference the scraped series do not satisfy: a metric
// not exported, a matcher label the metric lacks, a grouping label (or one
// of extra) that some metric of the expression lacks.
func (r promRefs) check(exported map[string]map[string]bool, extra []string) []error {
	var errs []error
	if len(r.selectors) == 0 {
		return []error{fmt.Errorf("names no metric")}
	}
	for _, s := range r.selectors {
		labels, ok := exported[s.metric]
		if !ok {
			errs = append(errs, fmt.Errorf("metric not exported: %s", s.metric))
			continue
		}
		for _, l := range s.labels {
			if l != "__name__" && !labels[l] {
				errs = append(errs, fmt.Errorf("label %q of %s is not exported (it has %s)", l, s.metric, keys(labels)))
			}
		}
	}
	for _, l := range append(slices.Clone(r.grouping), extra...) {
		for _, s := range r.selectors {
			if labels, ok := exported[s.metric]; ok && !labels[l] {
				errs = append(errs, fmt.Errorf("label %q in by/without/on/ignoring (or label_values): %s does not have it (it has %s)", l, s.metric, keys(labels)))
			}
		}
	}
	return errs
}

func keys(m map[string]bool) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// PromQL words that are not metric names when not followed by "(".
var (
	promKeywords    = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true}
	promGroupings   = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	promAggregators = map[string]bool{"sum": true, "avg": true, "min": true, "max": true, "count": true, "group": true, "stddev": true,
		"stdvar": true, "topk": true, "bottomk": true, "quantile": true, "count_values": true, "limitk": true, "limit_ratio": true}
)

// token is one lexical token of a PromQL expression.
type token struct {
	kind byte // 'i' identifier, 's' string, 'n' number, 'p' punctuation or operator
	text string
}

// lexPromQL splits expr into tokens, dropping range and subquery brackets
// ("[5m]", "[$__rate_interval]") and Grafana variables outside strings.
func lexPromQL(expr string) ([]token, error) {
	var out []token
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for ; j < len(expr) && expr[j] != c; j++ {
				if expr[j] == '\\' && c != '`' {
					j++
				}
			}
			if j >= len(expr) {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			out = append(out, token{'s', expr[i+1 : j]})
			i = j + 1
		case c == '[':
			j := strings.IndexByte(expr[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("unterminated [ at %d", i)
			}
			i += j + 1
		case c == '$':
			m := grafanaVarRE.FindStringIndex(expr[i:])
			if m == nil || m[0] != 0 {
				return nil, fmt.Errorf("stray $ at %d", i)
			}
			i += m[1]
		case c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i + 1
			for j < len(expr) && (expr[j] == '_' || expr[j] == ':' || expr[j] >= 'a' && expr[j] <= 'z' || expr[j] >= 'A' && expr[j] <= 'Z' || expr[j] >= '0' && expr[j] <= '9') {
				j++
			}
			out = append(out, token{'i', expr[i:j]})
			i = j
		case c >= '0' && c <= '9' || c == '.':
			j := i + 1
			for j < len(expr) && (expr[j] >= '0' && expr[j] <= '9' || expr[j] == '.' || expr[j] == 'e' || expr[j] == 'E') {
				j++
			}
			out = append(out, token{'n', expr[i:j]})
			i = j
		default:
			if i+1 < len(expr) && slices.Contains([]string{"=~", "!~", "!=", "==", ">=", "<="}, expr[i:i+2]) {
				out = append(out, token{'p', expr[i : i+2]})
				i += 2
				continue
			}
			if !strings.ContainsRune("(){},=+-*/%^<>", rune(c)) {
				return nil, fmt.Errorf("unexpected %q at %d", c, i)
			}
			out = append(out, token{'p', string(c)})
			i++
		}
	}
	return out, nil
}

// parsePromQL finds the metric selectors (with their matcher labels) and
// the grouping labels of expr. It is not a full parser: it knows enough of
// the grammar to tell a metric name from a function, an aggregator, a
// keyword or a label.
func parsePromQL(expr string) (promRefs, error) {
	toks, err := lexPromQL(expr)
	if err != nil {
		return promRefs{}, err
	}
	var r promRefs
	next := func(i int) token {
		if i+1 < len(toks) {
			return toks[i+1]
		}
		return token{}
	}
	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		switch {
		case tk.kind == 'i' && promGroupings[tk.text] && next(i).text == "(":
			i += 2
			for ; i < len(toks) && toks[i].text != ")"; i++ {
				if toks[i].kind == 'i' {
					r.grouping = append(r.grouping, toks[i].text)
				} else if toks[i].text != "," {
					return r, fmt.Errorf("unexpected %q in %s (...)", toks[i].text, tk.text)
				}
			}
		case tk.kind == 'i' && next(i).text == "(":
			// a function or an aggregator
		case tk.kind == 'i' && (promKeywords[tk.text] || promAggregators[tk.text] || promGroupings[tk.text]):
		case tk.kind == 'i':
			s := selector{metric: tk.text}
			if next(i).text == "{" {
				i += 2
				for ; i < len(toks) && toks[i].text != "}"; i++ {
					if toks[i].text == "," {
						continue
					}
					if toks[i].kind != 'i' || i+2 >= len(toks) || toks[i+2].kind != 's' {
						return r, fmt.Errorf("malformed matcher near %q in {...} of %s", toks[i].text, tk.text)
					}
					s.labels = append(s.labels, toks[i].text)
					i += 2
				}
			}
			r.selectors = append(r.selectors, s)
		case tk.text == "{":
			return r, fmt.Errorf("selector without a metric name")
		}
	}
	return r, nil
}
