package scope

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestInternalBuiltins(t *testing.T) {
	t.Parallel()
	if got := len(builtinInternal); got != 38 {
		t.Errorf("%d built-in internal Safes, want 38 (33 + 3 + 2 in pam-api.md §5)", got)
	}
	in := NewInternal(nil, nil)
	for _, name := range builtinInternal {
		for _, spelling := range []string{name, strings.ToUpper(name), strings.ToLower(name)} {
			ok, why := in.IsInternal(spelling)
			if !ok || why != "built-in internal Safe" {
				t.Errorf("IsInternal(%q) = %v, %q; want true, built-in internal Safe", spelling, ok, why)
			}
		}
	}
}

func TestInternal(t *testing.T) {
	t.Parallel()
	in := NewInternal([]string{"CPM_EU", " cpm-us , CPM_EU"}, []string{"Vault Backups", "  "})
	in.AddCPMsFrom("PasswordManager,cyberark-connec")
	in.AddCPMsFrom("")
	in.AddCPMsFrom(" , ")

	const (
		builtin    = "built-in internal Safe"
		configured = "configured internal Safe"
	)
	tests := []struct {
		name string
		want string // reason, "" for not internal
	}{
		{"System", builtin},
		{"notification engine", builtin},
		{"SCIM Config", builtin},
		{"PSMPLiveSessions", builtin},
		{"AppProviderCacheSafe", builtin},
		{"PasswordManager_Pending", builtin}, // also a CPM Safe; built-in wins
		{"PasswordManagerTemp", builtin},
		{"vault backups", configured},
		{"PasswordManager", `CPM Safe of "PasswordManager"`},
		{"passwordmanager_accounts", `CPM Safe of "PasswordManager"`},
		{"PasswordManager_ADInternal", `CPM Safe of "PasswordManager"`},
		{"PasswordManager_Info", `CPM Safe of "PasswordManager"`},
		{"PASSWORDMANAGER_WORKSPACE", `CPM Safe of "PasswordManager"`},
		{"cyberark-connec", `CPM Safe of "cyberark-connec"`},
		{"cyberark-connec_Accounts", `CPM Safe of "cyberark-connec"`},
		{"CyberArk-Connec_Pending", `CPM Safe of "cyberark-connec"`},
		{"CPM_EU_Info", `CPM Safe of "CPM_EU"`},
		{"cpm-us_workspace", `CPM Safe of "cpm-us"`},
		// Look like CPM or system Safes, but are not.
		{"Finance", ""},
		{"Finance_Accounts", ""},
		{"PasswordManager_Other", ""},
		{"PasswordManager1_Accounts", ""},
		{"cyberark-connec_Accounts2", ""},
		{"_Accounts", ""},
		{"PSMFinance", ""},
		{"System ", ""},
		{"Systems", ""},
		{"", ""},
	}
	for _, tt := range tests {
		ok, why := in.IsInternal(tt.name)
		if ok != (tt.want != "") || why != tt.want {
			t.Errorf("IsInternal(%q) = %v, %q; want %v, %q", tt.name, ok, why, tt.want != "", tt.want)
		}
	}
	if got, want := in.CPMs(), []string{"PasswordManager", "CPM_EU", "cpm-us", "cyberark-connec"}; !slices.Equal(got, want) {
		t.Errorf("CPMs() = %q, want %q", got, want)
	}
}

func TestInternalConcurrentAdd(t *testing.T) {
	t.Parallel()
	in := NewInternal(nil, nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				in.AddCPMsFrom(fmt.Sprintf("CPM%d,CPM%d", i, j))
				in.IsInternal(fmt.Sprintf("CPM%d_Accounts", j))
				in.CPMs()
			}
		})
	}
	wg.Wait()
	for j := range 50 {
		if ok, _ := in.IsInternal(fmt.Sprintf("cpm%d_info", j)); !ok {
			t.Errorf("CPM%d_Info not internal after all adds", j)
		}
	}
	if got := len(in.CPMs()); got != 51 {
		t.Errorf("%d CPMs, want 51 (PasswordManager and CPM0..CPM49)", got)
	}
}
