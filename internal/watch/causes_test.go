package watch_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/watch"
)

// TestCausesAdvice: every cause an administrator meets gets its own group
// and advice that names what to do; an unknown code falls back to naming
// the code.
func TestCausesAdvice(t *testing.T) {
	t.Parallel()
	failed := func(code, op, errText string) jobs.Result {
		return jobs.Result{Status: jobs.StatusFailed, ErrorCode: code, Op: op, Error: errText}
	}
	tests := []struct {
		name string
		r    jobs.Result
		want watch.Cause
		// advice must contain every one of these.
		advice []string
	}{
		{"403 on read", failed("CAWS00001E", "GET member", "GET member: HTTP 403 CAWS00001E (the API user lacks View or Manage Safe Members on this Safe)"),
			watch.Cause{Status: jobs.StatusFailed, ErrorCode: "CAWS00001E", Op: "GET member", HTTP: 403},
			[]string{"lacks View Safe Members", "exclude file"}},
		{"403 on write", failed("CAWS00001E", "PUT member", "PUT member: HTTP 403 CAWS00001E"),
			watch.Cause{Status: jobs.StatusFailed, ErrorCode: "CAWS00001E", Op: "PUT member", HTTP: 403},
			[]string{"Manage Safe Members", "exclude file"}},
		{"403 from an older worker without op", failed("CAWS00001E", "", "update member: PUT /x: HTTP 403 CAWS00001E"),
			watch.Cause{Status: jobs.StatusFailed, ErrorCode: "CAWS00001E", HTTP: 403},
			[]string{"View or Manage Safe Members", "exclude file"}},
		{"Safe deleted", failed("SFWS0007", "GET member", "GET member: HTTP 404 SFWS0007: Safe x was not found. (the Safe was deleted, or the API user is no longer a member)"),
			watch.Cause{Status: jobs.StatusFailed, ErrorCode: "SFWS0007", Op: "GET member", HTTP: 404},
			[]string{"deleted", "no longer a member", "add the API user back"}},
		{"unknown member", failed("CAWS00001E", "POST member", "POST member: HTTP 404 CAWS00001E: User or Group was not found."),
			watch.Cause{Status: jobs.StatusFailed, ErrorCode: "CAWS00001E", Op: "POST member", HTTP: 404},
			[]string{"does not know the member", "--member-type", "--search-in"}},
		{"invalid parameters", failed("PASWS167E", "POST member", "POST member: HTTP 400 PASWS167E: There are some invalid parameters"),
			watch.Cause{Status: jobs.StatusFailed, ErrorCode: "PASWS167E", Op: "POST member", HTTP: 400},
			[]string{"rejected the request's parameters", "--member-type"}},
		{"other 400", failed("CAWS00001E", "PUT member", "PUT member: HTTP 400 CAWS00001E: Input parameter for [Permissions] value is invalid."),
			watch.Cause{Status: jobs.StatusFailed, ErrorCode: "CAWS00001E", Op: "PUT member", HTTP: 400},
			[]string{"invalid", "--permissions"}},
		{"dead-lettered", failed(jobs.ErrorCodeMaxDeliveries, "", "gave up after 8 deliveries; job moved to SAFEPERM_DLQ"),
			watch.Cause{Status: jobs.StatusFailed, ErrorCode: "MAX_DELIVERIES"},
			[]string{"JetStream gave up", "overloaded or down", "lower --rate"}},
		{"not applied", failed("NOT_APPLIED", "", "write not applied: the PVWA answered the write without unlockAccounts"),
			watch.Cause{Status: jobs.StatusFailed, ErrorCode: "NOT_APPLIED"}, []string{"without the permissions"}},
		{"race", failed("RACE", "", "member changed between read and write (4 times)"),
			watch.Cause{Status: jobs.StatusFailed, ErrorCode: "RACE"}, []string{"kept changing"}},
		{"timeout", failed("TIMEOUT", "", "gave up after 8 deliveries: context deadline exceeded"),
			watch.Cause{Status: jobs.StatusFailed, ErrorCode: "TIMEOUT"}, []string{"timed out"}},
		{"transient", failed("TRANSIENT", "GET member", "gave up after 8 deliveries: GET member: HTTP 500"),
			watch.Cause{Status: jobs.StatusFailed, ErrorCode: "TRANSIENT", Op: "GET member", HTTP: 500}, []string{"outlasted the retries"}},
		{"policy conflict", failed("POLICY_CONFLICT", "", "rules a and b disagree on unlockAccounts for PSMAppUsers"),
			watch.Cause{Status: jobs.StatusFailed, ErrorCode: "POLICY_CONFLICT"}, []string{"two rules", "planner policy check"}},
		{"rollback conflict", jobs.Result{Status: jobs.StatusConflict, Reason: "member changed since the run; left alone"},
			watch.Cause{Status: jobs.StatusConflict, ErrorCode: watch.CodeNone}, []string{"by hand"}},
		{"unknown code", failed("ITATS999E", "DELETE member", "DELETE member: HTTP 500 ITATS999E: oops"),
			watch.Cause{Status: jobs.StatusFailed, ErrorCode: "ITATS999E", Op: "DELETE member", HTTP: 500},
			[]string{"error ITATS999E (HTTP 500) on DELETE member", "not a known cause"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := make([]jobs.Result, 5)
			for i := range rs {
				rs[i] = tt.r
				rs[i].Safe = jobs.SafeRef{Name: fmt.Sprintf("Safe %d", i)}
			}
			groups := watch.GroupFailures(rs)
			if len(groups) != 1 {
				t.Fatalf("%d groups, want 1: %+v", len(groups), groups)
			}
			g := groups[0]
			if g.Cause != tt.want {
				t.Errorf("cause %+v, want %+v", g.Cause, tt.want)
			}
			if g.Count != 5 || strings.Join(g.Examples, "|") != "Safe 0|Safe 1|Safe 2" {
				t.Errorf("count %d, examples %q; want 5 and the first three", g.Count, g.Examples)
			}
			for _, w := range tt.advice {
				if !strings.Contains(g.Advice, w) {
					t.Errorf("advice %q lacks %q", g.Advice, w)
				}
			}
		})
	}
}

// TestCausesGrouping: results of different causes land in different
// groups, the largest first; other statuses are not counted.
func TestCausesGrouping(t *testing.T) {
	t.Parallel()
	c := watch.NewCauses()
	add := func(n int, r jobs.Result) {
		for i := range n {
			r.Safe = jobs.SafeRef{Name: fmt.Sprintf("%s %d", r.ErrorCode, i)}
			c.Add(r)
		}
	}
	add(2, jobs.Result{Status: jobs.StatusFailed, ErrorCode: "SFWS0007", Op: "GET member", Error: "GET member: HTTP 404 SFWS0007"})
	add(58, jobs.Result{Status: jobs.StatusFailed, ErrorCode: "CAWS00001E", Op: "PUT member", Error: "PUT member: HTTP 403 CAWS00001E"})
	add(3, jobs.Result{Status: jobs.StatusFailed, ErrorCode: "CAWS00001E", Op: "POST member", Error: "POST member: HTTP 404 CAWS00001E"})
	if c.Add(jobs.Result{Status: jobs.StatusApplied}) {
		t.Error("an applied result was counted as a failure")
	}
	if c.Len() != 63 {
		t.Errorf("Len = %d, want 63", c.Len())
	}
	var got []string
	for _, g := range c.Groups() {
		got = append(got, fmt.Sprintf("%s/%d/%s=%d", g.ErrorCode, g.HTTP, g.Op, g.Count))
	}
	want := "CAWS00001E/403/PUT member=58 CAWS00001E/404/POST member=3 SFWS0007/404/GET member=2"
	if strings.Join(got, " ") != want {
		t.Errorf("groups %v, want %s", got, want)
	}
}
