package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, refuses with an Errors whose
// every line names the file, and that what it accepts is a complete,
// valid policy whose Applies and Conflicts run. Seeds: the testdata files
// and testdata/fuzz/FuzzParse. Run it with
//
//	go test -run='^$' -fuzz=FuzzParse -fuzztime=30s -fuzzminimizetime=2s ./internal/policy/
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"valid", "invalid"} {
		files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.yaml"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	opt := Options{APIUser: "svc", CPMs: []string{"CPM_EU"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 8<<10 {
			return // a policy is small; large inputs only slow the search
		}
		p, err := Parse(data, "fuzz.yaml", opt)
		p2, err2 := Parse(data, "fuzz.yaml", opt)
		if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("parsing twice disagrees: %v / %v", err, err2)
		}
		if err != nil {
			var es Errors
			if p != nil || !errors.As(err, &es) || !errors.Is(err, ErrInvalid) || len(es) == 0 {
				t.Fatalf("refusal %q (%T) is not an Errors without a policy", err, err)
			}
			for line := range strings.SplitSeq(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz.yaml:") {
					t.Fatalf("problem %q does not name the file", line)
				}
			}
			return
		}
		if p.Version != Version || len(p.Rules) == 0 || len(p2.Rules) != len(p.Rules) {
			t.Fatalf("accepted policy: version %d, %d rules", p.Version, len(p.Rules))
		}
		if err := p.Validate(opt); err != nil {
			t.Fatalf("accepted policy fails Validate: %v", err)
		}
		for i := range p.Rules {
			r := &p.Rules[i]
			if err := r.Directive().Validate(); err != nil || len(r.Safes) == 0 || r.Name == "" {
				t.Fatalf("accepted rule %+v: %v", r, err)
			}
		}
		for _, safe := range []string{"Finance", "DB-1", "linux", "", "ü"} {
			p.Applies(safe, "PasswordManager,CPM_X")
		}
		for _, c := range p.Conflicts() {
			if !c.A.AppliesTo(c.Example, c.ManagingCPM) || !c.B.AppliesTo(c.Example, c.ManagingCPM) {
				t.Fatalf("conflict %s: the example does not apply to both rules", c)
			}
		}
	})
}
