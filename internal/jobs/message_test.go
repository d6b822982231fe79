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
)

func ptr[T any](v T) *T { return &v }

func TestJobRoundTrip(t *testing.T) {
	t.Parallel()
	rollback := testJob("r1", "Linux Root")
	rollback.Mode = jobs.ModeRollback
	rollback.Permissions = 0
	rollback.Restore = &jobs.MemberState{Permissions: pam.Perms(pam.ListAccounts), Expiration: ptr(int64(1798761600))}
	rollback.Expect = &jobs.MemberState{Permissions: testPerms}
	tests := []struct {
		name string
		job  jobs.Job
	}{
		{"apply", testJob("20261123T094512Z-3f9a2c", "Linux Root")},
		{"check", func() jobs.Job { j := testJob("r1", "a.b c"); j.Mode = jobs.ModeCheck; return j }()},
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
		j.Safe.Name, j.Safe.URLID, j.Member.SearchIn = n, n, n
		j.Restore = &jobs.MemberState{Permissions: pam.Perms(pam.UseAccounts, pam.RequestsAuthorizationLevel2), Expiration: ptr(int64(-5))}
		j.Expect = &jobs.MemberState{}
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
	want := `{"v":1,"run":"20261123T094512Z-3f9a2c","mode":"apply",` +
		`"safe":{"urlId":"Linux Root","name":"Linux Root"},` +
		`"member":{"name":"PSMAppUsers","type":"Group","searchIn":"Vault"},` +
		`"permissions":["listAccounts","unlockAccounts"],"created":"2026-11-23T09:45:12Z"}`
	if string(data) != want {
		t.Errorf("JSON:\n got %s\nwant %s", data, want)
	}
}

func TestResultRoundTrip(t *testing.T) {
	t.Parallel()
	j := testJob("r1", "Linux Root")
	now := time.Date(2026, 11, 23, 9, 46, 0, 123000000, time.UTC)
	applied := jobs.NewResult(j, jobs.StatusApplied, now)
	applied.Before = &jobs.MemberState{Permissions: pam.Perms(pam.ListAccounts)}
	applied.After = &jobs.MemberState{Permissions: testPerms}
	applied.Attempts, applied.Worker = 1, "host-1/42"
	drift := jobs.NewResult(j, jobs.StatusDrift, now)
	drift.Mode = jobs.ModeCheck
	drift.Missing = pam.Perms(pam.UnlockAccounts)
	failed := jobs.NewResult(j, jobs.StatusFailed, now)
	failed.ErrorCode, failed.Error = jobs.ErrorCodeMaxDeliveries, "gave up"
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
	tests := []struct {
		name, data, wantIn string
	}{
		{"not json", `{"v":1,`, "unexpected end"},
		{"not an object", `[1,2]`, "cannot unmarshal"},
		{"empty", ``, "unexpected end"},
		{"missing v", valid(func(m map[string]any) { delete(m, "v") }), "missing v"},
		{"v2", valid(func(m map[string]any) { m["v"] = 2 }), "unsupported version 2"},
		{"v string", valid(func(m map[string]any) { m["v"] = "1" }), "cannot unmarshal"},
		{"bad run id", valid(func(m map[string]any) { m["run"] = "a.b" }), "invalid run id"},
		{"long run id", valid(func(m map[string]any) { m["run"] = strings.Repeat("a", 65) }), "invalid run id"},
		{"missing run", valid(func(m map[string]any) { delete(m, "run") }), "invalid run id"},
		{"missing safe", valid(func(m map[string]any) { delete(m, "safe") }), "missing safe.name"},
		{"missing urlId", valid(func(m map[string]any) { m["safe"] = map[string]any{"name": "x"} }), "missing safe.urlId"},
		{"unknown mode", valid(func(m map[string]any) { m["mode"] = "destroy" }), `unknown mode "destroy"`},
		{"missing member", valid(func(m map[string]any) { delete(m, "member") }), "missing member.name"},
		{"missing member type", valid(func(m map[string]any) { m["member"] = map[string]any{"name": "x"} }), "missing member.type"},
		{"empty permissions", valid(func(m map[string]any) { m["permissions"] = []string{} }), "empty permissions"},
		{"null permissions", valid(func(m map[string]any) { m["permissions"] = nil }), "empty permissions"},
		{"unknown permission", valid(func(m map[string]any) { m["permissions"] = []string{"listAccounts", "fly"} }), "unknown permission"},
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
	data := `{"v":1,"run":"r1","mode":"apply","safe":{"urlId":"S1","name":"S1","future":true},` +
		`"member":{"name":"PSMAppUsers","type":"Group"},"permissions":{"ListAccounts":true,"unlockAccounts":true},` +
		`"priority":7,"created":"2026-11-23T09:45:12Z"}`
	j, err := jobs.DecodeJob([]byte(data))
	if err != nil {
		t.Fatalf("DecodeJob: %v", err)
	}
	if j.Permissions != testPerms {
		t.Errorf("permissions = %v, want %v", j.Permissions, testPerms)
	}
}

func TestDecodeResultRejects(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, data string }{
		{"garbage", `nope`},
		{"v0", `{"run":"r1","mode":"apply","safe":{"name":"S"},"status":"applied"}`},
		{"unknown status", `{"v":1,"run":"r1","mode":"apply","safe":{"name":"S"},"status":"great"}`},
		{"no safe", `{"v":1,"run":"r1","mode":"apply","status":"applied"}`},
		{"bad run", `{"v":1,"run":"r 1","mode":"apply","safe":{"name":"S"},"status":"applied"}`},
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
		`{"v":1,"run":"r1","mode":"apply","safe":{"urlId":"S1","name":"S1"},"member":{"name":"m","type":"Group"},"permissions":["listAccounts"],"created":"2026-11-23T09:45:12Z"}`,
		`{"v":1,"run":"r1","mode":"rollback","safe":{"urlId":"S1","name":"S1"},"member":{"name":"m","type":"User"},"permissions":[],"restore":{"permissions":{"useAccounts":true},"expiration":5},"expect":null,"created":"2026-11-23T09:45:12+02:00"}`,
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
