package watch

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam"
)

// ExampleNames is how many Safe names a FailureGroup keeps as examples.
const ExampleNames = 3

// Error codes the workers and the dead-letter mover write besides the
// PVWA's own (jobs.ErrorCodeMaxDeliveries is the fifth).
const (
	CodeNotApplied     = "NOT_APPLIED"
	CodeRace           = "RACE"
	CodeTimeout        = "TIMEOUT"
	CodeTransient      = "TRANSIENT"
	CodePolicyConflict = jobs.ErrorCodePolicyConflict
	// CodeNone stands for a failed or conflict result without an error
	// code (a rollback conflict).
	CodeNone = "-"
)

// Cause is what the Safes of one FailureGroup have in common. JSON field
// names are stable.
type Cause struct {
	// Status is failed or conflict.
	Status jobs.Status `json:"status"`
	// ErrorCode is the result's errorCode, or CodeNone.
	ErrorCode string `json:"errorCode"`
	// Op is the PVWA call that failed (jobs.Result.Op), if any.
	Op string `json:"op,omitempty"`
	// HTTP is the PVWA's HTTP status, read from the error text ("HTTP 403");
	// 0 when there was none. CAWS00001E alone means 403, an unknown member
	// (404) or invalid input (400): the status tells them apart.
	HTTP int `json:"http,omitempty"`
}

// FailureGroup is the failed or conflict Safes of one Cause, with what to
// do about them. JSON field names are stable.
type FailureGroup struct {
	Cause
	// Count is the number of Safes.
	Count int `json:"count"`
	// Examples are the first ExampleNames Safe names, in arrival order.
	Examples []string `json:"examples"`
	// Advice says what the cause means and what to do, in one sentence.
	Advice string `json:"advice"`
	// Error is the error text of the first Safe, control characters
	// removed: the detail behind the advice.
	Error string `json:"error,omitempty"`
}

// Causes groups failed and conflict results by Cause. The zero value is
// not usable; use NewCauses. Not safe for concurrent use.
type Causes struct {
	groups map[Cause]*FailureGroup
	n      int
}

// NewCauses returns an empty Causes.
func NewCauses() *Causes { return &Causes{groups: make(map[Cause]*FailureGroup)} }

// Add counts r if it is failed or conflict, and reports whether it did.
// The caller counts each Safe once (jobs.Follow and jobs.Tally do).
func (c *Causes) Add(r jobs.Result) bool {
	counted, _ := c.add(r)
	return counted
}

// add is Add that also reports whether r is the first of its cause.
func (c *Causes) add(r jobs.Result) (counted, first bool) {
	if r.Status != jobs.StatusFailed && r.Status != jobs.StatusConflict {
		return false, false
	}
	k := causeOf(r)
	g, ok := c.groups[k]
	if !ok {
		g = &FailureGroup{Cause: k, Advice: advise(k), Error: cleanText(firstNonEmpty(r.Error, r.Reason))}
		c.groups[k] = g
	}
	g.Count++
	if len(g.Examples) < ExampleNames {
		g.Examples = append(g.Examples, r.Safe.Name)
	}
	c.n++
	return true, !ok
}

// Len returns the number of Safes added.
func (c *Causes) Len() int { return c.n }

// Groups returns the groups, the largest first (then by code and
// operation), as copies.
func (c *Causes) Groups() []FailureGroup {
	out := make([]FailureGroup, 0, len(c.groups))
	for _, g := range c.groups {
		cp := *g
		cp.Examples = slices.Clone(g.Examples)
		out = append(out, cp)
	}
	slices.SortFunc(out, func(a, b FailureGroup) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Status, b.Status),
			cmp.Compare(a.ErrorCode, b.ErrorCode), cmp.Compare(a.Op, b.Op), cmp.Compare(a.HTTP, b.HTTP))
	})
	return out
}

// GroupFailures groups the failed and conflict results among rs.
func GroupFailures(rs []jobs.Result) []FailureGroup {
	c := NewCauses()
	for _, r := range rs {
		c.Add(r)
	}
	return c.Groups()
}

// httpStatusRE finds the status in the error texts of the worker
// ("PUT member: HTTP 403 CAWS00001E") and of pam.APIError.
var httpStatusRE = regexp.MustCompile(`\bHTTP ([1-5][0-9][0-9])\b`)

func causeOf(r jobs.Result) Cause {
	k := Cause{Status: r.Status, ErrorCode: strings.TrimSpace(r.ErrorCode), Op: r.Op}
	if k.ErrorCode == "" {
		k.ErrorCode = CodeNone
	}
	if m := httpStatusRE.FindStringSubmatch(r.Error); m != nil {
		k.HTTP, _ = strconv.Atoi(m[1])
	}
	return k
}

// advise says what a cause means and what to do about it.
func advise(k Cause) string {
	code := strings.ToUpper(k.ErrorCode)
	switch {
	case code == CodePolicyConflict:
		return "two rules set the same flag of the same member to different values on this Safe: fix the policy (planner policy check shows the pairs)"
	case code == jobs.ErrorCodeMaxDeliveries:
		return "transient errors (5xx, 429, timeouts) until JetStream gave up on the job: the PVWA was overloaded or down; check its health, lower --rate, then run again (only these Safes still need work)"
	case code == CodeNotApplied:
		return "the PVWA answered the write without the permissions asked for: check the member on these Safes in the PVWA and the PVWA logs, then run again"
	case code == CodeRace:
		return "the member kept changing between read and write (another tool or an administrator editing it): run again once the other change is done"
	case code == CodeTimeout:
		return "PVWA calls timed out: the PVWA was slow or unreachable; check it, lower --rate, then run again"
	case code == CodeTransient:
		return "transient PVWA errors (5xx, 429) outlasted the retries: check the PVWA's health, lower --rate, then run again"
	case code == pam.CodeSafeNotFound:
		return "the Safe was deleted after it was listed, or the API user is no longer a member of it: nothing to do for a deleted Safe; otherwise add the API user back (View and Manage Safe Members) and run again"
	case k.HTTP == 403:
		switch k.Op {
		case "GET member", "list members":
			return "the API user lacks View Safe Members on these Safes: add it to them with View and Manage Safe Members, or list them in the exclude file"
		case "PUT member", "POST member", "DELETE member":
			return "the API user may read but not change members on these Safes (it lacks Manage Safe Members): add it to them with View and Manage Safe Members, or list them in the exclude file"
		}
		return "the API user lacks View or Manage Safe Members on these Safes: add it to them with both, or list them in the exclude file"
	case k.HTTP == 404 && k.Op == "POST member":
		return "the vault does not know the member name (or its type or directory differ): check --member, --member-type and --search-in"
	case code == pam.CodeInvalidParameters:
		return "the PVWA rejected the request's parameters: check --member-type (required on Privilege Cloud) and --search-in; if they are right, report it with the error text"
	case k.HTTP == 400:
		return "the PVWA rejected the request as invalid: check --member, --member-type, --search-in and --permissions against this PVWA version; the error text says which value"
	case k.HTTP == 401:
		return "the PVWA refused the API user's session: check its credentials, that it is not suspended, and the PVWA's session limits, then run again"
	case k.Status == jobs.StatusConflict && code == CodeNone:
		return "the member changed after the run and was left alone: check these Safes by hand (the report has the state before and now)"
	}
	what := "error " + k.ErrorCode
	if k.HTTP != 0 {
		what += fmt.Sprintf(" (HTTP %d)", k.HTTP)
	}
	if k.Op != "" {
		what += " on " + k.Op
	}
	return what + ": not a known cause; the report has each Safe's error text"
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// headline is one group's first line in the summaries:
// `CAWS00001E (HTTP 403, PUT member) on 58 Safes, e.g. "A", "B", "C"`.
func (g FailureGroup) headline() string {
	var b strings.Builder
	b.WriteString(cleanText(g.ErrorCode))
	var detail []string
	if g.Status == jobs.StatusConflict {
		detail = append(detail, "conflict")
	}
	if g.HTTP != 0 {
		detail = append(detail, fmt.Sprintf("HTTP %d", g.HTTP))
	}
	if g.Op != "" {
		detail = append(detail, cleanText(g.Op))
	}
	if len(detail) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(detail, ", "))
	}
	noun := "Safes"
	if g.Count == 1 {
		noun = "Safe"
	}
	fmt.Fprintf(&b, " on %d %s", g.Count, noun)
	if len(g.Examples) > 0 {
		names := make([]string, len(g.Examples))
		for i, n := range g.Examples {
			names[i] = quoteName(n)
		}
		lead := ", e.g. "
		if g.Count == len(g.Examples) {
			lead = ": "
		}
		b.WriteString(lead + strings.Join(names, ", "))
	}
	return b.String()
}
