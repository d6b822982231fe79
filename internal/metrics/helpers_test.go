package metrics

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// exposition returns what m's /metrics answers, in the text format.
func exposition(t testing.TB, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: status %d, body %q", rec.Code, rec.Body.String())
	}
	return rec.Body.String()
}

// samples parses the sample lines of a text exposition into a map from the
// series as written (name{labels}) to its value.
func samples(t testing.TB, text string) map[string]float64 {
	t.Helper()
	out := make(map[string]float64)
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("malformed sample line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// wantSamples fails t for every series of want whose value in got differs
// or that got lacks.
func wantSamples(t testing.TB, got, want map[string]float64) {
	t.Helper()
	for series, w := range want {
		g, ok := got[series]
		switch {
		case !ok:
			t.Errorf("series %s missing", series)
		case g != w:
			t.Errorf("%s = %v, want %v", series, g, w)
		}
	}
}

// countSeries counts the series of got whose name is name.
func countSeries(got map[string]float64, name string) int {
	n := 0
	for series := range got {
		if series == name || strings.HasPrefix(series, name+"{") {
			n++
		}
	}
	return n
}
