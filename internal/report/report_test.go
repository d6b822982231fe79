package report_test

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/report"
)

const run = "20261123T094512Z-3f9a2c"

var when = time.Date(2026, 11, 23, 9, 46, 3, 120_000_000, time.UTC)

func result(name string, status jobs.Status) jobs.Result {
	return jobs.Result{
		V: jobs.Version, Run: run, Mode: jobs.ModeApply,
		Safe:   jobs.SafeRef{URLID: strings.ReplaceAll(name, " ", "%20"), Name: name},
		Status: status, Attempts: 1, Worker: "worker-1/42", Time: when,
	}
}

var psm = jobs.MemberRef{Name: "PSMAppUsers", Type: "Group", SearchIn: "Vault"}

// member adds one member entry of the psm-unlock rule to r, with r's
// status, and returns it for more fields.
func member(r *jobs.Result, before, after *jobs.MemberState) *jobs.MemberResult {
	m := jobs.MemberResult{Rule: "psm-unlock", Member: psm, Status: r.Status, Before: before, After: after}
	m.Change, m.Added, m.Removed = jobs.ChangeOf(before, after)
	r.Members = append(r.Members, m)
	return &r.Members[len(r.Members)-1]
}

func exp(unix int64) *int64 { return &unix }

// results covers every status and the awkward names.
func results() []jobs.Result {
	applied := result("Linux Root", jobs.StatusApplied)
	member(&applied, nil, &jobs.MemberState{Permissions: pam.Perms(pam.UnlockAccounts, pam.ListAccounts)})
	gone := member(&applied, &jobs.MemberState{Permissions: pam.Perms(pam.UseAccounts)}, nil)
	gone.Rule, gone.Member = "offboard-jdoe,cleanup", jobs.MemberRef{Name: "jdoe", Type: "User"}

	unchanged := result(`Finance, "EU"`, jobs.StatusUnchanged)
	st := &jobs.MemberState{Permissions: pam.Perms(pam.ListAccounts, pam.UnlockAccounts), Expiration: exp(1798761600)}
	member(&unchanged, st, st)

	drift := result("Zürich Ops\nline two", jobs.StatusDrift)
	drift.Mode = jobs.ModeCheck
	member(&drift, &jobs.MemberState{Permissions: pam.Perms(pam.ListAccounts, pam.RetrieveAccounts)},
		&jobs.MemberState{Permissions: pam.Perms(pam.ListAccounts, pam.UnlockAccounts)})

	skipped := result("PVWAConfig", jobs.StatusSkipped)
	skipped.Reason = "internal Safe"
	skipped.Attempts, skipped.Worker = 0, ""

	failed := result("=HYPERLINK(\"http://x\")", jobs.StatusFailed)
	failed.ErrorCode = jobs.ErrorCodeMaxDeliveries
	failed.Error = "gave up after 8 deliveries; job moved to SAFEPERM_DLQ"
	failed.Attempts = 8

	conflict := result("@SUM(A1)", jobs.StatusConflict)
	c := member(&conflict, &jobs.MemberState{}, &jobs.MemberState{}) // a member without any flag
	c.ErrorCode, c.Error = "-1+2", "+member changed"
	conflict.Time = time.Time{}
	return []jobs.Result{applied, unchanged, drift, skipped, failed, conflict}
}

func TestFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		path    bool // FormatFromPath rather than ParseFormat
		want    report.Format
		wantErr string
	}{
		{in: "out/report.csv", path: true, want: report.FormatCSV},
		{in: "REPORT.CSV", path: true, want: report.FormatCSV},
		{in: "r.jsonl", path: true, want: report.FormatJSONL},
		{in: "r.ndjson", path: true, want: report.FormatJSONL},
		{in: "r.json", path: true, want: report.FormatJSONL},
		{in: "r.xlsx", path: true, wantErr: `unknown extension ".xlsx": want one of .csv, .jsonl, .ndjson, .json`},
		{in: "report", path: true, wantErr: "has no extension: want one of .csv"},
		{in: "csv", want: report.FormatCSV},
		{in: " JSON ", want: report.FormatJSONL},
		{in: "jsonl", want: report.FormatJSONL},
		{in: "xml", wantErr: `unknown report format "xml": want csv or json`},
		{in: "", wantErr: `unknown report format ""`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var got report.Format
			var err error
			if tt.path {
				got, err = report.FormatFromPath(tt.in)
			} else {
				got, err = report.ParseFormat(tt.in)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestCSV(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := report.NewWriter(&buf, report.FormatCSV)
	for _, r := range results() {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	if !slices.Equal(recs[0], report.Header) {
		t.Fatalf("header = %q, want %q", recs[0], report.Header)
	}
	if len(recs) != 8 {
		t.Fatalf("got %d records, want header + 7", len(recs))
	}
	col := make(map[string]int)
	for i, h := range report.Header {
		col[h] = i
	}
	tests := []struct {
		name string
		row  int
		want map[string]string
	}{
		{"applied, not a member before", 1, map[string]string{
			"run": run, "mode": "apply", "safe": "Linux Root", "safeUrlId": "Linux%20Root", "status": "applied",
			"rule": "psm-unlock", "member": "PSMAppUsers", "memberType": "Group", "change": "add",
			"permissionsBefore": "-", "permissionsAfter": "listAccounts unlockAccounts", "added": "listAccounts unlockAccounts",
			"removed": "", "expirationBefore": "", "attempts": "1", "worker": "worker-1/42", "time": "2026-11-23T09:46:03.12Z",
		}},
		{"second member of the same Safe, removed", 2, map[string]string{
			"safe": "Linux Root", "rule": "offboard-jdoe,cleanup", "member": "jdoe", "memberType": "User", "change": "remove",
			"permissionsBefore": "useAccounts", "permissionsAfter": "-", "removed": "useAccounts", "added": "",
		}},
		{"comma and quotes, expiration", 3, map[string]string{
			"safe": `Finance, "EU"`, "permissionsBefore": "listAccounts unlockAccounts", "change": "",
			"expirationBefore": "2027-01-01T00:00:00Z", "expirationAfter": "2027-01-01T00:00:00Z",
		}},
		{"newline and non-ASCII, drift", 4, map[string]string{
			"safe": "Zürich Ops\nline two", "mode": "check", "status": "drift", "change": "update",
			"permissionsBefore": "retrieveAccounts listAccounts", "permissionsAfter": "listAccounts unlockAccounts",
			"added": "unlockAccounts", "removed": "retrieveAccounts",
		}},
		{"skipped Safe without member entries", 5, map[string]string{
			"status": "skipped", "reason": "internal Safe", "attempts": "0", "worker": "", "errorCode": "", "member": "", "rule": "",
		}},
		{"formula name guarded", 6, map[string]string{
			"safe": `'=HYPERLINK("http://x")`, "safeUrlId": `'=HYPERLINK("http://x")`,
			"errorCode": "MAX_DELIVERIES", "error": "gave up after 8 deliveries; job moved to SAFEPERM_DLQ", "attempts": "8",
		}},
		{"@, -, + guarded; member without flags; no time", 7, map[string]string{
			"safe": "'@SUM(A1)", "errorCode": "'-1+2", "error": "'+member changed",
			"permissionsBefore": "", "permissionsAfter": "", "time": "",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := recs[tt.row]
			for field, want := range tt.want {
				if got := rec[col[field]]; got != want {
					t.Errorf("%s = %q, want %q", field, got, want)
				}
			}
		})
	}
}

func TestCSVEmptyHasHeader(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := report.NewWriter(&buf, report.FormatCSV).Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := buf.String(), strings.Join(report.Header, ",")+"\n"; got != want {
		t.Fatalf("empty report = %q, want %q", got, want)
	}
}

func TestJSONL(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := report.NewWriter(&buf, report.FormatJSONL)
	in := results()
	for _, r := range in {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&buf)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	var want []report.Row
	for _, r := range in {
		want = append(want, report.RowsOf(r)...)
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), strings.Join(lines, "\n"))
	}
	for i, line := range lines {
		// Every field is always present, so consumers can rely on the keys.
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		for _, h := range report.Header {
			if _, ok := m[h]; !ok {
				t.Errorf("line %d lacks field %q: %s", i, h, line)
			}
		}
		var row report.Row
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if !rowEqual(row, want[i]) {
			t.Errorf("line %d decodes to %+v, want %+v", i, row, want[i])
		}
	}
	tests := []struct {
		name string
		line int
		want string // substring of the line
	}{
		{"absent state is null", 0, `"permissionsBefore":null,"permissionsAfter":["listAccounts","unlockAccounts"]`},
		{"rule and member", 1, `"rule":"offboard-jdoe,cleanup","member":"jdoe","memberType":"User","status":"applied","change":"remove"`},
		{"expiration", 2, `"expirationBefore":"2027-01-01T00:00:00Z"`},
		{"names verbatim, no HTML escaping", 5, `"safe":"=HYPERLINK(\"http://x\")"`},
		{"non-ASCII and newline", 3, `"safe":"Zürich Ops\nline two"`},
		{"member without flags is []", 6, `"permissionsBefore":[]`},
		{"removed is never null", 0, `"removed":[]`},
		{"no time", 6, `"time":""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(lines[tt.line], tt.want) {
				t.Errorf("line %d = %s\nwant it to contain %s", tt.line, lines[tt.line], tt.want)
			}
		})
	}
}

func rowEqual(a, b report.Row) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriterErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		format report.Format
		want   string
	}{
		{"csv", report.FormatCSV, "disk full"},
		{"json", report.FormatJSONL, "disk full"},
		{"unknown format", report.Format("xml"), `unknown format "xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := report.NewWriter(failWriter{}, tt.format)
			_ = w.Write(results()[0]) // buffered: may not fail yet
			err := w.Flush()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Flush = %v, want an error containing %q", err, tt.want)
			}
			if err2 := w.Write(results()[0]); err2 == nil {
				t.Fatalf("Write after a failed Flush = nil, want the error again")
			}
		})
	}
}

func FuzzCSVRoundTrip(f *testing.F) {
	for _, s := range []string{"Linux Root", `a,"b"`, "x\ny", "=1+1", "-", "Zürich", " lead"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if strings.ContainsRune(name, '\r') {
			t.Skip("encoding/csv folds \\r\\n inside quoted fields")
		}
		r := result(name, jobs.StatusApplied)
		var buf bytes.Buffer
		w := report.NewWriter(&buf, report.FormatCSV)
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(&buf).ReadAll()
		if err != nil {
			t.Fatalf("read back %q: %v", name, err)
		}
		got := recs[1][2]
		if got != name && got != "'"+name {
			t.Fatalf("safe read back as %q, want %q", got, name)
		}
		if got != "" && strings.ContainsRune("=+-@\t", rune(got[0])) {
			t.Fatalf("cell %q starts with a formula character", got)
		}
	})
}
