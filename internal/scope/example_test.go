package scope_test

import (
	"fmt"
	"strings"

	"github.com/safeperm/safeperm/internal/scope"
)

func ExampleFilter_Decide() {
	// In the planner these come from ReadListFile(--include / --exclude).
	include, err := scope.ParseList(strings.NewReader(
		"# Safes to grant PSM unlock on\nFinance\nHR\nPVWAConfig\nTreasury\n"), "include.txt")
	if err != nil {
		fmt.Println(err)
		return
	}
	exclude, err := scope.ParseList(strings.NewReader("hr\n"), "excludedSafes.txt")
	if err != nil {
		fmt.Println(err)
		return
	}

	// First pass: learn the CPMs from every Safe's managingCPM.
	internal := scope.NewInternal(nil, nil)
	safes := []struct{ name, managingCPM string }{
		{"Finance", "PasswordManager,cyberark-connec"},
		{"cyberark-connec_Accounts", ""},
		{"HR", "PasswordManager"},
		{"PVWAConfig", ""},
		{"Legal", "PasswordManager"},
	}
	for _, s := range safes {
		internal.AddCPMsFrom(s.managingCPM)
	}

	// Second pass: decide.
	f := scope.Filter{Include: include, Exclude: exclude, Internal: internal}
	for _, s := range safes {
		d := f.Decide(s.name)
		fmt.Printf("%-25s in=%-5v %v (%s)\n", s.name, d.In, d.Reason, d.Detail)
	}
	fmt.Println("include names that matched no Safe:", include.Unmatched())

	// Output:
	// Finance                   in=true  in scope ()
	// cyberark-connec_Accounts  in=false internal Safe (CPM Safe of "cyberark-connec")
	// HR                        in=false excluded (excludedSafes.txt)
	// PVWAConfig                in=false internal Safe (built-in internal Safe)
	// Legal                     in=false not in the include list (include.txt)
	// include names that matched no Safe: [Treasury]
}

func ExampleParseList_error() {
	_, err := scope.ParseList(strings.NewReader("Finance\r\nZ\xfcrich Ops\r\n"), "excludedSafes.txt")
	fmt.Println(err)
	// Output:
	// excludedSafes.txt line 2: invalid UTF-8 (byte 0xFC at column 2); save the file as UTF-8
}
