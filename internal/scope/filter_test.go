package scope

import (
	"slices"
	"strings"
	"testing"
)

func mustList(t *testing.T, file, content string) *List {
	t.Helper()
	l, err := ParseList(strings.NewReader(content), file)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestFilterDecide(t *testing.T) {
	t.Parallel()
	internal := NewInternal([]string{"CPM_EU"}, nil)
	internal.AddCPMsFrom("PasswordManager,cyberark-connec")
	include := func(t *testing.T) *List {
		return mustList(t, "include.txt", "Finance\nHR\nPVWAConfig\ncyberark-connec_Accounts\nÜNÏCØDÉ\n")
	}
	exclude := func(t *testing.T) *List { return mustList(t, "exclude.txt", "hr\nLegal\nSystem\n") }

	in := Decision{In: true}
	tests := []struct {
		name     string
		include  bool
		exclude  bool
		internal *Internal
		safe     string
		want     Decision
	}{
		{"no lists: ordinary Safe", false, false, internal, "Finance", in},
		{"no lists: built-in", false, false, internal, "PVWAConfig", Decision{Reason: ReasonInternal, Detail: "built-in internal Safe"}},
		{"no lists: CPM Safe", false, false, internal, "CPM_EU_Accounts", Decision{Reason: ReasonInternal, Detail: `CPM Safe of "CPM_EU"`}},
		{"no lists: CPM-looking Safe", false, false, internal, "Finance_Accounts", in},
		{"nil Internal still skips built-ins", false, false, nil, "vaultinternal", Decision{Reason: ReasonInternal, Detail: "built-in internal Safe"}},
		{"nil Internal still skips the default CPM", false, false, nil, "PasswordManager_Info", Decision{Reason: ReasonInternal, Detail: `CPM Safe of "PasswordManager"`}},
		{"included", true, false, internal, "finance", in},
		{"included, non-ASCII", true, false, internal, "ünïcødé", in},
		{"not included", true, false, internal, "Legal", Decision{Reason: ReasonNotIncluded, Detail: "include.txt"}},
		{"included internal Safe stays internal", true, false, internal, "PVWAConfig", Decision{Reason: ReasonInternal, Detail: "built-in internal Safe"}},
		{"included CPM Safe stays internal", true, false, internal, "CyberArk-Connec_Accounts", Decision{Reason: ReasonInternal, Detail: `CPM Safe of "cyberark-connec"`}},
		{"excluded", false, true, internal, "LEGAL", Decision{Reason: ReasonExcluded, Detail: "exclude.txt"}},
		{"exclude beats include", true, true, internal, "HR", Decision{Reason: ReasonExcluded, Detail: "exclude.txt"}},
		{"internal beats exclude", true, true, internal, "System", Decision{Reason: ReasonInternal, Detail: "built-in internal Safe"}},
		{"included, not excluded", true, true, internal, "Finance", in},
		{"neither included nor excluded", true, true, internal, "Ops", Decision{Reason: ReasonNotIncluded, Detail: "include.txt"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := Filter{Internal: tt.internal}
			if tt.include {
				f.Include = include(t)
			}
			if tt.exclude {
				f.Exclude = exclude(t)
			}
			if got := f.Decide(tt.safe); got != tt.want {
				t.Errorf("Decide(%q) = %+v, want %+v", tt.safe, got, tt.want)
			}
		})
	}
}

func TestFilterEmptyInclude(t *testing.T) {
	t.Parallel()
	f := Filter{Include: mustList(t, "include.txt", "# nothing yet\n")}
	if got := f.Decide("Finance"); got.In || got.Reason != ReasonNotIncluded {
		t.Errorf("Decide with an empty include list = %+v, want not included", got)
	}
}

func TestFilterUnmatched(t *testing.T) {
	t.Parallel()
	f := Filter{
		Include:  mustList(t, "include.txt", "Finance\nHR\nPVWAConfig\nLegal\nFinanse\n"),
		Exclude:  mustList(t, "exclude.txt", "legal\nMarketting\n"),
		Internal: NewInternal(nil, nil),
	}
	for _, safe := range []string{"FINANCE", "hr", "Legal", "PVWAConfig", "System", "Ops", "Marketing"} {
		f.Decide(safe)
	}
	// PVWAConfig and Legal matched Safes, although they were skipped.
	if got, want := f.Include.Unmatched(), []string{"Finanse"}; !slices.Equal(got, want) {
		t.Errorf("Include.Unmatched() = %q, want %q", got, want)
	}
	if got, want := f.Exclude.Unmatched(), []string{"Marketting"}; !slices.Equal(got, want) {
		t.Errorf("Exclude.Unmatched() = %q, want %q", got, want)
	}
}

func TestReasonString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		r    Reason
		want string
	}{
		{ReasonNone, "in scope"},
		{ReasonInternal, "internal Safe"},
		{ReasonExcluded, "excluded"},
		{ReasonNotIncluded, "not in the include list"},
		{Reason(200), "unknown reason"},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("Reason(%d).String() = %q, want %q", tt.r, got, tt.want)
		}
	}
}
