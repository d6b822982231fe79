package jobs_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/policy"
)

func ptr[T any](v T) *T { return &v }

func TestJobRoundTrip(t *testing.T) {
	t.Parallel()
	rollback := testJob("r1", "Linux Root")
	rollback.Mode = jobs.ModeRollback
	rollback.Rules = nil
	rollback.Restore = []jobs.Restore{
		{Rule: "psm-unlock", Member: testRule.Member, To: &jobs.MemberState{Permissions: pam.Perms(pam.ListAccounts), Expiration: ptr(int64(1798761600))},
			Expect: &jobs.MemberState{Permissions: testPerms}},
		{Rule: "offboard", Member: jobs.MemberRef{Name: "jdoe", Type: "User"}, To: &jobs.MemberState{Permissions: pam.Perms(pam.UseAccounts)}},
		{Member: jobs.MemberRef{Name: "New Group", Type: "Group"}, Expect: &jobs.MemberState{}},
	}
	multi := testJob("r1", "DB-Orders")
	multi.Rules = append(multi.Rules,
		policy.Directive{Rule: "helpdesk", Member: jobs.MemberRef{Name: "HelpDesk", Type: "Group", SearchIn: "Vault"}, Action: policy.ActionRevoke, Permissions: pam.Perms(pam.RetrieveAccounts)},
		policy.Directive{Rule: "move", Member: jobs.MemberRef{Name: "NEWCORP Ops", Type: "Group"}, Action: policy.ActionCopy, Source: "Domain Ops", RemoveSource: true},
		policy.Directive{Rule: "offboard", Member: jobs.MemberRef{Name: "jdoe", Type: "User"}, Action: policy.ActionAbsent},
	)
	tests := []struct {
		name string
		job  jobs.Job
	}{
		{"apply", testJob("20261123T094512Z-3f9a2c", "Linux Root")},
		{"check", func() jobs.Job { j := testJob("r1", "a.b c"); j.Mode = jobs.ModeCheck; return j }()},
		{"multi", multi},
		{"rollback", rollback},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := tt.job.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			got, err := jobs.DecodeJob(data)
			if err != nil {
				t.Fatalf("DecodeJob(%s): %v", data, err)
			}
			if !reflect.DeepEqual(got, tt.job) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, tt.job)
			}
		})
	}
}

// The hand-written job encoder must match encoding/json byte for byte.
func TestJobEncodeMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	names := []string{
		"plain", "Linux Root", `quote" back\ slash`, "<html> & co", "tab\tnl\ncr\rbs\bff\f", "\x00\x01\x1f\x7f",
		"bad utf8 \xff\xfe", "sep \u2028 \u2029", "Ünïcödé 日本 🎉", "",
	}
	for _, n := range names {
		j := testJob("r1", "S")
		j.Safe.Name, j.Safe.URLID, j.Rules[0].Member.SearchIn, j.Rules[0].Rule = n, n, n, n+"r"
		j.Rules = append(j.Rules, policy.Directive{Rule: "c", Member: jobs.MemberRef{Name: n + "m", Type: "Group"}, Action: policy.ActionCopy, Source: n + "s", RemoveSource: true})
		j.Restore = []jobs.Restore{{Rule: n, Member: jobs.MemberRef{Name: n + "x", Type: "User", SearchIn: n},
			To:     &jobs.MemberState{Permissions: pam.Perms(pam.UseAccounts, pam.RequestsAuthorizationLevel2), Expiration: ptr(int64(-5))},
			Expect: &jobs.MemberState{}}, {Member: jobs.MemberRef{Name: "y"}}}
		j.Created = time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("X", -(3*3600+30*60)))
		if n == "" {
			j.Safe.Name, j.Safe.URLID = "x", "x" // keep it valid
		}
		got, err := j.Encode()
		if err != nil {
			t.Fatalf("Encode(%q): %v", n, err)
		}
		want, err := json.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("Encode(%q):\n got %s\nwant %s", n, got, want)
		}
	}
	j := testJob("r1", "S")
	j.Created = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := j.Encode(); err == nil {
		t.Error("Encode accepted year 10000")
	}
}

func TestJobJSONShape(t *testing.T) {
	t.Parallel()
	j := testJob("20261123T094512Z-3f9a2c", "Linux Root")
	data, err := j.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"v":2,"run":"20261123T094512Z-3f9a2c","mode":"apply",` +
		`"safe":{"urlId":"Linux Root","name":"Linux Root"},` +
		`"rules":[{"rule":"psm-unlock","member":{"name":"PSMAppUsers","type":"Group","searchIn":"Vault"},` +
		`"action":"grant","permissions":["listAccounts","unlockAccounts"]}],"created":"2026-11-23T09:45:12Z"}`
	if string(data) != want {
		t.Errorf("JSON:\n got %s\nwant %s", data, want)
	}
}

func TestResultRoundTrip(t *testing.T) {
	t.Parallel()
	j := testJob("r1", "Linux Root")
	now := time.Date(2026, 11, 23, 9, 46, 0, 123000000, time.UTC)
	applied := jobs.NewResult(j, jobs.StatusApplied, now)
	applied.Members = []jobs.MemberResult{
		{Rule: "psm-unlock", Member: testRule.Member, Status: jobs.StatusApplied, Change: jobs.ChangeUpdate,
			Before: &jobs.MemberState{Permissions: pam.Perms(pam.ListAccounts)}, After: &jobs.MemberState{Permissions: testPerms},
			Added: pam.Perms(pam.UnlockAccounts)},
		{Rule: "offboard", Member: jobs.MemberRef{Name: "jdoe", Type: "User"}, Status: jobs.StatusApplied, Change: jobs.ChangeRemove,
			Before: &jobs.MemberState{Permissions: pam.Perms(pam.UseAccounts), Expiration: ptr(int64(1798761600))}, Removed: pam.Perms(pam.UseAccounts)},
		{Rule: "move", Member: jobs.MemberRef{Name: "Old"}, Status: jobs.StatusUnchanged, Reason: "source not a member"},
	}
	applied.Attempts, applied.Worker = 1, "host-1/42"
	drift := jobs.NewResult(j, jobs.StatusDrift, now)
	drift.Mode = jobs.ModeCheck
	drift.Members = []jobs.MemberResult{{Rule: "psm-unlock", Member: testRule.Member, Status: jobs.StatusDrift, Change: jobs.ChangeUpdate,
		Added: pam.Perms(pam.UnlockAccounts)}}
	failed := jobs.NewResult(j, jobs.StatusFailed, now)
	failed.ErrorCode, failed.Error, failed.Op = jobs.ErrorCodeMaxDeliveries, "gave up", "PUT member"
	skipped := jobs.NewResult(j, jobs.StatusSkipped, now)
	skipped.Reason = "excluded"
	for _, r := range []jobs.Result{applied, drift, failed, skipped} {
		t.Run(string(r.Status), func(t *testing.T) {
			data, err := r.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			got, err := jobs.DecodeResult(data)
			if err != nil {
				t.Fatalf("DecodeResult(%s): %v", data, err)
			}
			if !reflect.DeepEqual(got, r) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, r)
			}
		})
	}
}

func TestDecodeJobRejects(t *testing.T) {
	t.Parallel()
	valid := func(mutate func(m map[string]any)) string {
		var m map[string]any
		data, _ := testJob("r1", "S1").Encode()
		_ = json.Unmarshal(data, &m)
		mutate(m)
		out, _ := json.Marshal(m)
		return string(out)
	}
	rule := func(m map[string]any) map[string]any { return m["rules"].([]any)[0].(map[string]any) }
	tests := []struct {
		name, data, wantIn string
	}{
		{"not json", `{"v":2,`, "unexpected end"},
		{"not an object", `[1,2]`, "cannot unmarshal"},
		{"empty", ``, "unexpected end"},
		{"missing v", valid(func(m map[string]any) { delete(m, "v") }), "missing v"},
		{"v1", `{"v":1,"run":"r1","mode":"apply","safe":{"urlId":"S1","name":"S1"},"member":{"name":"m","type":"Group"},"permissions":["listAccounts"],"created":"2026-11-23T09:45:12Z"}`, "unsupported version 1 (this build reads 2)"},
		{"v3", valid(func(m map[string]any) { m["v"] = 3 }), "unsupported version 3 (this build reads 2)"},
		{"v string", valid(func(m map[string]any) { m["v"] = "2" }), "cannot unmarshal"},
		{"bad run id", valid(func(m map[string]any) { m["run"] = "a.b" }), "invalid run id"},
		{"long run id", valid(func(m map[string]any) { m["run"] = strings.Repeat("a", 65) }), "invalid run id"},
		{"missing run", valid(func(m map[string]any) { delete(m, "run") }), "invalid run id"},
		{"missing safe", valid(func(m map[string]any) { delete(m, "safe") }), "missing safe.name"},
		{"missing urlId", valid(func(m map[string]any) { m["safe"] = map[string]any{"name": "x"} }), "missing safe.urlId"},
		{"unknown mode", valid(func(m map[string]any) { m["mode"] = "destroy" }), `unknown mode "destroy"`},
		{"no rules", valid(func(m map[string]any) { delete(m, "rules") }), "no rules"},
		{"empty rules", valid(func(m map[string]any) { m["rules"] = []any{} }), "no rules"},
		{"missing member", valid(func(m map[string]any) { rule(m)["member"] = map[string]any{"type": "Group"} }), "missing member.name"},
		{"bad member type", valid(func(m map[string]any) { rule(m)["member"] = map[string]any{"name": "x", "type": "Robot"} }), `member.type "Robot"`},
		{"empty permissions", valid(func(m map[string]any) { rule(m)["permissions"] = []string{} }), "grant without permissions"},
		{"unknown permission", valid(func(m map[string]any) { rule(m)["permissions"] = []string{"listAccounts", "fly"} }), "unknown permission"},
		{"unknown action", valid(func(m map[string]any) { rule(m)["action"] = "nuke" }), `unknown action "nuke"`},
		{"copy without source", valid(func(m map[string]any) { rule(m)["action"] = "copyFrom" }), "copyFrom without source"},
		{"removeSource without copy", valid(func(m map[string]any) { rule(m)["removeSource"] = true }), "removeSource without copyFrom"},
		{"rollback without restore", valid(func(m map[string]any) { m["mode"] = "rollback" }), "rollback job without restore"},
		{"bad created", valid(func(m map[string]any) { m["created"] = "yesterday" }), "cannot parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := jobs.DecodeJob([]byte(tt.data))
			if !errors.Is(err, jobs.ErrMalformed) {
				t.Fatalf("DecodeJob(%s) error = %v, want ErrMalformed", tt.data, err)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("error %q does not mention %q", err, tt.wantIn)
			}
		})
	}
}

func TestDecodeJobTolerates(t *testing.T) {
	t.Parallel()
	data := `{"v":2,"run":"r1","mode":"apply","safe":{"urlId":"S1","name":"S1","future":true},` +
		`"rules":[{"rule":"r","member":{"name":"PSMAppUsers","type":"Group"},"action":"grant",` +
		`"permissions":{"ListAccounts":true,"unlockAccounts":true},"weight":3}],` +
		`"priority":7,"created":"2026-11-23T09:45:12Z"}`
	j, err := jobs.DecodeJob([]byte(data))
	if err != nil {
		t.Fatalf("DecodeJob: %v", err)
	}
	if j.Rules[0].Permissions != testPerms {
		t.Errorf("permissions = %v, want %v", j.Rules[0].Permissions, testPerms)
	}
}

// A result of version 1 (runs made before policies) is still read, so its
// report and rollback work after an upgrade.
func TestDecodeResultV1(t *testing.T) {
	t.Parallel()
	data := `{"v":1,"run":"r1","mode":"apply","safe":{"urlId":"S%201","name":"S 1"},"member":"PSMAppUsers","status":"applied",` +
		`"before":{"permissions":["listAccounts"]},"after":{"permissions":["listAccounts","unlockAccounts"]},"attempts":2,` +
		`"worker":"w","time":"2026-11-23T09:46:03.12Z"}`
	r, err := jobs.DecodeResult([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	want := []jobs.MemberResult{{Rule: jobs.RuleV1, Member: jobs.MemberRef{Name: "PSMAppUsers"}, Status: jobs.StatusApplied,
		Change: jobs.ChangeUpdate, Before: &jobs.MemberState{Permissions: pam.Perms(pam.ListAccounts)},
		After: &jobs.MemberState{Permissions: testPerms}, Added: pam.Perms(pam.UnlockAccounts)}}
	if r.V != jobs.Version || r.Status != jobs.StatusApplied || r.Attempts != 2 || !reflect.DeepEqual(r.Members, want) {
		t.Errorf("v1 result decoded as %+v", r)
	}
	drift, err := jobs.DecodeResult([]byte(`{"v":1,"run":"r1","mode":"check","safe":{"name":"S"},"member":"m","status":"drift","missing":["unlockAccounts"]}`))
	if err != nil || drift.Members[0].Added != pam.Perms(pam.UnlockAccounts) || drift.Members[0].Change != jobs.ChangeAdd {
		t.Errorf("v1 drift decoded as %+v, %v", drift, err)
	}
	skipped, err := jobs.DecodeResult([]byte(`{"v":1,"run":"r1","mode":"apply","safe":{"name":"S"},"member":"m","status":"skipped","reason":"internal Safe"}`))
	if err != nil || len(skipped.Members) != 0 || skipped.Reason != "internal Safe" {
		t.Errorf("v1 skipped decoded as %+v, %v", skipped, err)
	}
}

func TestSafeStatus(t *testing.T) {
	t.Parallel()
	m := func(ss ...jobs.Status) []jobs.MemberResult {
		var out []jobs.MemberResult
		for _, s := range ss {
			out = append(out, jobs.MemberResult{Status: s})
		}
		return out
	}
	tests := []struct {
		members []jobs.MemberResult
		want    jobs.Status
	}{
		{nil, jobs.StatusUnchanged},
		{m(jobs.StatusUnchanged, jobs.StatusApplied), jobs.StatusApplied},
		{m(jobs.StatusSkipped), jobs.StatusSkipped},
		{m(jobs.StatusSkipped, jobs.StatusUnchanged), jobs.StatusUnchanged},
		{m(jobs.StatusApplied, jobs.StatusConflict), jobs.StatusConflict},
		{m(jobs.StatusDrift, jobs.StatusUnchanged), jobs.StatusDrift},
		{m(jobs.StatusConflict, jobs.StatusFailed, jobs.StatusApplied), jobs.StatusFailed},
	}
	for _, tt := range tests {
		if got := jobs.SafeStatus(tt.members); got != tt.want {
			t.Errorf("SafeStatus(%v) = %s, want %s", tt.members, got, tt.want)
		}
	}
}

func TestDecodeResultRejects(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, data string }{
		{"garbage", `nope`},
		{"v0", `{"run":"r1","mode":"apply","safe":{"name":"S"},"status":"applied"}`},
		{"unknown status", `{"v":2,"run":"r1","mode":"apply","safe":{"name":"S"},"status":"great"}`},
		{"no safe", `{"v":2,"run":"r1","mode":"apply","status":"applied"}`},
		{"bad run", `{"v":2,"run":"r 1","mode":"apply","safe":{"name":"S"},"status":"applied"}`},
		{"v1 unknown status", `{"v":1,"run":"r1","mode":"apply","safe":{"name":"S"},"member":"m","status":"great"}`},
		{"v3", `{"v":3,"run":"r1","mode":"apply","safe":{"name":"S"},"status":"applied"}`},
		{"member status", `{"v":2,"run":"r1","mode":"apply","safe":{"name":"S"},"status":"applied","members":[{"member":{"name":"m"},"status":"meh"}]}`},
		{"member name", `{"v":2,"run":"r1","mode":"apply","safe":{"name":"S"},"status":"applied","members":[{"member":{},"status":"applied"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := jobs.DecodeResult([]byte(tt.data)); !errors.Is(err, jobs.ErrMalformed) {
				t.Errorf("DecodeResult error = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestStatuses(t *testing.T) {
	t.Parallel()
	want := []jobs.Status{"applied", "unchanged", "drift", "skipped", "failed", "conflict"}
	if got := jobs.AllStatuses(); !reflect.DeepEqual(got, want) {
		t.Errorf("AllStatuses() = %v, want %v", got, want)
	}
	for _, s := range want {
		if !s.Valid() {
			t.Errorf("%q.Valid() = false", s)
		}
	}
	for _, s := range []jobs.Status{"", "ok", "Applied"} {
		if s.Valid() {
			t.Errorf("%q.Valid() = true", s)
		}
	}
	all := jobs.AllStatuses()
	all[0] = "mutated"
	if jobs.AllStatuses()[0] != jobs.StatusApplied {
		t.Error("AllStatuses returns shared storage")
	}
}

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func TestSafeKey(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, other string }{
		{"Linux Root", "LINUX ROOT"},
		{"a.b*c>d e", "A.B*C>D E"},
		{"Ünïcödé Safe", "ÜNÏCÖDÉ SAFE"},
		{"x", "X"},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		k := jobs.SafeKey(tt.name)
		if !tokenRE.MatchString(k) {
			t.Errorf("SafeKey(%q) = %q: not a valid subject token / KV key", tt.name, k)
		}
		if k2 := jobs.SafeKey(tt.other); k2 != k {
			t.Errorf("SafeKey(%q) = %q, SafeKey(%q) = %q: want equal (case-insensitive)", tt.name, k, tt.other, k2)
		}
		if prev, ok := seen[k]; ok {
			t.Errorf("SafeKey(%q) collides with %q", tt.name, prev)
		}
		seen[k] = tt.name
	}
	if got, want := jobs.SafeKey("Linux Root"), "bGludXggcm9vdA"; got != want {
		t.Errorf("SafeKey(Linux Root) = %q, want %q", got, want)
	}
}

func TestRunIDs(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 23, 10, 45, 12, 0, time.FixedZone("CET", 3600))
	id := jobs.NewRunID(now)
	if !regexp.MustCompile(`^20261123T094512Z-[0-9a-f]{6}$`).MatchString(id) {
		t.Errorf("NewRunID = %q, want 20261123T094512Z-xxxxxx", id)
	}
	if id2 := jobs.NewRunID(now); id2 == id {
		t.Errorf("two NewRunID calls gave the same id %q", id)
	}
	tests := []struct {
		id   string
		want bool
	}{
		{id, true}, {"a", true}, {"A_b-9", true}, {strings.Repeat("x", 64), true},
		{"", false}, {strings.Repeat("x", 65), false}, {"a.b", false}, {"a b", false},
		{"a*", false}, {"a>", false}, {"ä", false}, {"a/b", false},
	}
	for _, tt := range tests {
		if got := jobs.ValidRunID(tt.id); got != tt.want {
			t.Errorf("ValidRunID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestSubjects(t *testing.T) {
	t.Parallel()
	j := testJob("r1", "Linux Root")
	key := jobs.SafeKey("Linux Root")
	if got, want := j.Subject(), "safeperm.jobs.r1."+key; got != want {
		t.Errorf("Subject() = %q, want %q", got, want)
	}
	if got, want := j.MsgID(), "r1/"+key; got != want {
		t.Errorf("MsgID() = %q, want %q", got, want)
	}
	r := jobs.NewResult(j, jobs.StatusDrift, time.Now())
	if got, want := r.Subject(), "safeperm.results.r1.drift"; got != want {
		t.Errorf("result Subject() = %q, want %q", got, want)
	}
	if r.MsgID() != j.MsgID() {
		t.Errorf("result MsgID %q != job MsgID %q", r.MsgID(), j.MsgID())
	}
	tests := []struct {
		subj, run, key string
		ok             bool
	}{
		{j.Subject(), "r1", key, true},
		{"safeperm.jobs.r1", "", "", false},
		{"safeperm.jobs.r1.a.b", "", "", false},
		{"safeperm.results.r1.a", "", "", false},
		{"safeperm.jobs.r*1.a", "", "", false},
	}
	for _, tt := range tests {
		run, k, ok := jobs.ParseJobSubject(tt.subj)
		if run != tt.run || k != tt.key || ok != tt.ok {
			t.Errorf("ParseJobSubject(%q) = %q, %q, %v; want %q, %q, %v", tt.subj, run, k, ok, tt.run, tt.key, tt.ok)
		}
	}
}

// FuzzDecodeJob: DecodeJob never panics, and whatever it accepts encodes
// and decodes to the same Job.
func FuzzDecodeJob(f *testing.F) {
	for _, s := range []string{
		`{"v":2,"run":"r1","mode":"apply","safe":{"urlId":"S1","name":"S1"},"rules":[{"rule":"a","member":{"name":"m","type":"Group"},"action":"grant","permissions":["listAccounts"]}],"created":"2026-11-23T09:45:12Z"}`,
		`{"v":2,"run":"r1","mode":"check","safe":{"urlId":"S1","name":"S1"},"rules":[{"rule":"a","member":{"name":"m","type":"Group","searchIn":"D"},"action":"copyFrom","source":"o","removeSource":true},{"rule":"b","member":{"name":"j","type":"User"},"action":"absent"}],"created":"2026-11-23T09:45:12Z"}`,
		`{"v":2,"run":"r1","mode":"rollback","safe":{"urlId":"S1","name":"S1"},"restore":[{"rule":"a","member":{"name":"m","type":"User"},"to":{"permissions":{"useAccounts":true},"expiration":5},"expect":null}],"created":"2026-11-23T09:45:12+02:00"}`,
		`{"v":1,"run":"r1","mode":"apply","safe":{"urlId":"S1","name":"S1"},"member":{"name":"m","type":"Group"},"permissions":["listAccounts"],"created":"2026-11-23T09:45:12Z"}`,
		`{"v":2}`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		j, err := jobs.DecodeJob(data)
		if err != nil {
			if !errors.Is(err, jobs.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		enc, err := j.Encode()
		if err != nil {
			// Only times outside what JSON can carry may fail to re-encode.
			if j.Created.Year() < 0 || j.Created.Year() > 9999 {
				return
			}
			t.Fatalf("accepted job does not re-encode: %v (%+v)", err, j)
		}
		if std, err := json.Marshal(j); err != nil || !bytes.Equal(enc, std) {
			t.Fatalf("Encode differs from encoding/json (%v):\n got %s\nwant %s", err, enc, std)
		}
		j2, err := jobs.DecodeJob(enc)
		if err != nil {
			t.Fatalf("re-encoded job does not decode: %v\n%s", err, enc)
		}
		if !j2.Created.Equal(j.Created) {
			t.Fatalf("created changed: %v -> %v", j.Created, j2.Created)
		}
		j.Created, j2.Created = time.Time{}, time.Time{}
		if !reflect.DeepEqual(j, j2) {
			t.Fatalf("round trip changed the job:\n got %+v\nwant %+v\njson %s", j2, j, enc)
		}
	})
}
